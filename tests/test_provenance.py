"""Code fingerprints: which edits make records stale, fingerprints of a git commit, the
equivalence file, the backfill of committed records and the equivalence check itself."""

from __future__ import annotations

import json
import shutil
import subprocess
from types import SimpleNamespace

import pytest

from tkd import equivalence as eq
from tkd.provenance import (
    PACKAGE_ROOT,
    code_changes,
    code_fingerprint,
    commit_fingerprint,
    equivalent_code,
    fingerprint_digest,
    source_fingerprint,
)

SOURCE = '''"""A module."""
import math

SCALE = 2.0


def loss(x):
    """The loss."""
    return SCALE * math.fabs(x)


class Config:
    margin: float = 5.0
'''


def test_docstrings_comments_and_formatting_change_nothing():
    edited = SOURCE.replace('"""The loss."""', '"""Another text."""').replace(
        "return SCALE * math.fabs(x)",
        "# a comment\n    return (SCALE *\n            math.fabs(x))")
    assert source_fingerprint("losses", edited) == source_fingerprint("losses", SOURCE)
    assert set(source_fingerprint("losses", SOURCE)) == {
        "tkd.losses.loss", "tkd.losses.Config", "tkd.losses.<module-level>"}


def test_a_new_definition_keeps_old_records_current_a_changed_one_does_not():
    old = source_fingerprint("losses", SOURCE)
    added = source_fingerprint("losses", SOURCE + "\n\ndef new_loss(x):\n    return x\n")
    assert code_changes(old, added) == []
    changed = source_fingerprint("losses", SOURCE.replace("SCALE * ", "3 * SCALE * "))
    assert code_changes(old, changed) == ["tkd.losses.loss"]
    removed = source_fingerprint("losses", SOURCE.split("class Config")[0])
    assert code_changes(old, removed) == ["tkd.losses.Config"]
    constant = source_fingerprint("losses", SOURCE.replace("SCALE = 2.0", "SCALE = 3.0"))
    assert code_changes(old, constant) == ["tkd.losses.<module-level>"]


def test_equivalence_entries_chain_to_todays_code():
    a = source_fingerprint("losses", SOURCE)
    b = source_fingerprint("losses", SOURCE.replace("SCALE * ", "1 * SCALE * "))
    c = source_fingerprint("losses", SOURCE.replace("SCALE * ", "SCALE * 1 * "))
    link = lambda x, y: {"from": fingerprint_digest(x), "to": fingerprint_digest(y),  # noqa: E731
                         "to_code": y}
    assert not equivalent_code(a, c, [])
    assert equivalent_code(a, c, [link(a, b), link(b, c)])
    assert not equivalent_code(a, c, [link(a, b)])
    assert not equivalent_code(c, a, [link(a, b), link(b, c)])  # one way only


def test_an_entry_applies_to_older_code_its_code_only_added_to():
    """A record made before a function was added is current under the code that added it;
    an entry from that code on carries it along, as it carries that code's own records."""
    old = source_fingerprint("losses", SOURCE)
    grown = source_fingerprint("losses", SOURCE + "\n\ndef extra():\n    return 1\n")
    moved = source_fingerprint("objective", SOURCE + "\n\ndef extra():\n    return 1\n")
    entry = {"from": fingerprint_digest(grown), "to": fingerprint_digest(moved),
             "from_code": grown, "to_code": moved}
    assert code_changes(old, grown) == [] and code_changes(old, moved) != []
    assert equivalent_code(old, moved, [entry]) and equivalent_code(grown, moved, [entry])
    changed = source_fingerprint("losses", SOURCE.replace("SCALE * ", "3 * "))
    assert not equivalent_code(changed, moved, [entry])


@pytest.fixture
def repo(tmp_path):
    """A git repository holding a copy of today's tkd/ as one commit."""
    folder = tmp_path / "repo"
    shutil.copytree(PACKAGE_ROOT / "tkd", folder / "tkd",
                    ignore=shutil.ignore_patterns("__pycache__"))
    git = ["git", "-C", str(folder), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "tkd"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "copy"], check=True)

    def commit(path: str, old: str, new: str) -> str:
        file = folder / path
        text = file.read_text()
        assert old in text
        file.write_text(text.replace(old, new, 1))
        subprocess.run([*git, "commit", "-q", "-am", "edit"], check=True)
        return subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()

    return SimpleNamespace(path=folder, commit=commit)


def test_a_commits_fingerprint_is_that_of_its_files(repo):
    head = commit_fingerprint("HEAD", repo.path)
    assert head == code_fingerprint(repo.path) == code_fingerprint()
    with pytest.raises(ValueError, match="cannot read tkd/"):
        commit_fingerprint("0" * 40, repo.path)


def test_a_module_an_old_commit_lacks_contributes_nothing(repo):
    """The fingerprinted modules may change between commits (``objective``, ``state`` and
    ``evaluation`` came with the restructuring): a commit without one is fingerprinted by the
    modules it has, so an equivalence check against it can run."""
    git = ["git", "-C", str(repo.path), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "rm", "-q", "tkd/objective.py"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "no objective"], check=True)
    today = code_fingerprint()
    assert commit_fingerprint("HEAD", repo.path) == {
        name: digest for name, digest in today.items() if not name.startswith("tkd.objective.")}
    assert code_fingerprint(repo.path) == commit_fingerprint("HEAD", repo.path)


def test_backfill_adds_the_code_of_clean_commits_only_and_is_idempotent(repo, tmp_path):
    head = repo.commit("tkd/losses.py", "import ", "import math  # noqa: F401\nimport ")
    results = tmp_path / "results"
    records = {"a/1.json": {"commit": head, "dirty": False},
               "a/2.failed.json": {"commit": head, "dirty": False},
               "b/1.json": {"commit": head, "dirty": True}, "b/2.json": {"commit": None},
               "b/3.json": {"commit": head, "dirty": False, "code": {"x": "1"}},
               "b/1.run/x.json": {"commit": head, "dirty": False}}
    for name, origin in records.items():
        (results / name).parent.mkdir(parents=True, exist_ok=True)
        (results / name).write_text(json.dumps({"config": {}, "provenance": origin}))
    assert eq.backfill_code(results, repo.path, log=lambda _: None) == {
        "added": 2, "current": 1, "skipped": 2}
    for name in ("a/1.json", "a/2.failed.json"):
        origin = json.loads((results / name).read_text())["provenance"]
        assert origin["code"] == commit_fingerprint(head, repo.path) and origin["code_from_commit"]
    assert "code" not in json.loads((results / "b/1.json").read_text())["provenance"]
    assert "code" not in json.loads((results / "b/1.run/x.json").read_text())["provenance"]
    assert eq.backfill_code(results, repo.path, log=lambda _: None)["added"] == 0


def test_compare_results_names_what_differs():
    run = {"history": {"epoch": [1, 2], "train_total": [1.0, 0.5], "epoch_seconds": [1, 2]},
           "weights": "abc"}
    slower = {**run, "history": {**run["history"], "epoch_seconds": [3, 4]}}
    assert eq.compare_results({"ce": run}, {"ce": slower}) == []
    other = {"history": {**run["history"], "train_total": [1.0, 0.25]}, "weights": "abd"}
    assert eq.compare_results({"ce": run}, {"ce": other}) == [
        "ce: final weights differ", "ce: history differs in train_total"]
    assert eq.compare_results({"ce": run}, {}) == ["ce: run missing in today's code"]
    assert eq.compare_results({}, {"rkd": run}) == []  # a method added since
    logs_more = {**run, "history": {**run["history"], "test_ce": [0.9, 0.8]}}
    assert eq.compare_results({"ce": run}, {"ce": logs_more}) == []  # reporting, not training
    assert eq.added_columns({"ce": run}, {"ce": logs_more}) == {"ce": ["test_ce"]}
    assert eq.compare_results({"ce": logs_more}, {"ce": run}) == [
        "ce: history differs in test_ce"]  # a column no longer logged is a difference


@pytest.mark.slow
def test_the_equivalence_check_tells_a_refactoring_from_a_change(repo, tmp_path):
    """A synthetic old commit: the same code plus a no-op statement in ``fit`` is shown
    identical and recorded; one whose triplet loss doubles is not. ~2 minutes on 2 cores."""
    results = tmp_path / "results"
    same = repo.commit("tkd/train.py", "    seed_everything(config.seed, config.deterministic)",
                       "    unused = 0  # noqa: F841\n"
                       "    seed_everything(config.seed, config.deterministic)")
    old = commit_fingerprint(same, repo.path)
    assert code_changes(old, code_fingerprint()) == ["tkd.train.fit"]
    assert eq.check_equivalence(same, results, repo=repo.path, log=lambda _: None) == []
    entries = json.loads((results / "code-equivalence.json").read_text())
    assert [(e["commit"], e["result"], e["epochs"]) for e in entries] == [(same, "identical", 2)]
    assert equivalent_code(commit_fingerprint(same, repo.path), code_fingerprint(), entries)
    changed = repo.commit("tkd/losses.py", "return _weighted_mean(hinge.clamp(min=0), valid)",
                          "return 2 * _weighted_mean(hinge.clamp(min=0), valid)")
    differences = eq.check_equivalence(changed, results, repo=repo.path, log=lambda _: None)
    assert any(d.startswith("triplet: ") for d in differences), differences
    assert len(json.loads((results / "code-equivalence.json").read_text())) == 1  # no entry


def test_the_cli_refuses_an_unknown_commit(capsys):
    from tkd.cli import main

    assert main(["equivalence", "no-such-commit"]) == 2
    assert "unknown commit 'no-such-commit'" in capsys.readouterr().err


def test_vouched_changes_count_from_the_closest_vouched_code():
    from tkd.provenance import vouched_changes
    a = source_fingerprint("losses", SOURCE)
    b = source_fingerprint("objective", SOURCE)  # every definition moved: all "changed"
    c = source_fingerprint("objective", SOURCE.replace("SCALE * ", "3 * SCALE * "))
    entry = {"from": fingerprint_digest(a), "to": fingerprint_digest(b), "to_code": b}
    assert len(vouched_changes(a, c, [])) == 3
    assert vouched_changes(a, c, [entry]) == ["tkd.objective.loss"]
    assert vouched_changes(a, b, [entry]) == []
