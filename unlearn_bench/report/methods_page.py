"""docs/methods.md, generated from the method YAMLs, so the page cannot drift from the configs: per
method its description, reference file and commit, named departures, defaults and tuning space (the YAML's
own comments and keys). A test regenerates it and fails when the committed page differs.

    python -m unlearn_bench.report.methods_page > docs/methods.md
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

CONF = Path(__file__).resolve().parents[2] / "conf" / "method"

HEADER = """# Methods

Generated from `conf/method/*.yaml` by `python -m unlearn_bench.report.methods_page > docs/methods.md`;
a test fails when this page and the configs disagree. Each YAML is the single source of a method's
defaults: its header names the reference file and commit the defaults come from and every departure from
that reference; its `search:` block is the space the tuning protocol searches ([tuning](tuning.md)); its
`introduced:` block lists switches added after records existed, with the value those records ran with (a
cell at that value keeps its earlier id and record). `method=NAME` selects one; `defaults:` lists the configs a method builds on.

## The CPU scale departs from the references, once for every method

The references unlearn CIFAR-10 with ResNet-18 at batch 256 and build SalUn's mask and run the unlearning
updates with crop + flip. `scale=cpu` (a small CNN on a 2,500-image subset) runs every method at batch 64
and, like its original and retrain models, without augmentation; `scale=cpu_aug` keeps each pipeline's
augmentation in every stage. `scale=paper` keeps the references' model, data, batch size, schedule,
epochs and crop + flip. The per-method departures below come on top of these.
"""


def header_comments(text: str) -> list[str]:
    lines = []
    for line in text.splitlines():
        if line.startswith("#"):
            lines.append(line.lstrip("#").strip())
        elif line.strip():
            break
    return lines


def describe(path: Path) -> str:
    text = path.read_text()
    config = yaml.safe_load(text) or {}
    comments = [c for c in header_comments(text) if not c.startswith("@package")]
    name = path.relative_to(CONF).with_suffix("").as_posix()
    parts = [f"## `{name}`", ""]
    if comments:
        parts += [" ".join(comments), ""]
    bases = [d for d in config.get("defaults", []) if isinstance(d, str) and d != "_self_"]
    if bases:
        parts += ["Builds on: " + ", ".join(f"`{b}`" for b in bases) + ".", ""]
    values = {k: v for k, v in config.items() if k not in ("defaults", "search", "name", "introduced")}
    if values:
        parts += ["| key | default |", "|---|---|"] + [f"| `{k}` | `{v}` |" for k, v in values.items()] + [""]
    introduced = config.get("introduced")
    if introduced:
        parts += ["Added after earlier records (their value): " +
                  ", ".join(f"`{k}` ({v})" for k, v in introduced.items()) + ".", ""]
    search = config.get("search")
    if search:
        rows = []
        for key, space in search.items():
            if isinstance(space, dict) and "choices" in space:
                rows.append(f"| `{key}` | one of {space['choices']} |")
            elif isinstance(space, dict):
                scale = "log" if space.get("log") else "linear"
                rows.append(f"| `{key}` | [{space.get('low')}, {space.get('high')}], {scale} |")
        parts += ["Tuning space:", "", "| key | range |", "|---|---|", *rows, ""]
    return "\n".join(parts)


def page() -> str:
    paths = sorted(p for p in CONF.rglob("*.yaml") if "tuned" not in p.relative_to(CONF).parts)
    return HEADER + "\n" + "\n".join(describe(p) for p in paths)


def main() -> int:
    sys.stdout.write(page())
    return 0


if __name__ == "__main__":
    sys.exit(main())
