"""The identity of the code that decides training, and which records it makes stale.

:func:`code_fingerprint` hashes the modules whose code decides a run's numbers
(:data:`CODE_MODULES`) one top-level definition at a time. A record stores the fingerprint it
was trained with (``provenance["code"]``); :func:`code_changes` lists the definitions that have
changed or gone since. Behaviour-preserving changes are vouched for in
``results/code-equivalence.json`` (written by ``python -m tkd equivalence``, see
:mod:`tkd.equivalence`), read by :func:`equivalent_code`; :func:`vouched_changes` names what
changed after the last vouched code.
"""

from __future__ import annotations

import ast
import hashlib
import json
import subprocess
from functools import lru_cache
from pathlib import Path

CODE_MODULES = ("losses", "miners", "models", "data", "objective", "state", "evaluation", "train")
"""The modules whose code decides a run's numbers. The set may change between commits: a
module a commit does not have contributes nothing to its fingerprint (:func:`commit_fingerprint`),
and definitions that move from one module to another read as removed, so records made before a
move are bridged by an equivalence entry (``python -m tkd equivalence``)."""
MODULE_LEVEL = "<module-level>"
EQUIVALENCE_FILE = "code-equivalence.json"
PACKAGE_ROOT = Path(__file__).resolve().parent.parent


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    """``tree`` without the docstrings of its module, classes and functions."""
    kinds = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(node, kinds) and body and isinstance(body[0], ast.Expr) \
                and isinstance(body[0].value, ast.Constant) \
                and isinstance(body[0].value.value, str):
            node.body = body[1:] or [ast.Pass()]
    return tree


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def source_fingerprint(module: str, source: str) -> dict[str, str]:
    """The fingerprint of one module's source: ``"tkd.<module>.<name>"`` -> hash for every
    top-level function and class, and one ``"tkd.<module>.<module-level>"`` entry for all
    other top-level statements (imports, constants)."""
    tree = _strip_docstrings(ast.parse(source))
    entries, rest = {}, []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            entries[f"tkd.{module}.{node.name}"] = _digest(ast.dump(node))
        else:
            rest.append(ast.dump(node))
    entries[f"tkd.{module}.{MODULE_LEVEL}"] = _digest("\n".join(rest))
    return entries


def code_fingerprint(source_root: str | Path | None = None) -> dict[str, str]:
    """Hashes of the code that decides training: every top-level definition of the modules
    :data:`CODE_MODULES` under ``source_root`` (default: this package's project folder), see
    :func:`source_fingerprint`; a module missing there contributes nothing.

    Why per definition, on the syntax tree without docstrings: adding a new function (say a
    new loss) leaves the hashes of the old ones as they were, so old records stay current;
    changing or removing a definition makes the records that used it stale; docstring,
    comment and formatting edits change no hash at all."""
    root = Path(source_root) if source_root is not None else PACKAGE_ROOT
    if source_root is None:
        return dict(_cached_today())
    return _fingerprint_files(root)


def _fingerprint_files(root: Path) -> dict[str, str]:
    entries: dict[str, str] = {}
    for module in CODE_MODULES:
        path = root / "tkd" / f"{module}.py"
        if path.is_file():
            entries.update(source_fingerprint(module, path.read_text()))
    return entries


@lru_cache(maxsize=1)
def _cached_today() -> tuple:
    return tuple(sorted(_fingerprint_files(PACKAGE_ROOT).items()))


def commit_fingerprint(commit: str, repo: str | Path | None = None) -> dict[str, str]:
    """:func:`code_fingerprint` of the files at git ``commit`` (``git show <commit>:tkd/...``)
    of the repository at ``repo`` (default: this package's project folder). A module of
    :data:`CODE_MODULES` that the commit does not have yet contributes nothing; a commit
    without ``tkd/train.py`` is no commit of this package (``ValueError``)."""
    git = ["git", "-C", str(repo or PACKAGE_ROOT)]
    listed = subprocess.run([*git, "ls-tree", "--name-only", f"{commit}:tkd"],
                            capture_output=True, text=True)
    if listed.returncode != 0 or "train.py" not in listed.stdout.split():
        raise ValueError(f"cannot read tkd/train.py at commit {commit}: "
                         f"{listed.stderr.strip() or 'no such file'}")
    entries: dict[str, str] = {}
    for module in (m for m in CODE_MODULES if f"{m}.py" in listed.stdout.split()):
        done = subprocess.run([*git, "show", f"{commit}:tkd/{module}.py"],
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise ValueError(f"cannot read tkd/{module}.py at commit {commit}: "
                             f"{done.stderr.strip()}")
        entries.update(source_fingerprint(module, done.stdout))
    return entries


def fingerprint_digest(fingerprint: dict[str, str]) -> str:
    """One short hash of a whole fingerprint (the key of an equivalence entry)."""
    return _digest(json.dumps(fingerprint, sort_keys=True))


def code_changes(old: dict[str, str], new: dict[str, str]) -> list[str]:
    """The definitions of ``old`` that ``new`` changed or removed (added ones do not count)."""
    return sorted(name for name, digest in old.items() if new.get(name) != digest)


def load_equivalences(results: str | Path | None) -> list[dict]:
    """The entries of ``<results>/code-equivalence.json`` (empty when there is none)."""
    if results is None:
        return []
    path = Path(results) / EQUIVALENCE_FILE
    return json.loads(path.read_text()) if path.is_file() else []


def vouched_codes(old: dict[str, str], entries: list[dict]) -> list[dict[str, str]]:
    """``old`` and every fingerprint a chain of equivalence entries vouches behaves as it.
    An entry applies to code whose definitions its ``from_code`` all keeps (its own code, or
    older code that the entry's code only added to), as a record stays current when
    definitions are only added; ``from`` (the digest) matches the entry's own code."""
    seen: set[str] = set()
    reached: list[dict[str, str]] = []
    frontier = [old]
    while frontier:
        code = frontier.pop()
        digest = fingerprint_digest(code)
        if digest in seen:
            continue
        seen.add(digest)
        reached.append(code)
        frontier += [e["to_code"] for e in entries if "to_code" in e and (
            e.get("from") == digest
            or ("from_code" in e and not code_changes(code, e["from_code"])))]
    return reached


def equivalent_code(old: dict[str, str], new: dict[str, str],
                    entries: list[dict]) -> bool:
    """Whether code fingerprinted ``old`` behaves as ``new``: no definition of ``old`` changed,
    or a chain of equivalence entries leads from ``old`` to a fingerprint whose definitions
    ``new`` all keeps (:func:`vouched_codes`)."""
    return not vouched_changes(old, new, entries)


def vouched_changes(old: dict[str, str], new: dict[str, str],
                    entries: list[dict]) -> list[str]:
    """The definitions ``new`` changed or removed, counted from the fingerprint vouched for
    ``old`` (:func:`vouched_codes`) that is closest to ``new`` (fewest changes): what really
    changed since the last vouched code, not the changes an equivalence entry already
    covers. Empty when ``old`` is equivalent to ``new``."""
    return min((code_changes(code, new) for code in vouched_codes(old, entries)), key=len)
