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
from tkd import tables as tb
from tkd import verdict as vd
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


def test_comparison_table_statistics():
    runs = pd.DataFrame({
        "experiment": ["ce", "ce", "ce", "kd-t4"], "test_acc": [0.5, 0.6, 0.7, 0.9],
        "train_acc": [0.6, 0.7, 0.8, 1.0], "best_test_acc": [0.5, 0.6, 0.7, 0.9],
        "val_acc": [0.55, 0.65, 0.75, 0.85], "test_at_best_val": [0.4, 0.6, 0.8, 0.9],
        "converged": [True, True, False, True], "device": ["cpu", "cpu", "H200", "cpu"],
        "epochs": [3, 3, 3, 3], "wall_seconds": [60.0] * 4,
    })
    table = tb.comparison_table(runs).set_index("experiment")
    assert table.loc["ce", "test_mean"] == pytest.approx(60.0)
    assert table.loc["ce", "test_std"] == pytest.approx(10.0)
    assert table.loc["ce", "test_at_best_val_mean"] == pytest.approx(60.0)
    assert table.loc["ce", "val_mean"] == pytest.approx(65.0)
    assert table.loc["ce", "converged"] == "2/3" and table.loc["ce", "devices"] == "H200, cpu"
    assert table.loc["ce", "compute_minutes"] == pytest.approx(3.0)
    assert np.isnan(table.loc["kd-t4", "test_std"])
    sentence = tb.describe_difference(table.reset_index().fillna(0), "kd-t4", "ce")
    assert sentence.startswith("kd-t4 is ahead of ce by +30.00 points")
    assert sentence.endswith("3.0x the larger seed std (10.00): beyond the seed spread.")


def test_learning_curves_have_the_logged_panels(results):
    records = [r for r in rc.load_records(ex.get_preset("quick"), results)
               if r["config"]["seed"] == 1]
    fig = fg.plot_learning_curves(records, ["ce", "triplet"])
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["total loss", "classification loss (CE)", "triplet loss", "accuracy"]
    assert len(fig.axes[2].lines) == 2  # triplet train + test; the CE student has none
    assert len(fig.axes[3].lines) == 4


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


def test_beside_puts_a_smaller_preset_next_to_its_teachers_owner(tmp_path):
    from tkd.records import result_path, save_record

    def record(preset, name, seed, acc):
        return {"config": {"preset": preset, "experiment": name, "seed": seed, "objective": {},
                           "train": {"epochs": 1}},
                "history": {"epoch": [1], "val_acc": [acc], "test_acc": [acc],
                            "train_acc": [acc]},
                "final": {"test_acc": acc, "val_acc": acc, "train_acc": acc, "epoch": 1.0},
                "environment": {"device": "cpu", "device_name": "cpu"}, "wall_seconds": 1.0,
                "interrupted": False, "provenance": {}}

    accuracy = {"lesson": {"kd-t4": 0.88, "triplet": 0.86}, "fashion": {"kd-t4": 0.90,
                                                                        "triplet": 0.91}}
    for preset, rows in accuracy.items():
        for name, acc in rows.items():
            for seed in (1, 2):
                save_record(result_path(ex.get_preset(preset), name, seed, tmp_path),
                            record(preset, name, seed, acc + 0.001 * seed))
    lesson = ex.get_preset("lesson")
    text = tb.beside_markdown(lesson, tb.student_runs(lesson, tmp_path), tmp_path)
    assert "| `kd-t4` | 88.15 (2 seeds) | 90.15 (2 seeds) |" in text
    assert "| `kd-t4` − `triplet` | +2.00 [+2.00, +2.00] (2 seeds) |" in text
    assert text.rstrip().endswith("| no |")  # +2 on the lesson, -1 on the full set
    fashion = ex.get_preset("fashion")
    assert tb.beside_markdown(fashion, tb.student_runs(fashion, tmp_path), tmp_path) is None


def test_a_run_that_ends_at_chance_is_counted_in_the_seeds_cell_and_not_as_converged():
    """A student that ended where a constant guess ends (val. acc. below 1.5 / classes) is
    marked, with chance taken from the data set's number of classes."""
    assert tb.at_chance(0.10, "fashion-mnist") and not tb.at_chance(0.151, "fashion-mnist")
    assert not tb.at_chance(0.10, "cifar100") and tb.at_chance(0.01, "cifar100")
    runs = pd.DataFrame([{"experiment": "pkt", "seed": s, "epochs": 3, "test_acc": acc,
                          "test_at_best_val": acc, "val_acc": acc, "train_acc": acc,
                          "best_test_acc": acc, "converged": True, "device": "cpu",
                          "wall_seconds": 60.0, "stale": "",
                          "at_chance": tb.at_chance(acc, "fashion-mnist")}
                         for s, acc in ((1, 0.91), (2, 0.10), (3, 0.90))])
    table = tb.comparison_table(runs)
    assert table.loc[0, "at_chance"] == 1
    assert "| 3 (1 at chance) |" in tb.table_markdown(table)
    assert table.loc[0, "converged"] == "2/3"  # flat at chance has plateaued, not converged


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


def test_headline_pairs_put_the_chosen_rate_and_mined_triplet_first_then_the_others():
    names = ["triplet", "kd-t4", "ce-wd0.007", "triplet-batch-hard", "triplet-batch-semihard",
             "logit-mse", "logit-mse-lr0.003", "logit-mse-lr0.001"]
    val = {"triplet-batch-semihard": 0.95, "triplet-batch-hard": 0.94,
           "logit-mse-lr0.001": 0.93, "logit-mse-lr0.003": 0.92, "logit-mse": 0.1}
    runs = pd.DataFrame([{"experiment": n, "seed": s, "test_acc": 0.9, "val_acc": val.get(n, 0.9)}
                         for n in names for s in (1, 2)])
    pairs = vd.headline_pairs(runs)
    assert pairs.index(("triplet-batch-semihard", "kd-t4")) < pairs.index(
        ("triplet-batch-hard", "kd-t4"))  # chosen on validation first, the other after it
    assert ("triplet-batch-hard", "triplet") in pairs
    assert pairs.index(("kd-t4", "logit-mse-lr0.001")) < pairs.index(
        ("kd-t4", "logit-mse-lr0.003"))
    assert ("logit-mse-lr0.003", "ce-wd0.007") in pairs
    assert ("kd-t4", "logit-mse") not in pairs  # the collapsed rate 0.01 is neither
    assert len(pairs) == len(set(pairs))


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


def test_fidelity_comes_from_the_run_or_from_the_saved_weights_or_is_missing():
    scored = {"final": {"test_teacher_agreement": 0.9, "test_teacher_kl": 0.1}}
    later = {"final": {}, "fidelity": {"test_teacher_agreement": 0.8, "test_teacher_kl": 0.2}}
    assert tb._fidelity(scored)["fidelity_source"] == "run"
    assert tb._fidelity(later) == {"test_teacher_agreement": 0.8, "test_teacher_kl": 0.2,
                                   "fidelity_source": "saved weights"}
    assert tb._fidelity({"final": {}})["fidelity_source"] == ""
