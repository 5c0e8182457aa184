"""Every committed table is what its command makes of the committed records today: scripts/tables.sh
(`make tables`) regenerates them into a scratch folder, and every text file there matches results/ byte for
byte (figures are checked to exist; their pixels depend on the font stack, so a page is compared with its
embedded figure left out)."""

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def without_figure(page: str) -> str:
    return re.sub(r"base64,[A-Za-z0-9+/=]+", "base64,", page)


def test_every_committed_table_regenerates_byte_identical(tmp_path):
    env = {**os.environ, "BIN": str(Path(sys.executable).parent), "WANDB_MODE": "offline"}
    subprocess.run(["bash", str(ROOT / "scripts" / "tables.sh"), str(tmp_path)], cwd=ROOT, env=env, check=True,
                   capture_output=True, text=True)
    made = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    assert len(made) > 30
    differing = []
    for path in made:
        committed = ROOT / "results" / path.relative_to(tmp_path)
        assert committed.exists(), f"{committed} is made by scripts/tables.sh but not committed"
        if path.suffix == ".html":
            same = without_figure(path.read_text()) == without_figure(committed.read_text())
        else:
            same = path.suffix == ".png" or path.read_bytes() == committed.read_bytes()
        if not same:
            differing.append(str(committed.relative_to(ROOT)))
    assert not differing, f"committed tables out of date (run `make tables`): {differing}"


def test_no_committed_record_carries_a_refused_configuration():
    """A rate and a count together are refused now; scripts/migrate_rate_and_count.py rewrote the records made
    before (the count was the size), so every committed record is a configuration the runner accepts today."""
    import json

    for path in (ROOT / "results").rglob("*.json"):
        record = json.loads(path.read_text())
        forget = record.get("config", {}).get("forget_rate", {}) if isinstance(record, dict) else {}
        assert forget.get("rate") is None or forget.get("count") is None, path
