"""Live training logs, refreshed after every epoch: ``history.csv``, TensorBoard scalars, and
the run's wall time so far (``seconds.json``, which survives a resume).

``history.csv`` is rewritten atomically, so a reader (pandas, a spreadsheet, ``tail``) never
sees half a file even while training writes it. TensorBoard is optional
(``pip install 'tkd[tensorboard]'``); watch a run with ``tensorboard --logdir DIR``.
"""

from __future__ import annotations

import json
import math
import numbers
import time
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from tkd.files import atomic_write_csv, atomic_write_json

HISTORY_FILE = "history.csv"
MISSING_TENSORBOARD = ("TensorBoard logging needs the tensorboard package: "
                       "pip install 'tkd[tensorboard]' (or pip install tensorboard)")
SPLITS = ("train", "val", "test")
SPEED_KEYS = ("images_per_second", "epoch_seconds")


def summary_writer_class():
    """``torch.utils.tensorboard.SummaryWriter``; ImportError saying what to install if absent."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as error:
        raise ImportError(MISSING_TENSORBOARD) from error
    return SummaryWriter


def scalar_tag(key: str) -> str:
    """The TensorBoard tag for a history column, grouping related curves on one panel.

    ``train_acc`` -> ``acc/train``; ``val_triplet`` -> ``loss/val_triplet``;
    ``images_per_second`` -> ``speed/images_per_second``; ``lr`` and others stay as they are.
    """
    split, _, term = key.partition("_")
    if split in SPLITS and term:
        return f"acc/{split}" if term == "acc" else f"loss/{key}"
    if key in SPEED_KEYS:
        return f"speed/{key}"
    return key


def numeric_items(row: dict) -> dict[str, float]:
    """The entries of ``row`` that are real numbers (bools and text left out), as floats."""
    return {k: float(v) for k, v in row.items()
            if isinstance(v, numbers.Real) and not isinstance(v, bool)}


class EpochLog:
    """Per-epoch logger: ``log(row)`` after each epoch, ``log.close()`` at the end.

    folder: where ``history.csv`` (one row per epoch so far) is rewritten atomically after each
    call; ``None`` writes no CSV. tensorboard: a TensorBoard log folder; each numeric key of the
    row becomes a scalar at step ``row["epoch"]`` (tags from :func:`scalar_tag`), written to
    ``tensorboard/run_name`` when ``run_name`` is given. previous: rows of epochs already run
    (when resuming), kept at the top of ``history.csv`` but not sent to TensorBoard again.
    Raises ``ImportError`` at once if ``tensorboard`` is set but the package is missing.
    """

    def __init__(self, folder: str | Path | None, tensorboard: str | Path | None = None,
                 run_name: str | None = None, *, previous: Iterable[dict] = ()):
        self.path = None if folder is None else Path(folder) / HISTORY_FILE
        self.rows: list[dict] = [dict(r) for r in previous]
        self.writer = None
        if tensorboard is not None:
            logdir = Path(tensorboard) / run_name if run_name else Path(tensorboard)
            self.writer = summary_writer_class()(log_dir=str(logdir))

    def __call__(self, row: dict) -> None:
        """Record one finished epoch: rewrite ``history.csv`` and add its TensorBoard scalars."""
        self.rows.append(dict(row))
        if self.path is not None:
            atomic_write_csv(pd.DataFrame(self.rows), self.path)
        if self.writer is not None:
            self._write_scalars(row)

    def _write_scalars(self, row: dict) -> None:
        values = numeric_items(row)
        epoch = values.pop("epoch", len(self.rows))
        step = int(epoch) if math.isfinite(epoch) else len(self.rows)
        for key, value in values.items():
            self.writer.add_scalar(scalar_tag(key), value, global_step=step)
        self.writer.flush()

    def close(self) -> None:
        """Flush and close the TensorBoard writer (safe to call twice)."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def __enter__(self) -> EpochLog:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


class RunClock:
    """Wall seconds of a run over all its sessions. ``<seed>.run/seconds.json`` keeps, for each
    finished epoch, the seconds spent up to its end; a resumed session adds its own to those of
    the epoch it resumed from (time spent on an epoch that was cut off is not counted).
    Call it with each epoch's history row; :meth:`total` after the last."""

    def __init__(self, work: Path):
        self.path = work / "seconds.json"
        try:
            self.saved = [float(s) for s in json.loads(self.path.read_text())["seconds"]]
        except (OSError, ValueError, KeyError, TypeError):
            self.saved = []  # a first session, or a file that cannot be read: count from 0
        self.start = time.perf_counter()
        self.epochs_run = 0

    def _before(self, resumed_epochs: int) -> float:
        if resumed_epochs <= 0 or not self.saved:
            return 0.0
        return self.saved[min(resumed_epochs, len(self.saved)) - 1]  # at least what was kept

    def __call__(self, row: dict) -> None:
        epoch = int(row["epoch"])
        before = self._before(epoch - 1 - self.epochs_run)
        self.epochs_run += 1
        self.saved = self.saved[:epoch - 1] + [before + time.perf_counter() - self.start]
        atomic_write_json(self.path, {"seconds": self.saved})

    def total(self, epochs: int) -> float:
        """Seconds of a run whose history has ``epochs`` rows, this session's included."""
        return self._before(epochs - self.epochs_run) + time.perf_counter() - self.start
