"""The throughput benchmark runs end to end on a tiny setting and reports every measurement."""

import json
import sys
from pathlib import Path

from .conftest import SHARED_DATA, needs_shared_data

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))


@needs_shared_data("cifar10_jpeg_bytes.npz")
def test_bench_reports_all_paths_ratios_and_stacked_models(tmp_path, monkeypatch):
    import bench

    monkeypatch.setenv("UNLEARN_BENCH_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "bench"
    assert bench.main(["--data-root", str(SHARED_DATA), "--train-size", "256", "--batch-size", "32", "--steps", "2",
                       "--workers", "0", "--augmentations", "none,augmix", "--skip-cell", "--models", "2",
                       "--widths", "4,8", "--out", str(out)]) == 0
    result = json.loads((out / "bench.json").read_text())
    assert [r["augmentation"] for r in result["rows"]] == ["none", "augmix"]
    for row in result["rows"]:
        for key in ("conventional_img_s", "suite_img_s", "limit_img_s"):
            assert row[key] > 0
        assert abs(row["suite_over_limit"] - row["suite_img_s"] / row["limit_img_s"]) < 1e-9
    assert result["stacked_models"]["models"] == 2 and result["stacked_models"]["aggregate_img_s"] > 0
    assert "(d) 2 models" in (out / "bench.md").read_text()
