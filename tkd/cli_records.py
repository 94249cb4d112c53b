"""The work of the record-maintenance sub-commands: ``python -m tkd equivalence |
backfill-code | backfill-fidelity | backfill-weights | fair-plan``.

They train or score nothing new for the paper's tables: they vouch for code changes
(:mod:`tkd.equivalence`), add what older records lack (code fingerprints, fidelity, weight
hashes) or plan the fair grid's remaining runs from the records. They are registered with the
other sub-commands in :func:`tkd.cli.build_parser`; each ``*_command`` here takes its parsed
arguments and returns the exit code.
"""

from __future__ import annotations

import argparse
import sys

from tkd.experiments import get_preset
from tkd.records import load_records, results_root
from tkd.tables import runs_frame


def equivalence_command(args: argparse.Namespace) -> int:
    """Run ``tkd equivalence``: train with an old commit's code and today's, record the
    equivalence if identical; exit code 0 if identical, else 1."""
    from tkd.equivalence import check_equivalence

    differences = check_equivalence(args.commit, results_root(args.results), args.epochs,
                                    new=args.new)
    return 1 if differences else 0


def backfill_command(args: argparse.Namespace) -> int:
    """Run ``tkd backfill-code``: add code fingerprints to records from their commits."""
    from tkd.equivalence import backfill_code

    backfill_code(results_root(args.results))
    return 0


def fair_plan_command(args: argparse.Namespace) -> int:
    """Run ``tkd fair-plan``: the runs a stage of ``tools/fair_grid.sh`` still needs, one line
    per seed set: ``"<seeds> <experiments...>"`` (nothing when the stage is complete)."""
    from tkd.fair import pending, pending_reruns, with_failures
    from tkd.records import load_failures

    preset = get_preset(args.preset)
    records = load_records(preset, args.results)
    if not records:
        print(f"error: no records of the preset {preset.name} under "
              f"{args.results or 'results'}: the choices start from its main comparison; train "
              f"it first (python -m tkd reproduce --preset {preset.name} --main-only)",
              file=sys.stderr)
        return 2
    runs = with_failures(runs_frame(records, args.results, check=False),
                         load_failures(preset, args.results))
    if args.stage == 4:
        moved = runs_frame(load_records(get_preset(f"{preset.name}-h200"), args.results),
                           check=False)
        todo = pending_reruns(runs, moved) if len(moved) else []
    else:
        todo = pending(runs, args.stage)
    groups: dict[tuple[int, ...], list[str]] = {}
    for name, seeds in todo:
        groups.setdefault(seeds, []).append(name)
    for seeds, names in groups.items():
        print(f"{' '.join(map(str, seeds))} {' '.join(names)}")
    return 0


def backfill_fidelity_command(args: argparse.Namespace) -> int:
    """Run ``tkd backfill-fidelity``: fidelity to the teacher from the saved students."""
    from tkd.fair import backfill_fidelity

    backfill_fidelity(get_preset(args.preset), args.results)
    return 0


def backfill_weights_command(args: argparse.Namespace) -> int:
    """Run ``tkd backfill-weights``: name each saved student's weights in its record."""
    from tkd.records import backfill_weights

    backfill_weights(args.results)
    return 0
