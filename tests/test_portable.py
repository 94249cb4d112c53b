"""The portable CPU mode (:mod:`tkd.portable`): its caps take effect, a command restarts
itself into it, and one short run gives the bits of the committed fixture, whichever CPU
model runs the test (the fixture names the one that made it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tkd.cli import main
from tkd.portable import cpu_mode, is_portable, portable_environment
from tkd.records import cpu_name

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "portable_run.json"


def portable_env(threads: int = 1) -> dict:
    return {**os.environ, **portable_environment(threads), "PYTHONPATH": str(ROOT)}


def run_fixture(out: Path, env: dict) -> dict:
    subprocess.run([sys.executable, str(ROOT / "tests" / "portable_run.py"), str(out)],
                   env=env, check=True, cwd=ROOT, timeout=600)
    return json.loads(out.read_text())


def test_the_caps_take_effect_in_a_fresh_process():
    code = ("import json, torch; from tkd.portable import cpu_mode; "
            "print(json.dumps(cpu_mode()))")
    done = subprocess.run([sys.executable, "-c", code], env=portable_env(), cwd=ROOT,
                          capture_output=True, text=True, check=True)
    mode = json.loads(done.stdout)
    assert mode["mode"] == "portable" and mode["aten"] == "AVX2"
    assert mode["onednn_max_cpu_isa"] == "AVX2"
    asked = portable_environment()["MKL_CBWR"]
    assert mode["mkl_cbwr"] == asked
    assert mode["mkl_cnr"] == asked, (f"MKL_CBWR={asked} asked, but MKL says CNR "
                                      f"{mode['mkl_cnr']} is in force on {cpu_name()}")
    assert is_portable(portable_environment()) and not is_portable({})


@pytest.mark.slow
def test_one_short_run_gives_the_committed_bits(tmp_path):
    """Fails when this machine's CPU trains other bits in the portable mode than the one that
    made the fixture: then the mode does not cover this CPU model (say which in the README)."""
    fresh = run_fixture(tmp_path / "run.json", portable_env())
    committed = json.loads(FIXTURE.read_text())
    where = (f"fixture made on {committed['cpu']} ({committed['cpu_capability']}, MKL CNR "
             f"{committed.get('mkl_cnr', 'AVX2,STRICT')}), this run on {fresh['cpu']} "
             f"({fresh['cpu_capability']}, MKL CNR {fresh['mkl_cnr']})")
    assert fresh["cpu_capability"] == "AVX2", where
    assert fresh["runs"] == committed["runs"], f"histories differ: {where}"
    assert fresh["weights"] == committed["weights"], f"final weights differ: {where}"


def test_reproduce_restarts_itself_only_from_a_shell(tmp_path, capsys):
    """Called from Python, torch has started: the portable mode cannot be set and says how."""
    if is_portable():
        pytest.skip("this test process already runs in the portable mode")
    code = main(["reproduce", "--preset", "quick", "--experiments", "ce", "--seeds", "1",
                 "--device", "cpu", "--results", str(tmp_path), "--no-figures"])
    err = capsys.readouterr().err
    assert code == 2 and "--cpu-mode native" in err and "from a shell" in err
    assert cpu_mode()["mode"] == "native"


def test_a_shell_command_runs_in_the_portable_mode_and_records_it(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for key in portable_environment():
        env.pop(key, None)
    done = subprocess.run(
        [sys.executable, "-m", "tkd", "reproduce", "--preset", "quick", "--experiments", "ce",
         "--seeds", "1", "--device", "cpu", "--results", str(tmp_path), "--no-figures"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "restarting with ATen and oneDNN capped at AVX2 and MKL on its COMPATIBLE" \
        in done.stdout
    record = json.loads((tmp_path / "quick" / "ce" / "1.json").read_text())
    assert record["environment"]["cpu_mode"]["mode"] == "portable"
    assert record["environment"]["cpu_capability"] == "AVX2"
    assert record["environment"]["cpu_mode"]["mkl_cnr"] == portable_environment()["MKL_CBWR"]
    teacher = json.loads((tmp_path / "quick" / "teacher" / "1.json").read_text())
    assert teacher["environment"]["cpu_mode"]["mode"] == "portable"
