"""Which seeds of each primary claim's sides were trained after the claims were declared, and
what the paper's claims read over the seeds no choice and no earlier look touched.

    python tools/declaration_timeline.py          # a markdown table, from git and the records
    python tools/declaration_timeline.py --write  # ...as figures/timeline.md, which
                                                  # tools/fill_readme.py shows in docs/claims.md

The declaration is the commit that added ``docs/claims.md``. A record is *after* when the code
that trained it (``provenance.commit``) descends from that commit, *before* when the record
file was committed to git before it, else *unknown*. Only the runs after it are new evidence
for a claim; the others were seen before the claims were written down.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tkd.experiments import get_preset  # noqa: E402
from tkd.fair import (  # noqa: E402
    SEEDS,
    accuracy_by_seed,
    logit_regression,
    primary_claims,
    primary_pairs,
    with_failures,
)
from tkd.files import atomic_write_text  # noqa: E402
from tkd.records import load_failures, load_records  # noqa: E402
from tkd.stats import paired_difference  # noqa: E402
from tkd.tables import runs_frame  # noqa: E402


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()


def is_ancestor(old: str, new: str) -> bool:
    return subprocess.run(["git", "merge-base", "--is-ancestor", old, new], cwd=ROOT,
                          capture_output=True).returncode == 0


def when(path: Path, declaration: str) -> str:
    """"after", "before" or "unknown" (the module docstring says how)."""
    commit = json.loads(path.read_text())["provenance"].get("commit") or ""
    if commit and is_ancestor(declaration, commit):
        return "after"
    added = git("log", "--diff-filter=A", "--format=%H", "--", str(path.relative_to(ROOT)))
    added = added.splitlines()[-1] if added else ""
    if added and added != declaration and is_ancestor(added, declaration):
        return "before"
    return "unknown"


def timeline() -> str:
    """The table of every claim's sides, seed by seed, and the paper's claims over seeds 2-5."""
    declaration = git("log", "--diff-filter=A", "--format=%H", "--", "docs/claims.md")
    declaration = declaration.splitlines()[-1]
    preset = get_preset("fashion")
    records = [r for r in load_records(preset) if r["config"]["experiment"] != "teacher"]
    runs = with_failures(runs_frame(records, check=False), load_failures(preset))
    folder = ROOT / "results" / "fashion"
    lines = [f"Declared at commit {declaration[:7]}.", "",
             "| claim | side | seeds after the declaration | before | unknown |",
             "|---|---|---|---|---|"]
    for claim, a, b in primary_pairs(runs, logit_regression(runs)):
        for side in (a, b):
            if not side:
                lines.append(f"| {claim} | not chosen yet | – | – | – |")
                continue
            kinds: dict[str, list[str]] = {"after": [], "before": [], "unknown": []}
            for path in sorted((folder / side).glob("[0-9]*.json")):
                if not path.name.endswith(".failed.json"):
                    kinds[when(path, declaration)].append(path.stem)
            cells = [", ".join(kinds[k]) or "–" for k in ("after", "before", "unknown")]
            lines.append(f"| {claim} | `{side}` | " + " | ".join(cells) + " |")
    lines += ["", "The paper's claims over seeds 2-5 (after the declaration for P1; without the "
              "seed that chose Ba & Caruana's rate for P2, P3), unadjusted 95 %:", ""]
    for claim, a, b in primary_pairs(runs, logit_regression(runs))[:3]:
        later = [accuracy_by_seed(runs, name) for name in (a, b)]
        d = paired_difference(*(acc[acc.index >= 2] for acc in later))
        lines.append(f"- {claim} `{a}` - `{b}`: {d['mean']:+.2f} [{d['low']:+.2f}, "
                     f"{d['high']:+.2f}], p = {d['p']:.3f}, {d['n']} seeds")
    return "\n".join(lines + first_declared_seeds(runs)) + "\n"


def first_declared_seeds(runs) -> list[str]:
    """The claims read as first declared, P4 and P5 over seeds 1-5 (the run that chose each
    side included) instead of the amended 2-6, with Holm's procedure over all five again."""
    claims = primary_claims(runs, logit_regression(runs), tuned_seeds=SEEDS)
    lines = ["", "Every claim over seeds 1-5, as first declared (P4 and P5 were amended to "
             "seeds 2-6 before their 5-seed runs), Holm over the five again:", ""]
    for c in claims.itertuples():
        verdict = "decided" if c.decided else "not decided"
        p_value = "< 0.0001" if c.p < 1e-4 else f"= {c.p:.4f}"
        lines.append(f"- {c.claim} `{c.a}` - `{c.b}`: {c.mean:+.2f}, p {p_value} against "
                     f"its level {c.level:.4f}: {verdict}, {c.n} seeds")
    return lines


def main() -> None:
    text = timeline()
    if "--write" in sys.argv[1:]:
        atomic_write_text(ROOT / "figures" / "timeline.md", text)
    else:
        print(text, end="")


if __name__ == "__main__":
    main()
