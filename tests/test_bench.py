"""The benchmark scripts' bookkeeping (the timed parts run in bench/, not in the tests)."""

import importlib.util
import re
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_throughput_summary_rates_and_ratio():
    throughput = load("throughput")
    results = {"conventional": {"images_per_second": 1000.0, "flop_per_step": 5e9},
               "tkd": {"images_per_second": 3000.0, "flop_per_step": 4e9}}
    throughput.summarise(results, {"gflops": 100.0})
    assert results["tkd"]["flop_per_image"] == pytest.approx(4e7)
    assert results["tkd"]["gflops"] == pytest.approx(120.0)
    assert results["tkd"]["percent_of_peak"] == pytest.approx(120.0)
    assert results["tkd"]["ratio_to_conventional"] == pytest.approx(3.0)
    assert set(throughput.variants_for("cuda")) >= {"conventional", "tkd-graph-fp32"}


def test_grid_settings_and_speedups():
    grid = load("grid")
    assert grid.settings(["cpu", "cuda"], ["graph", "eager"], [1, 2]) == [
        ("cpu", "eager", 1), ("cpu", "eager", 2), ("cuda", "graph", 1), ("cuda", "graph", 2),
        ("cuda", "eager", 1), ("cuda", "eager", 2)]
    rows = [{"device": "cpu", "mode": "eager", "jobs": j, "aggregate_images_per_second": v}
            for j, v in ((1, 100.0), (2, 150.0))]
    grid.add_speedups(rows)
    assert [r["speedup"] for r in rows] == pytest.approx([1.0, 1.5])


def test_results_hold_no_absolute_machine_path(tmp_path, monkeypatch):
    grid = load("grid")
    monkeypatch.chdir(tmp_path)
    assert grid.portable(str(tmp_path / "a" / "b.json")) == "a/b.json"
    assert grid.portable("out.json") == "out.json"
    assert grid.portable("/root/out/x.json") == "<out>/x.json"
    assert load("throughput").portable(str(tmp_path / "t.json")) == "t.json"
    for path in (BENCH / "results").iterdir():
        assert not re.search(r"(?<![\w.<])/(work|tmp|home|root)/", path.read_text()), path
