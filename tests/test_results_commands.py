"""Every run command a results README gives composes and passes the run's own checks, for its first and
last job: a number in results/ comes from a command the repo can repeat, and a renamed key or option would
otherwise leave the README's command broken without a test noticing."""

import re
import shlex
from pathlib import Path

import pytest
from hydra import initialize_config_dir

from unlearn_bench.sweep_check import check_job, sweep_jobs

ROOT = Path(__file__).resolve().parent.parent
CONF = str(ROOT / "conf")


def substitute(command: str, variables: dict[str, str]) -> str:
    return re.sub(r"\$\{?(\w+)\}?", lambda m: variables.get(m.group(1), m.group(0)), command)


def run_commands() -> list[tuple[str, list[str]]]:
    """(README, argv after `python -m unlearn_bench.run`) for every such command in a bash block of a
    results/*/README.md: continuation lines joined, the block's variable assignments substituted, and a
    command inside `for x in a b c; do … done` taken at the loop's first and last value."""
    found = []
    for readme in sorted((ROOT / "results").glob("*/README.md")):
        for block in re.findall(r"```bash\n(.*?)```", readme.read_text(), flags=re.S):
            variables, loop = {}, None
            for line in block.replace("\\\n", " ").splitlines():
                line = line.split(" #")[0].strip()
                if match := re.fullmatch(r"(\w+)=(\"[^\"]*\"|\S+)", line):
                    variables[match.group(1)] = match.group(2).strip('"')
                elif match := re.match(r"for (\w+) in (.*?); do$", line):
                    values = match.group(2).split()
                    loop = (match.group(1), sorted({values[0], values[-1]}))
                elif line == "done":
                    loop = None
                elif "unlearn_bench.run" in line:
                    for value in loop[1] if loop else [None]:
                        words = shlex.split(substitute(line, {**variables, **({loop[0]: value} if loop else {})}))
                        found.append((readme.parent.name, words[words.index("unlearn_bench.run") + 1:]))
    return found


COMMANDS = run_commands()


def test_the_results_readmes_give_their_run_commands():
    assert len(COMMANDS) >= 8 and {"aug_study", "pool", "salun_table"} <= {name for name, _ in COMMANDS}


@pytest.mark.parametrize("name, argv", COMMANDS, ids=[f"{n}-{i}" for i, (n, _) in enumerate(COMMANDS)])
def test_every_results_command_composes_and_passes_its_checks(name, argv):
    jobs = sweep_jobs(["unlearn_bench.run", *argv], CONF) if "-m" in argv else [argv]
    assert jobs, f"{name}: {' '.join(argv)} expands to no job"
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        for job in {tuple(jobs[0]), tuple(jobs[-1])}:
            check_job(list(job))
