"""User-facing errors: one line that names the key, the bad value and what is accepted."""

from __future__ import annotations

import argparse
import difflib
import functools
import re
import sys
from collections.abc import Callable, Iterable
from typing import NoReturn


class UserError(Exception):
    """A mistake in the input (config, data, paths). The CLI prints it as one line, no traceback."""


class ConfigError(UserError):
    def __init__(self, key: str, value: object, accepted: str | Iterable[object]):
        if not isinstance(accepted, str):
            accepted = ", ".join(str(a) for a in accepted)
        hint = re.search(r" \(did you mean [^()]*\?\)$", accepted)  # the hint before a long list, not after it
        shown = accepted[:hint.start()] if hint else accepted
        super().__init__(f"{key}={value!r} is not valid{hint.group(0) if hint else ''}; accepted: {shown}")
        self.key, self.value, self.accepted = key, value, accepted

    def __reduce__(self):  # picklable: an error raised in a worker process reaches the parent as itself
        return type(self), (self.key, self.value, self.accepted)


def did_you_mean(value: str, options: Iterable[str]) -> str:
    """' (did you mean a, b?)' for the close matches of a mistyped name, '' when none is close."""
    close = difflib.get_close_matches(value, list(options), n=3)
    return f" (did you mean {', '.join(close)}?)" if close else ""


class ArgumentParser(argparse.ArgumentParser):
    """The console commands' parser: a wrong argument (an unknown flag, a value of the wrong type) is one
    line and exit code 2, like a wrong config value; argparse's own error prints its usage block first."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (accepted: see {self.prog} --help)\n")


def one_line_errors(main: Callable[..., int]) -> Callable[..., int]:
    """A console command's `main`: a user error, or a file it cannot read or write (a missing folder, a full
    disk, no permission), is one line naming the path and exit code 2, never a traceback."""
    @functools.wraps(main)
    def wrapped(*args, **kwargs) -> int:
        try:
            return main(*args, **kwargs)
        except UserError as err:
            print(f"error: {err}", file=sys.stderr)
        except OSError as err:
            where = err.filename if err.filename is not None else "a file"
            print(f"error: cannot use {where}: {err.strerror or err}", file=sys.stderr)
        return 2
    return wrapped
