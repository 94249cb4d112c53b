"""Command line: ``python -m tkd train | reproduce | figures | verify | equivalence |
backfill-code | backfill-fidelity | backfill-weights | fair-plan``.

Every sub-command is registered here, in :func:`build_parser`, and each one's work is a short
``*_command`` function that calls the library (those of the record-maintenance commands in
:mod:`tkd.cli_records`). Every value is checked before any data is
loaded or any model is built, and unknown names get an error that lists the valid ones.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from pathlib import Path

import pandas as pd

from tkd.checkpoint import CheckpointError, load_latest_checkpoint, load_model, save_model
from tkd.cli_records import (
    backfill_command,
    backfill_fidelity_command,
    backfill_weights_command,
    equivalence_command,
    fair_plan_command,
)
from tkd.data import CIFAR, DATASETS, IDX_FILES, load_dataset
from tkd.experiments import (
    EXPERIMENTS,
    MAIN,
    PRESETS,
    Experiment,
    Preset,
    get_preset,
    main_experiments,
    plan,
    student_config,
)
from tkd.figures import build_figures
from tkd.files import BusyError, atomic_write_text, check_writable_folder, run_lock
from tkd.grid import reproduce
from tkd.live import EpochLog, RunClock
from tkd.miners import NEGATIVE_STRATEGIES
from tkd.models import MODELS, build_model
from tkd.objective import METHODS, TERMS, method_config
from tkd.portable import MODES, is_portable, portable_environment, reexec_portable
from tkd.records import load_records, results_root, write_record
from tkd.tables import comparison_table, runs_frame, table_markdown
from tkd.train import TrainConfig, fit, pick_device, seed_everything
from tkd.verify import level_lines, levels, machine_note, reproduced


def _integer(low: int, high: float, wanted: str):
    """An argparse type: an integer in ``[low, high)``; ``wanted`` says so in the error."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if not low <= value < high:
            raise argparse.ArgumentTypeError(f"must be {wanted}, got {value}")
        return value

    return parse


_positive_int = _integer(1, float("inf"), "a positive integer")
_seed = _integer(0, 2**32, "an integer in [0, 2**32)")


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def _positive(text: str) -> float:
    value = _non_negative(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be > 0, got 0")
    return value


def weight_flag(term: str) -> str:
    """The ``tkd train`` option of a term's weight: ``--<term>-weight`` with ``_`` as ``-``
    (``rkd_distance`` -> ``--rkd-distance-weight``); argparse stores it as ``<term>_weight``,
    the :class:`~tkd.objective.ObjectiveConfig` field."""
    return f"--{term.replace('_', '-')}-weight"


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``tkd train``."""
    parser.add_argument("--dataset", default="digits", choices=DATASETS)
    parser.add_argument("--data-root", default=None, help="dataset folder (default $TKD_DATA)")
    parser.add_argument("--model", default="paper-student", choices=list(MODELS))
    parser.add_argument("--teacher", default=None, help="teacher checkpoint (model.pt of a run)")
    parser.add_argument("--method", default="ce", choices=list(METHODS))
    parser.add_argument("--margin", type=_non_negative, default=None)
    parser.add_argument("--temperature", type=_positive, default=None)
    parser.add_argument("--negatives", default=None, choices=NEGATIVE_STRATEGIES)
    for term in TERMS:  # every term's ObjectiveConfig.<term>_weight, e.g. --rkd-distance-weight
        parser.add_argument(weight_flag(term), type=_non_negative, default=None)
    parser.add_argument("--epochs", type=_positive_int, default=10)
    parser.add_argument("--batch-size", type=_positive_int, default=100)
    parser.add_argument("--lr", type=_positive, default=0.01)
    parser.add_argument("--weight-decay", type=_non_negative, default=None,
                        help="default: 0.01 for ce, 0.007 for distillation (the paper's)")
    parser.add_argument("--lr-step", type=_positive_int, default=100)
    parser.add_argument("--validation", type=_positive_int, default=None,
                        help="hold out N training images (stratified, seed 0) as a validation "
                             "split, scored every epoch")
    parser.add_argument("--subset", type=_positive_int, default=None,
                        help="train on the first N training images (balanced over classes)")
    parser.add_argument("--augment", action="store_true", help="random crop + flip on device")
    parser.add_argument("--seed", type=_seed, default=1)
    parser.add_argument("--deterministic", action="store_true")
    parser.add_argument("--device", default=None, help="cuda, mps or cpu (default: best found)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--out", required=True, help="output folder of the run")
    parser.add_argument("--resume", action="store_true", help="continue from --out's checkpoint")
    parser.add_argument("--tensorboard", default=None, metavar="DIR",
                        help="also log each epoch's numbers to TensorBoard in DIR")


def train_command(args: argparse.Namespace) -> int:
    """Run ``tkd train``: validate, load, fit, write model.pt, history.csv and result.json."""
    weights = {f"{t}_weight": getattr(args, f"{t}_weight") for t in TERMS}
    objective = method_config(args.method, margin=args.margin, temperature=args.temperature,
                              negatives=args.negatives, **weights)
    if objective.needs_teacher and not args.teacher:
        raise ValueError(f"--method {args.method} needs --teacher CKPT (a model.pt of a run)")
    if args.teacher and not Path(args.teacher).is_file():
        raise ValueError(f"--teacher {args.teacher}: no such file")
    pick_device(args.device)  # an unknown or absent device fails here, before any work
    weight_decay = args.weight_decay if args.weight_decay is not None else student_config(
        PRESETS["paper"], Experiment(args.method, args.method, args.method), args.seed
    ).weight_decay  # the paper's recipe, by the rule every preset's runs use
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a folder")
    check_data_root(args.dataset, args.data_root)
    check_writable_folder(out, create=False)  # a read-only location fails now, not later
    with run_lock(out):  # BusyError: another `tkd train` writes into this --out
        return _train(args, objective, weight_decay, out)


def _train(args: argparse.Namespace, objective, weight_decay: float, out: Path) -> int:
    """The body of :func:`train_command`, holding ``--out``'s lock."""
    config = TrainConfig(
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, weight_decay=weight_decay,
        lr_step=args.lr_step, augment=args.augment, seed=args.seed,
        deterministic=args.deterministic, device=args.device, compile=args.compile,
        progress=not args.no_progress, checkpoint_dir=str(out / "checkpoints"),
        resume=args.resume, tensorboard=args.tensorboard,
    )
    if not args.resume and any((out / "checkpoints").glob("epoch-*.pt")):
        raise ValueError(f"{out} already holds checkpoints: add --resume, or choose a new --out")
    latest = load_latest_checkpoint(out / "checkpoints") if args.resume else None
    if latest is not None and latest["epoch"] > args.epochs:
        raise ValueError(f"--epochs {args.epochs} is fewer than the {latest['epoch']} epochs "
                         f"{out} already ran: pass --epochs {latest['epoch']} or more to resume "
                         "it, or choose a new --out")
    data = load_dataset(args.dataset, args.data_root)
    if args.validation:
        data = data.with_validation(args.validation, seed=0)
    if args.subset:
        data.train = data.train.subset(args.subset, seed=args.seed)
    teacher = _load_teacher(args, data)
    seed_everything(args.seed)  # the same command builds the same initial weights
    model = build_model(args.model, data.num_classes, data.in_channels, data.image_size)
    # the live history.csv restarts from the checkpoint's history (a damaged csv is rebuilt)
    previous = pd.DataFrame(latest["history"]).to_dict("records") if latest else ()
    clock = RunClock(out)  # the wall time of earlier sessions of a resumed run counts too

    def on_epoch(row: dict) -> None:
        live(row)
        clock(row)
    with EpochLog(out, previous=previous) as live:  # history.csv rewritten after every epoch
        history = fit(model, data, config, objective, teacher, on_epoch=on_epoch)
    wall = clock.total(len(history))
    save_model(out / "model.pt", model, args.model, data.num_classes, data.in_channels,
               data.image_size, dataset=args.dataset, method=args.method)
    atomic_write_text(out / "history.csv", history.to_csv(index=False))
    run_config = {"dataset": args.dataset, "model": args.model, "teacher": args.teacher,
                  "method": args.method, "subset": args.subset, "validation": args.validation,
                  "train": asdict(config), "objective": objective.to_dict()}
    write_record(out / "result.json", run_config, history, pick_device(args.device), wall, data,
                 args.teacher)
    if len(history):
        last = history.iloc[-1]
        print(f"epoch {int(last.epoch)}: train acc {last.train_acc:.4f}, "
              f"test acc {last.test_acc:.4f}; wrote {out}")
    return 130 if history.attrs.get("interrupted") else 0


def _load_teacher(args: argparse.Namespace, data):
    """The ``--teacher`` model, refused when its classes, channels or size do not fit."""
    if not args.teacher:
        return None
    teacher = load_model(args.teacher)
    info = teacher.tkd_info
    wanted = {"num_classes": data.num_classes, "in_channels": data.in_channels,
              "image_size": data.image_size}
    wrong = {k: (info[k], v) for k, v in wanted.items() if info[k] != v}
    if wrong:
        detail = ", ".join(f"{k} {a} (dataset needs {b})" for k, (a, b) in wrong.items())
        raise ValueError(f"--teacher {args.teacher} does not fit {args.dataset}: {detail}")
    return teacher


EXECUTORS = ("local", "slurm", "submitit-local")


def add_reproduce_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``tkd reproduce``: what to run, where, and on which executor."""
    parser.add_argument("--preset", default="quick", choices=list(PRESETS))
    chosen = parser.add_mutually_exclusive_group()
    chosen.add_argument("--experiments", nargs="+", default=None, choices=list(EXPERIMENTS),
                        help="only these experiments (default: all of the preset)")
    chosen.add_argument("--main-only", action="store_true",
                        help="only the main comparison (tkd.experiments.MAIN), no sweeps")
    parser.add_argument("--seeds", nargs="+", type=_seed, default=None)
    parser.add_argument("--threads", type=_positive_int, default=None, help="torch CPU threads")
    parser.add_argument("--jobs", type=_positive_int, default=1,
                        help="runs trained side by side on this machine (default 1)")
    parser.add_argument("--cpu-mode", choices=MODES, default=None,
                        help="portable: cap ATen and oneDNN at AVX2, MKL at its COMPATIBLE "
                             "branch, with fixed threads, so "
                             "that any x86-64 CPU model trains the same bits (the command "
                             "restarts itself with the caps set); native: the fastest kernels "
                             "this CPU has. Default: portable for --preset quick, else native; "
                             "--cpu-mode native turns it off. Cluster jobs start with the caps "
                             "set; runs on a GPU ignore them")
    parser.add_argument("--device", default=None)
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--results", default=None, help="results root (default $TKD_RESULTS "
                        "or ./results)")
    parser.add_argument("--figures", default=None, help="figures root (default $TKD_FIGURES "
                        "or ./figures)")
    parser.add_argument("--no-figures", action="store_true")
    parser.add_argument("--tensorboard", default=None, metavar="DIR",
                        help="also log every run's epochs to TensorBoard under DIR")
    cluster = parser.add_argument_group("cluster (through submitit: pip install 'tkd[cluster]')")
    cluster.add_argument("--executor", default="local", choices=EXECUTORS,
                         help="local: this process; slurm: one teacher job, then one job array "
                              "of the runs; submitit-local: the same with local processes")
    cluster.add_argument("--partition", default=None, help="slurm partition")
    cluster.add_argument("--time-min", type=_positive_int, default=None,
                         help="time limit per run in minutes (default 60)")
    cluster.add_argument("--gpus-per-run", type=_integer(0, float("inf"), "an integer >= 0"),
                         default=None, help="GPUs per run (default 0)")
    cluster.add_argument("--cluster-folder", default=None,
                         help="submitit's logs (default <results>/<preset>/_submitit)")


def reproduce_command(args: argparse.Namespace) -> int:
    """Run ``tkd reproduce``: every planned run (teacher first) here or on a cluster, then
    rebuild the figures (unless ``--no-figures`` or the runs were only submitted). The preset
    is resolved here, once, and passed down."""
    preset = get_preset(args.preset)
    experiments = main_experiments(preset) if args.main_only else args.experiments
    check_data_root(preset.dataset, args.data_root)
    given = [f"--{k.replace('_', '-')}" for k in CLUSTER_OPTIONS if getattr(args, k) is not None]
    if args.executor == "local" and given:
        raise ValueError(f"{', '.join(given)} only apply to a cluster: add --executor slurm "
                         "(or submitit-local), or leave them out")
    args.device = args.device or preset.device  # the preset's kind of device
    for key, default in CLUSTER_OPTIONS.items():
        setattr(args, key, default if getattr(args, key) is None else getattr(args, key))
    failed = []
    if args.executor != "local":
        if not _submit(args, preset, experiments):
            return 0  # submitted to slurm: the records land later
    else:
        threads = _apply_cpu_mode(args, preset)
        failed = reproduce(preset=preset, experiments=experiments, seeds=args.seeds,
                           root=args.results, device=args.device, data_root=args.data_root,
                           threads=threads, jobs=args.jobs, tensorboard=args.tensorboard)
        failed = getattr(failed, "failed", [])
    if not args.no_figures:
        for path in build_figures(preset, args.results, args.figures):
            print(f"wrote {path}")
    if failed:
        print(f"error: {len(failed)} run(s) FAILED (see above); fix the cause and run the same "
              "command again: finished runs are kept", file=sys.stderr)
        return 1
    return 0


CLUSTER_OPTIONS = {"partition": None, "time_min": 60, "gpus_per_run": 0, "cluster_folder": None}
"""The cluster options of ``tkd reproduce`` and their defaults (refused with the local
executor, where they would do nothing)."""


def check_data_root(dataset: str, data_root: str | None) -> None:
    """Refuse a ``--data-root`` that points at the folder holding a dataset's files instead of
    the folder above it: the files there would be passed by and another copy (the system's)
    silently used."""
    if data_root is None or dataset == "digits":
        return
    root = Path(data_root).expanduser()
    if dataset in CIFAR:
        folder, archive, train_files = CIFAR[dataset][:3]
        inside = (root / train_files[0]).is_file()
        wanted = f"{folder}/ or {archive}"
    else:
        folder = dataset
        inside = any((root / (stem + ext)).is_file() for pair in IDX_FILES.values()
                     for stem in pair for ext in ("", ".gz"))
        wanted = f"{folder}/"
    if inside and not (root / folder).exists():
        raise ValueError(f"--data-root {data_root} holds the {dataset} files themselves; it must "
                         f"be the folder that holds {wanted}: pass --data-root "
                         f"{root.parent if root.name == folder else root} with the files in "
                         f"{folder}/ below it")


def _cpu_mode(args: argparse.Namespace) -> str:
    """The CPU mode of ``tkd reproduce``: ``--cpu-mode``, else portable for the quick preset."""
    return args.cpu_mode or ("portable" if args.preset == "quick" else "native")


def _portable_threads(args: argparse.Namespace, preset: Preset) -> int:
    """The threads per run that the portable mode fixes: ``--threads``, else the preset's."""
    return args.threads or preset.threads or 1


def _apply_cpu_mode(args: argparse.Namespace, preset: Preset) -> int | None:
    """The threads per run of a local reproduction; in the portable CPU mode
    (:mod:`tkd.portable`) on the CPU, first restart this command with its caps unless they are
    set. A call from Python (not the shell) cannot restart: it gets a ``ValueError`` saying
    what to do instead."""
    on_cpu = args.device == "cpu" or (args.device is None and pick_device().type == "cpu")
    if _cpu_mode(args) != "portable" or not on_cpu:
        return args.threads
    threads = _portable_threads(args, preset)
    if not is_portable():
        if args.entry_argv is None:
            raise ValueError("--cpu-mode portable sets CPU caps that torch reads when it "
                             "starts: run `python -m tkd reproduce ...` from a shell (it "
                             "restarts itself with them), set the variables of "
                             "tkd.portable.portable_environment() before Python starts, or "
                             "pass --cpu-mode native")
        print(f"portable CPU mode: restarting with ATen and oneDNN capped at AVX2 and MKL on its "
              f"COMPATIBLE branch, {threads} thread(s) per run (--cpu-mode native turns it off)")
        reexec_portable(args.entry_argv, threads)
    return threads


def _submit(args: argparse.Namespace, preset: Preset, experiments: list[str] | None) -> bool:
    """Submit the plan through :func:`tkd.cluster.submit_grid`; with submitit's local executor
    wait for every run. Returns whether the runs are finished."""
    from tkd.cluster import submit_grid, wait

    folder = args.cluster_folder or results_root(args.results) / preset.name / "_submitit"
    environment = (portable_environment(_portable_threads(args, preset))  # in each job's shell
                   if _cpu_mode(args) == "portable" else None)
    submitted = submit_grid(preset, plan(preset, experiments, args.seeds),
                            executor=args.executor, folder=folder, partition=args.partition,
                            time_min=args.time_min, gpus_per_run=args.gpus_per_run,
                            root=args.results, device=args.device, data_root=args.data_root,
                            environment=environment)
    if args.executor == "slurm":
        return False
    wait(submitted)
    return True


def figures_command(args: argparse.Namespace) -> int:
    """Run ``tkd figures``: rebuild the tables and figures from the results files."""
    for path in build_figures(get_preset(args.preset), args.results, args.out):
        print(f"wrote {path}")
    return 0


def verify_command(args: argparse.Namespace) -> int:
    """Run ``tkd verify``: the fresh runs' table, then the three levels of
    :mod:`tkd.verify` (identical, within noise, same conclusions), one line each, and a last
    line; exit code 0 when the results came out again (levels 2 and 3), else 1. Each records
    folder is read once."""
    preset = get_preset(args.preset)
    committed = results_root(args.committed)
    if Path(args.fresh).resolve() == committed.resolve():
        raise ValueError(f"--fresh {args.fresh} is the committed results folder itself: verify "
                         "compares fresh runs with the committed records; pass the folder "
                         "`tkd reproduce --results DIR` wrote")
    fresh_records = load_records(preset, args.fresh)
    fresh = runs_frame(fresh_records, check=False)
    if not len(fresh):
        raise FileNotFoundError(f"no runs of preset {args.preset!r} under {args.fresh}")
    committed_records = load_records(preset, committed)
    if not committed_records:
        raise FileNotFoundError(f"no committed records of preset {args.preset!r} under "
                                f"{committed}: run verify from the project folder, or pass "
                                "--committed <the project's results folder>")
    print(f"fresh runs in {args.fresh}, checked against the committed records in {committed}:")
    print(table_markdown(comparison_table(fresh, ["teacher", *MAIN, *EXPERIMENTS])))
    result = levels(fresh_records, committed_records, args.seeds)
    print(result["identical"].to_string(index=False, float_format=lambda x: f"{x:.2f}"))
    if not result["identical"].match.all():
        note = machine_note(fresh_records, committed_records)
        if note:
            print(f"note: {note}.")
    print("\n".join(level_lines(result)))
    return 0 if reproduced(result) else 1


def _add_results(parser) -> None:
    """The ``--results`` option of a command that reads or writes a results root."""
    parser.add_argument("--results", default=None, help="results root (default $TKD_RESULTS "
                        "or ./results)")


def _add_migration_commands(commands) -> None:
    same = commands.add_parser("equivalence", help="show that an old commit's code trains "
                               "bit for bit as today's; then its records stay current")
    same.add_argument("commit", help="the old git commit")
    same.add_argument("--new", default=None, help="compare with this commit's code instead of "
                      "the working tree's")
    same.add_argument("--results", default=None, help="results root holding "
                      "code-equivalence.json (default $TKD_RESULTS or ./results)")
    same.add_argument("--epochs", type=_integer(1, 100, "1 to 99"), default=2)
    same.set_defaults(run=equivalence_command)
    backfill = commands.add_parser("backfill-code", help="add code fingerprints to records "
                                   "from the clean commit each names (idempotent)")
    _add_results(backfill)
    backfill.set_defaults(run=backfill_command)
    fidelity = commands.add_parser("backfill-fidelity", help="add the fidelity to the teacher "
                                   "to records made before it was scored, from their saved "
                                   "students (idempotent)")
    fidelity.add_argument("--preset", default="fashion", choices=list(PRESETS))
    _add_results(fidelity)
    fidelity.set_defaults(run=backfill_fidelity_command)
    fair = commands.add_parser("fair-plan", help="the runs a stage of the fair comparison's "
                               "grid (tools/fair_grid.sh) still needs")
    fair.add_argument("stage", type=int, choices=[2, 3, 4])
    fair.add_argument("--preset", default="fashion", choices=list(PRESETS))
    _add_results(fair)
    fair.set_defaults(run=fair_plan_command)
    weights = commands.add_parser("backfill-weights", help="add the sha256 of each saved "
                                  "student's weights to its record (idempotent)")
    _add_results(weights)
    weights.set_defaults(run=backfill_weights_command)


def build_parser() -> argparse.ArgumentParser:
    """The ``tkd`` argument parser with every sub-command."""
    parser = argparse.ArgumentParser(
        prog="python -m tkd",
        description="Triplet loss for knowledge distillation (Oki et al., 2020).")
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="train a teacher or a distilled student")
    add_train_arguments(train)
    train.set_defaults(run=train_command)
    again = commands.add_parser("reproduce", help="run a preset's experiments (teacher first)")
    add_reproduce_arguments(again)
    again.set_defaults(run=reproduce_command)
    figures = commands.add_parser("figures", help="rebuild tables and figures from results/")
    figures.add_argument("--preset", default="quick", choices=list(PRESETS))
    figures.add_argument("--results", default=None, help="results root (default $TKD_RESULTS "
                         "or ./results)")
    figures.add_argument("--figures", "--out", dest="out", default=None,
                         help="figures root (default $TKD_FIGURES or ./figures)")
    figures.set_defaults(run=figures_command)
    check = commands.add_parser("verify", help="compare fresh runs with the committed records")
    check.add_argument("--preset", default="quick", choices=list(PRESETS))
    check.add_argument("--fresh", required=True, help="results root of the fresh runs")
    check.add_argument("--committed", default=None, help="results root of the committed "
                       "records (default $TKD_RESULTS or ./results)")
    check.add_argument("--seeds", type=int, nargs="+", default=None, help="check only the "
                       "runs of these seeds (a part, e.g. after a one-seed rerun); default: "
                       "every committed seed")
    check.set_defaults(run=verify_command)
    _add_migration_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m tkd`` and the ``tkd`` script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.entry_argv = sys.argv[1:] if argv is None else None  # a shell command can restart
    try:
        return args.run(args)
    except KeyboardInterrupt:
        print("interrupted: nothing half-done was kept as done; run the same command again to "
              "resume from the last finished epoch", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, ModuleNotFoundError, CheckpointError,
            BusyError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # a location that cannot be written, a full disk
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
