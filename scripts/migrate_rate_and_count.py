"""One-off migration of result records made when a forget set could carry both a rate and a count (the count
won, the rate was never read). Such a configuration is refused now, and the configs that made these records
set the rate to null; this rewrites each such record as the same cell computes it today: `forget_rate.rate`
null, the cell id recomputed from the config, the file renamed to match. The numbers do not change.

    python scripts/migrate_rate_and_count.py results/records [--check]

Idempotent; --check lists what would change and exits 1 if anything would."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from unlearn_bench.cache import atomic_write_json, stable_hash


def migrate(folder: Path, check: bool) -> list[str]:
    changed = []
    for path in sorted(folder.glob("*.json")):
        record = json.loads(path.read_text())
        forget = record.get("config", {}).get("forget_rate", {})
        if forget.get("mode") not in ("random", "memorization") or forget.get("rate") is None \
                or forget.get("count") is None:
            continue
        forget["rate"] = None
        record["cell_id"] = stable_hash(record["config"])
        target = path.with_name(f"{record['method']}-{record['cell_id']}.json")
        changed.append(f"{path.name} -> {target.name}")
        if not check:
            atomic_write_json(target, record)
            if target != path:
                path.unlink()
    return changed


def main(argv: list[str]) -> int:
    if not argv or not Path(argv[0]).is_dir():
        print("usage: python scripts/migrate_rate_and_count.py RECORDS_FOLDER [--check]", file=sys.stderr)
        return 2
    changed = migrate(Path(argv[0]), check="--check" in argv[1:])
    print("\n".join(changed) or "nothing to migrate")
    return 1 if changed and "--check" in argv[1:] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
