"""The throughput benchmark runs end to end on a tiny setting and reports every measurement."""

import json

from unlearn_bench.bench import cli as bench

from .conftest import SHARED_DATA, needs_shared_data


@needs_shared_data("cifar10_jpeg_bytes.npz")
def test_bench_reports_all_paths_ratios_and_stacked_models(tmp_path, monkeypatch):
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
    for row in result["rows"]:
        assert abs(row["suite_s_per_epoch"] * row["suite_img_s"] - 50_000) < 1e-6
    stacked = result["stacked_models"]
    assert stacked["models"] == 2
    processes, vmap, graphs = stacked["approaches"]
    assert processes["approach"] == "processes" and processes["aggregate_img_s"] > 0, processes["note"]
    assert vmap["approach"] == "vmap" and vmap["aggregate_img_s"] > 0 and vmap["note"] == ""
    assert graphs["approach"] == "graphs" and graphs["aggregate_img_s"] is None  # CPU: CUDA graphs need CUDA
    assert graphs["note"] == "not measured: needs CUDA"
    assert abs(vmap["aggregate_over_limit"] - vmap["aggregate_img_s"] / vmap["one_model_limit_img_s"]) < 1e-9
    text = (out / "bench.md").read_text()
    assert "(d) 2 models" in text and "graphs (float32): not measured: needs CUDA" in text


def test_bench_refuses_a_bad_argument_in_one_line_before_any_work(capsys):
    assert bench.main(["--multi", "vmap,streams"]) == 2
    assert capsys.readouterr().err.strip() == "error: --multi='streams' is not valid; accepted: processes, vmap, graphs"
    for bad, key in ((["--steps", "0"], "--steps"), (["--augmentations", "none,bogus"], "--augmentations"),
                     (["--widths", "16,x"], "--widths"), (["--models", "-1"], "--models")):
        assert bench.main(bad) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"error: {key}=") and "\n" not in err, err
