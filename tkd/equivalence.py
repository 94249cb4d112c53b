"""Migration of records across code changes: equivalence checks and the code backfill.

``python -m tkd equivalence <old-commit>`` trains a teacher (``paper-teacher``) and every
family of experiments the records hold that the old code has (:func:`_runs`: the main
comparison with its batch miners, the relation- and feature-based methods, DKD, DIST, the
standardized runs, the teacher-free control, the 2022 student) for a few epochs on a 200-image
digits subset, on the CPU with deterministic settings, once with the old commit's ``tkd/`` and
once with today's, each in its own subprocess (``PYTHONPATH`` pointing at that code). Only when
every history (losses, accuracies; timing columns aside) and every final weight is identical
bit for bit is an entry appended to ``<results>/code-equivalence.json``; records fingerprinted
with the old code then count as current (:func:`tkd.provenance.equivalent_code`). The check is
CPU-only: it cannot vouch for CUDA-only code paths.

``python -m tkd backfill-code`` adds ``provenance["code"]`` to the records that lack it,
computed from the clean commit the record names (:func:`backfill_code`).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from tkd.files import atomic_write_json
from tkd.provenance import (
    EQUIVALENCE_FILE,
    PACKAGE_ROOT,
    code_fingerprint,
    commit_fingerprint,
    fingerprint_digest,
    load_equivalences,
)

TIMING = ("epoch_seconds", "images_per_second", "seconds")

WORKER = r'''
import hashlib, json, sys
import torch
root, spec_file = sys.argv[1:3]
import tkd
assert tkd.__file__.startswith(root), (tkd.__file__, root)
from tkd.data import load_dataset
from tkd.models import build_model
from tkd.train import TrainConfig, fit, seed_everything
try:
    from tkd.objective import METHODS, method_config
except ImportError:  # code from before tkd.objective (up to commit 2397319)
    from tkd.losses import METHODS, method_config

spec = json.load(open(spec_file))
torch.set_num_threads(1)
data = load_dataset("digits").with_validation(100, seed=0)
data.train = data.train.subset(spec["images"], seed=0)


def config(lr, weight_decay, seed):
    return TrainConfig(epochs=spec["epochs"], batch_size=50, lr=lr, weight_decay=weight_decay,
                       lr_step=1, seed=seed, deterministic=True, device="cpu",
                       precision="fp32", progress=False)


def weights(model):
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().contiguous().view(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def train(run, teacher=None):
    seed_everything(run["seed"])
    model = build_model(run["model"], data.num_classes, data.in_channels, data.image_size)
    objective = method_config(run["method"], **run["overrides"]) if run["method"] else None
    uses_teacher = objective is not None and objective.needs_teacher  # as the grid does
    history = fit(model, data, config(run["lr"], run["weight_decay"], run["seed"]), objective,
                  teacher if uses_teacher else None)
    return model, {"history": history.to_dict(orient="list"), "weights": weights(model)}


teacher, results = None, {}
for run in spec["runs"]:
    if run["method"] and run["method"] not in METHODS:
        continue  # a method this code does not have yet: no record can come from it
    model, results[run["name"]] = train(run, teacher)
    if run["name"] == "teacher":
        teacher = model.eval()
print(json.dumps(results))
'''


EQUIVALENCE_2022 = ("ce-wd0.007", "kd-t4", "triplet", "triplet-batch-semihard")
"""The experiments the records hold for the 2022 student (preset ``fashion-bn``)."""


def _runs() -> list[dict]:
    """The teacher (the records' model, ``paper-teacher``) and every family of experiments the
    records hold, as plain data for the worker: the main comparison, the relation- and
    feature-based methods, today's logit KD (DKD, DIST, the standardized runs), the
    generality run, the fair comparison's author settings (the teacher-free control among
    them), one margin and one temperature of the sweeps, on the paper's student, and the
    experiments of the 2022 student; each with the paper's learning rate and weight decay
    (:func:`tkd.experiments.student_config`)."""
    from tkd.experiments import (
        AUTHOR_SETTINGS,
        GENERALITY,
        MAIN,
        MODERN,
        PRESETS,
        RELATIONS,
        SWEEPS,
        student_config,
    )

    runs = [{"name": "teacher", "method": None, "overrides": {}, "lr": 0.05,
             "weight_decay": 5e-4, "seed": 1, "model": "paper-teacher"}]
    specs = [*MAIN.values(), *RELATIONS.values(), *MODERN.values(), *GENERALITY.values(),
             *AUTHOR_SETTINGS.values(), SWEEPS["triplet-m10"], SWEEPS["kd-t8"]]
    models = [("paper-student", spec) for spec in specs]
    models += [("student-2022", MAIN[name]) for name in EQUIVALENCE_2022]
    for model, spec in models:
        recipe = student_config(PRESETS["paper"], spec, 2)  # the paper's lr and weight decay
        suffix = "" if model == "paper-student" else f"@{model}"
        runs.append({"name": spec.name + suffix, "method": spec.method,
                     "overrides": spec.overrides, "lr": recipe.lr,
                     "weight_decay": recipe.weight_decay, "seed": 2, "model": model})
    return runs


def resolve_commit(commit: str, repo: str | Path | None = None) -> str:
    """The full hash of ``commit`` (a short hash, ``HEAD``, a branch)."""
    done = subprocess.run(["git", "-C", str(repo or PACKAGE_ROOT), "rev-parse", "--verify",
                           f"{commit}^{{commit}}"], capture_output=True, text=True)
    if done.returncode != 0:
        raise ValueError(f"unknown commit {commit!r}: {done.stderr.strip()}")
    return done.stdout.strip()


def extract_commit(commit: str, folder: Path, repo: str | Path | None = None) -> Path:
    """``tkd/`` of git ``commit`` written under ``folder`` (``git archive``); returns
    ``folder``."""
    done = subprocess.run(["git", "-C", str(repo or PACKAGE_ROOT), "archive", "--format=tar",
                           commit, "tkd"], capture_output=True)
    if done.returncode != 0:
        raise ValueError(f"cannot read tkd/ at commit {commit}: {done.stderr.decode().strip()}")
    with tarfile.open(fileobj=io.BytesIO(done.stdout)) as tar:
        tar.extractall(folder, filter="data")
    return folder


def train_with(code_root: Path, spec_file: Path) -> dict:
    """Run the worker with the ``tkd`` under ``code_root``; returns its results per run."""
    env = {**os.environ, "PYTHONPATH": str(code_root), "OMP_NUM_THREADS": "1",
           "CUBLAS_WORKSPACE_CONFIG": ":4096:8", "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run([sys.executable, "-c", WORKER, str(code_root), str(spec_file)],
                          env=env, cwd=spec_file.parent, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"training with {code_root} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def compare_results(old: dict, new: dict) -> list[str]:
    """The differences between two workers' results (names of runs and what differs); empty
    when every final weight and every history column both versions log (timing columns
    aside) is identical. A run only the new code makes (a method added since) is no
    difference. A column only the new code logs (:func:`added_columns`) changes what
    is reported, not what is trained, and is no difference; a column it no longer logs is."""
    differences = []
    for name in sorted(set(old) | set(new)):
        if name not in old:
            continue  # a method the old code did not have: none of its records can exist
        if name not in new:
            differences.append(f"{name}: run missing in today's code")
            continue
        a, b = old[name], new[name]
        if a["weights"] != b["weights"]:
            differences.append(f"{name}: final weights differ")
        columns = set(a["history"]) - set(TIMING)
        bad = sorted(c for c in columns if a["history"].get(c) != b["history"].get(c))
        if bad:
            differences.append(f"{name}: history differs in {', '.join(bad)}")
    return differences


def added_columns(old: dict, new: dict) -> dict[str, list[str]]:
    """Per run, the history columns only the new code logs."""
    added = {name: sorted(set(new[name]["history"]) - set(old[name]["history"]))
             for name in set(old) & set(new)}
    return {name: columns for name, columns in sorted(added.items()) if columns}


def add_equivalence(results: str | Path, old_code: dict, new_code: dict,
                    evidence: dict) -> bool:
    """Append ``old_code -> new_code`` to ``<results>/code-equivalence.json`` (atomically);
    False when that entry is already there."""
    entries = load_equivalences(results)
    entry = {"from": fingerprint_digest(old_code), "to": fingerprint_digest(new_code)}
    if any((e.get("from"), e.get("to")) == (entry["from"], entry["to"]) for e in entries):
        return False
    entries.append({**entry, **evidence, "from_code": old_code, "to_code": new_code})
    atomic_write_json(Path(results) / EQUIVALENCE_FILE, entries)
    return True


def check_equivalence(commit: str, results: str | Path, epochs: int = 2, images: int = 200,
                      repo: str | Path | None = None, new: str | None = None,
                      log=print) -> list[str]:
    """Train with ``commit``'s code and with today's (the working tree's ``tkd/``, or that of
    git commit ``new``) and compare; when identical, record the equivalence under
    ``results``. Returns the differences (empty: identical)."""
    commit = resolve_commit(commit, repo)
    new = None if new is None else resolve_commit(new, repo)
    old_code = commit_fingerprint(commit, repo)
    new_code = code_fingerprint() if new is None else commit_fingerprint(new, repo)
    if fingerprint_digest(old_code) == fingerprint_digest(new_code):
        log(f"{commit}: the code that decides training is unchanged; nothing to check")
        return []
    runs = _runs()
    with tempfile.TemporaryDirectory(prefix="tkd-equivalence-") as tmp:
        tmp = Path(tmp)
        spec_file = tmp / "spec.json"
        atomic_write_json(spec_file, {"runs": runs, "epochs": epochs, "images": images})
        old_root = extract_commit(commit, tmp / "old", repo)
        new_root = PACKAGE_ROOT if new is None else extract_commit(new, tmp / "new", repo)
        old_runs, new_runs = train_with(old_root, spec_file), train_with(new_root, spec_file)
        differences = compare_results(old_runs, new_runs)
    if differences:
        log(f"{commit}: NOT identical: " + "; ".join(differences))
        return differences
    evidence = {"commit": commit, "compared_with": new or "working tree",
                "methods": [r["name"] for r in runs], "epochs": epochs,
                "evidence": f"digits ({images} training images), CPU, deterministic: histories "
                            "and final weights identical bit for bit", "result": "identical",
                "columns_added_since": added_columns(old_runs, new_runs)}
    added = add_equivalence(results, old_code, new_code, evidence)
    log(f"{commit}: identical; {'added to' if added else 'already in'} "
        f"{Path(results) / EQUIVALENCE_FILE}")
    return []


def _record_files(results: Path) -> list[Path]:
    """Every run record (``*.json``, ``*.failed.json``) under ``results``, work folders aside."""
    return sorted(p for p in results.rglob("*.json") if p.name != EQUIVALENCE_FILE
                  and not any(part.endswith(".run") or part.startswith("_")
                              for part in p.relative_to(results).parts[:-1]))


def backfill_code(results: str | Path, repo: str | Path | None = None, log=print) -> dict:
    """Add ``provenance["code"]`` (with ``"code_from_commit": true``) to every record under
    ``results`` that lacks it, computed from the commit the record names when the record says
    its tree was clean; records without a commit, or dirty ones, are left as they are.
    Idempotent. Returns counts: ``{"added", "current", "skipped"}``."""
    from tkd.records import load_record

    counts = {"added": 0, "current": 0, "skipped": 0}
    fingerprints: dict[str, dict] = {}
    for path in _record_files(Path(results)):
        record = load_record(path)
        origin = record.get("provenance") if isinstance(record, dict) else None
        if not isinstance(origin, dict):
            continue
        if origin.get("code"):
            counts["current"] += 1
            continue
        commit = origin.get("commit")
        if not commit or origin.get("dirty") is not False:
            counts["skipped"] += 1
            log(f"{path.relative_to(results)}: no clean commit recorded, left without code")
            continue
        if commit not in fingerprints:
            fingerprints[commit] = commit_fingerprint(commit, repo)
        record["provenance"] = {**origin, "code": fingerprints[commit],
                                "code_from_commit": True}
        atomic_write_json(path, record)
        counts["added"] += 1
    log(f"code fingerprints: {counts['added']} added, {counts['current']} already there, "
        f"{counts['skipped']} left without")
    return counts
