"""Every console command's arguments fail as a config value does: one line naming the argument (or the path
it cannot write) and what is accepted, exit code 2, no traceback (in-process: each command's `main(argv)`)."""

from __future__ import annotations

import importlib

import pytest

COMMANDS = {  # console script -> its main, as pyproject.toml declares them
    "unlearn-bench-aug-study": "unlearn_bench.report.augmentation",
    "unlearn-bench-leaderboard": "unlearn_bench.report.leaderboard",
    "unlearn-bench-bench": "unlearn_bench.bench.cli",
    "unlearn-bench-tune": "unlearn_bench.tuning.study",
    "unlearn-bench-tuning-summary": "unlearn_bench.tuning.summary",
}
BAD = [
    ("unlearn-bench-aug-study", [], "--records"),
    ("unlearn-bench-aug-study", ["--records", "results/aug_study/records", "--out", "x", "--bogus"], "--bogus"),
    ("unlearn-bench-leaderboard", ["--records", "results/records", "--no-such-flag"], "--no-such-flag"),
    ("unlearn-bench-bench", ["--steps", "x"], "--steps"),
    ("unlearn-bench-bench", ["--steps", "0"], "--steps=0"),
    ("unlearn-bench-tune", ["--method", "ft", "--trials", "abc"], "--trials"),
    ("unlearn-bench-tune", ["--method", "ft", "--trials", "0"], "--trials=0"),
    ("unlearn-bench-tune", ["--method", "ft", "--sampler-seed", "-3"], "--sampler-seed=-3"),
    ("unlearn-bench-tune", ["--method", "ft", "--scale", "nope"], "--scale='nope'"),
    ("unlearn-bench-tune", ["--method", "ft", "--jobs", "0"], "--jobs=0"),
    ("unlearn-bench-tune", ["--method", "ft", "--", "method=rl"], "method"),
    ("unlearn-bench-tuning-summary", ["--bogus"], "--bogus"),
    # a folder that cannot be written: one line naming it, no traceback
    ("unlearn-bench-aug-study", ["--records", "results/aug_study/records", "--out", "/proc/no/such"], "/proc/no"),
    ("unlearn-bench-leaderboard", ["--records", "results/records", "--dataset", "mnist", "--out", "/proc/no/such"],
     "/proc/no"),
]


def test_every_console_script_is_covered():
    from pathlib import Path

    import tomllib

    scripts = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())["project"]["scripts"]
    assert set(scripts) - {"unlearn-bench"} == set(COMMANDS)
    assert all(scripts[name] == f"{module}:main" for name, module in COMMANDS.items())


@pytest.mark.parametrize("command, argv, named", BAD, ids=[f"{c} {' '.join(a)}" for c, a, _ in BAD])
def test_a_bad_argument_is_one_line_and_exit_code_2(command, argv, named, capsys):
    main = importlib.import_module(COMMANDS[command]).main
    try:
        code = main(argv)
    except SystemExit as exit_:
        code = exit_.code
    err = capsys.readouterr().err.strip()
    assert code == 2
    errors = [line for line in err.splitlines() if line.startswith("error: ")]  # warnings may come before it
    assert len(errors) == 1 and named in errors[0] and "Traceback" not in err, err
