"""`tkd figures` rebuilds tables and figures from stored results of tiny real runs."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from tkd import experiments as ex
from tkd import figures as fg
from tkd import records as rc
from tkd.cli import main
from tkd.grid import reproduce

ROOT = Path(__file__).resolve().parents[1]

torch.set_num_threads(1)  # a busy 2-core machine: more threads only spin


TINY = dataclasses.replace(ex.PRESETS["quick"], epochs=2, teacher_epochs=1, seeds=(1, 2),
                           headline_seeds=(1, 2), sweep_seeds=(1, 2))


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """Real 2-epoch runs of two methods (and one more margin) with two seeds each."""
    root = tmp_path_factory.mktemp("results")
    reproduce(TINY, ["ce", "triplet", "triplet-m1"], root=root, log=lambda line: None,
              progress=False)
    return root


def test_figures_command_rebuilds_everything_from_the_json_files(results, tmp_path, capsys):
    assert main(["figures", "--preset", "quick", "--results", str(results),
                 "--out", str(tmp_path)]) == 0
    folder = tmp_path / "quick"
    for name in ("comparison.md", "comparison.csv", "runs.csv", "learning_curves.png",
                 "validation_curves.png", "paired.csv", "paired.md", "verdict.md",
                 "margin_sweep.png", "margin_sweep.csv"):
        assert (folder / name).is_file() and (folder / name).stat().st_size > 0, name
    assert not (folder / "temperature_sweep.png").exists()  # no temperature runs were made
    table = pd.read_csv(folder / "comparison.csv").set_index("experiment")
    assert list(table.index) == ["teacher", "ce", "triplet"]
    for name in ("ce", "triplet"):  # recompute mean ± std straight from the files
        accs = [json.loads((results / "quick" / name / f"{s}.json").read_text())["final"]
                ["test_acc"] for s in (1, 2)]
        assert table.loc[name, "seeds"] == 2
        assert table.loc[name, "test_mean"] == pytest.approx(100 * np.mean(accs), abs=1e-3)
        assert table.loc[name, "test_std"] == pytest.approx(100 * np.std(accs, ddof=1), abs=1e-3)
    markdown = (folder / "comparison.md").read_text()
    assert "| `triplet` |" in markdown and "±" in markdown
    sweep = pd.read_csv(folder / "margin_sweep.csv")
    assert list(sweep.value) == [1.0, 5.0] and list(sweep.seeds) == [2, 2]
    paired = pd.read_csv(folder / "paired.csv")
    assert [tuple(p) for p in paired[["a", "b"]].values] == [("triplet", "ce")]
    assert paired.seeds.tolist() == [2]
    assert "Paper's ordering" in (folder / "verdict.md").read_text()
    assert "wrote" in capsys.readouterr().out


def test_figures_without_results_is_a_clear_error(tmp_path, capsys):
    assert main(["figures", "--preset", "quick", "--results", str(tmp_path),
                 "--out", str(tmp_path / "figs")]) == 2
    assert "reproduce --preset quick" in capsys.readouterr().err


def test_learning_curves_have_the_logged_panels(results):
    records = [r for r in rc.load_records(ex.get_preset("quick"), results)
               if r["config"]["seed"] == 1]
    fig = fg.plot_learning_curves(records, ["ce", "triplet"])
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["total loss", "classification loss (CE)", "triplet loss", "accuracy"]
    assert len(fig.axes[2].lines) == 2  # triplet train + test; the CE student has none
    assert len(fig.axes[3].lines) == 4


def test_validation_curves_tell_a_variant_from_its_method_by_its_dash(results):
    records = rc.load_records(ex.get_preset("quick"), results)
    fig = fg.plot_validation_curves(records, ["ce", "triplet", "triplet-m1"])
    lines = {line.get_label(): line for line in fig.axes[0].lines}
    assert lines["triplet"].get_color() == lines["triplet-m1"].get_color()  # one family
    assert lines["triplet"].get_linestyle() != lines["triplet-m1"].get_linestyle()
    assert lines["ce"].get_linestyle() != lines["triplet"].get_linestyle()


def test_stale_and_diverged_runs_are_marked(results, tmp_path, monkeypatch):
    """Current records: plain seed counts; records of other settings, teacher, data or code:
    the ``stale`` column says why, the seeds cell counts them and a warning names them;
    diverged runs count as seeds but not as converged."""
    monkeypatch.setitem(ex.PRESETS, "quick", TINY)  # the records are current for TINY
    lines = []
    fg.build_figures("quick", results, tmp_path / "a", log=lines.append)
    runs = pd.read_csv(tmp_path / "a" / "quick" / "runs.csv", keep_default_na=False)
    assert (runs.stale == "").all() and lines == []
    # two epochs leave this student at chance (it needs 25-40 on the digits): marked as such
    assert "| `ce` | student alone (CE, wd 0.01) | 2 (2 at chance) |" in \
        (tmp_path / "a" / "quick" / "comparison.md").read_text()
    root = tmp_path / "results"
    shutil.copytree(results, root)
    path = root / "quick" / "ce" / "2.json"
    record = json.loads(path.read_text())
    record["provenance"]["code"]["tkd.losses.kd_loss"] = "0" * 12
    path.write_text(json.dumps(record))
    failed = {**record, "error": "the ce loss became nan at epoch 1", "history": {}}
    failed["config"] = {**record["config"], "seed": 3}
    (root / "quick" / "ce" / "3.failed.json").write_text(json.dumps(failed))
    fg.build_figures("quick", root, tmp_path / "b", log=lines.append)
    runs = pd.read_csv(tmp_path / "b" / "quick" / "runs.csv", keep_default_na=False)
    stale = runs[runs.stale != ""]
    assert stale[["experiment", "seed"]].values.tolist() == [["ce", 2]]
    assert "code changed since it was recorded: tkd.losses.kd_loss" in stale.stale.iloc[0]
    assert len(lines) == 1 and "1 stale record(s)" in lines[0] and "ce seed 2" in lines[0]
    markdown = (tmp_path / "b" / "quick" / "comparison.md").read_text()
    row = next(line for line in markdown.splitlines() if line.startswith("| `ce` |"))
    assert "| 3 (1 stale, 1 diverged, 2 at chance) |" in row and "/2 |" in row
    table = pd.read_csv(tmp_path / "b" / "quick" / "comparison.csv").set_index("experiment")
    assert (table.loc["ce", "seeds"], table.loc["ce", "stale"], table.loc["ce", "diverged"]) \
        == (2, 1, 1)


COMMITTED_PRESETS = sorted(p.name for p in (ROOT / "figures").iterdir()
                           if p.is_dir() and (ROOT / "results" / p.name).is_dir())


def test_every_preset_with_records_has_its_committed_figures():
    presets = {p.name for p in (ROOT / "results").iterdir()
               if p.is_dir() and any(p.glob("*/[0-9]*.json"))}
    assert presets <= set(COMMITTED_PRESETS), "run `make figures PRESET=<preset>` and commit"


@pytest.mark.slow
@pytest.mark.parametrize("preset", COMMITTED_PRESETS)
def test_the_committed_tables_are_what_the_committed_records_give(preset, tmp_path):
    """Every markdown table under figures/<preset>/ (which the README shows) is rebuilt
    from results/<preset>/ and must come out identical: a table cannot outlive its records."""
    committed = ROOT / "figures" / preset
    fg.build_figures(preset, root=ROOT / "results", out=tmp_path, log=lambda _: None)
    for path in sorted(committed.glob("*.md")):
        rebuilt = tmp_path / preset / path.name
        assert rebuilt.is_file(), f"{path.name} is committed but no longer built"
        assert rebuilt.read_text() == path.read_text(), (
            f"figures/{preset}/{path.name} is out of date: run `make figures PRESET={preset}`")


def test_schedule_plot_labels_each_length_with_its_seeds():
    from tkd.verdict import schedule_frame
    by_length = {n: pd.DataFrame([{"experiment": e, "seed": s, "test_acc": acc,
                                   "val_acc": acc}
                                  for e, acc in (("kd-t4", 0.91), ("triplet", 0.90))
                                  for s in seeds])
                 for n, seeds in ((10, (1, 2, 3)), (40, (1,)))}
    fig = fg.plot_schedule_gaps(schedule_frame(by_length, [("kd-t4", "triplet")]))
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert labels == ["10\n3 seeds", "40\n1 seed"]
    frame = schedule_frame(by_length, [("kd-t4", "triplet")])
    fig = fg.plot_schedule_gaps(frame, {10: 30, 40: 100})
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["10 of 30\n3 seeds",
                                                                    "40 of 100\n1 seed"]
    from matplotlib.colors import to_hex

    from tkd.plots import METHOD_COLOURS
    handles, _ = fig.axes[0].get_legend_handles_labels()
    drawn = {to_hex(h.lines[0].get_color()) for h in handles}
    assert not drawn & {to_hex(c) for c in METHOD_COLOURS.values()}  # a gap is no method
