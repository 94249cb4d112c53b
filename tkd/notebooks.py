"""What the notebooks share: their setup, which preset a notebook runs, the banner that says
so, and the solution notebooks.

**Setup.** Every notebook's first code cell is ``notebooks/setup_cell.py``, word for word
(``python notebooks/execute.py --sync-setup`` copies it). It is a few lines: if the kernel
cannot import tkd it pip-installs it (``$TKD_SOURCE``, else ``git+$TKD_REPO``), then calls
:func:`setup`, which clones the repository for its committed records when none are in reach
(Colab) and works in the clone's ``notebooks/`` folder. In a checkout it prints nothing.

**Solutions.** A notebook's exercise cells show the question and a hint only. The solutions
live in ``notebooks/solutions/NN_solutions.ipynb``: after the setup and parameters cells,
``run_notebook("NN_name.ipynb")`` runs the lesson notebook's code in the solutions kernel
(its outputs hidden, :func:`run_notebook`), so each solution cell can use the lesson's
variables; each solution ends with a printed sentence that answers its question.
``notebooks/execute.py`` and the tests execute the solution notebooks like the others.

Every notebook has one cell tagged ``parameters`` holding ``PRESET = "auto"`` (papermill may
inject another value after it) and resolves it with :func:`choose_preset`:

    preset = ex.get_preset(choose_preset(PRESET))

"auto" means the real data when this machine has it: ``fashion`` when Fashion-MNIST can be
had (Debian's package, ``$TKD_DATA``, an earlier download, or torchvision's download where the
machine looks online, as on Colab), else ``quick``, the bundled 8x8 digits. The environment
variable ``TKD_PRESET`` overrides "auto" (CI runs every notebook under both presets with it).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from tkd import data as tkd_data
from tkd.data import IDX_FILES, DatasetNotFoundError, load_dataset
from tkd.files import open_stream_log

if TYPE_CHECKING:
    from tkd.experiments import Preset

AUTO = "auto"
QUICK_TEST_IMAGES = 359  # the digits' test split (tkd.data.load_dataset("digits"))
SMALL_TRAIN_SET = 10_000  # at most this many training images: a student trains in seconds
QUICK_NOTE = (f"the 8x8 digits ({QUICK_TEST_IMAGES} test images, one image = "
              f"{100 / QUICK_TEST_IMAGES:.2f} points): a fallback that runs anywhere; its "
              "numbers differ from the Fashion-MNIST verdict — see the boxes")


DEFAULT_REPO = "https://github.com/tkd-project/tkd"


def records_in_reach() -> bool:
    """True when ``$TKD_RESULTS`` is set or a ``results/`` folder is at or above the working
    folder."""
    here = Path.cwd()
    return bool(os.environ.get("TKD_RESULTS")) or any(
        (folder / "results").is_dir() for folder in (here, *here.parents))


def clone_home() -> Path:
    """Where :func:`setup` clones the repository: ``$TKD_HOME``, else ``/content/tkd`` on
    Colab, else ``~/tkd``."""
    default = "/content/tkd" if "google.colab" in sys.modules else Path.home() / "tkd"
    return Path(os.environ.get("TKD_HOME") or default).expanduser()


def setup(repo: str | None = None, installed_from: str | None = None) -> list[str]:
    """The notebooks' setup after tkd is importable (the setup cell installs it first). Where
    no records are in reach (:func:`records_in_reach`), shallow-clones ``repo`` (default
    ``$TKD_REPO``, else :data:`DEFAULT_REPO`) into :func:`clone_home` unless it is there and
    works in its ``notebooks/`` folder; on Colab it turns on the widget manager. Prints one
    line "setup: ..." naming what was done (nothing in a checkout); returns those parts."""
    repo = repo or os.environ.get("TKD_REPO") or DEFAULT_REPO
    done = []
    if not records_in_reach():
        home = clone_home()
        if not (home / "notebooks").is_dir():
            cloned = subprocess.run(["git", "clone", "-q", "--depth", "1", repo, str(home)])
            if cloned.returncode != 0:
                raise SystemExit(
                    f"Could not clone {repo} for the committed records. Set TKD_REPO (or REPO "
                    "in the setup cell) to the project's repository, or open the notebook from "
                    "an uploaded copy of the repository (its results/ folder beside it).")
        os.chdir(home / "notebooks")
        done.append(f"working in {home / 'notebooks'} (a clone of {repo})")
    if installed_from:
        done.append(f"installed tkd from {installed_from}")
    if "google.colab" in sys.modules:  # lets ipywidgets draw in Colab
        from google.colab import output

        output.enable_custom_widget_manager()
    if done:
        print("setup: " + "; ".join(done))
    return done


def notebook_path(name: str) -> Path:
    """The lesson notebook ``name`` (``"00_quickstart.ipynb"``): looked for in the working
    folder, its parent, the project's ``notebooks/`` (:func:`tkd.records.project_root`)
    and the ``notebooks/`` beside an editable install of tkd. ``FileNotFoundError`` if none."""
    from tkd.records import project_root

    here = Path.cwd()
    for folder in (here, here.parent, project_root() / "notebooks",
                   Path(__file__).resolve().parents[1] / "notebooks"):
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"{name} is neither in {here}, its parent nor a notebooks/ folder")


def run_notebook(name: str, skip_setup: bool = True, **parameters) -> Path:
    """Run the code cells of the lesson notebook ``name`` in this kernel, in order, their
    outputs (prints, tables, figures) hidden, so that the cells after this call can use its
    variables: how a solution notebook starts. Skips the notebook's first code cell (the setup
    cell, already run here) when ``skip_setup``; right after its cell tagged ``parameters``,
    ``parameters`` (``PRESET="fashion"``) replace the values that cell set. Raises
    ``RuntimeError`` naming the cell that failed. Returns the notebook's path."""
    import nbformat
    from IPython import get_ipython
    from IPython.utils.capture import capture_output

    shell = get_ipython()
    if shell is None:
        raise RuntimeError("run_notebook runs a notebook's cells in an IPython kernel")
    path = notebook_path(name)
    code = [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
    for index, cell in enumerate(code[1:] if skip_setup else code, start=int(skip_setup)):
        with capture_output(display=True):
            result = shell.run_cell(cell.source, store_history=False)
        if not result.success:
            raise RuntimeError(f"{path.name}: code cell {index} failed: "
                               f"{result.error_in_exec or result.error_before_exec!r}")
        if "parameters" in cell.metadata.get("tags", []):
            shell.user_ns.update(parameters)
    import matplotlib.pyplot as plt

    plt.close("all")
    return path


def fashion_folders() -> list[Path]:
    """Where tkd.data's loader looks for Fashion-MNIST, in its order: ``$TKD_DATA`` (or
    ``~/.cache/tkd/data``)``/fashion-mnist``, torchvision's ``FashionMNIST/raw`` below it,
    Debian's package folder."""
    folder = tkd_data.default_root() / "fashion-mnist"
    return [folder, folder / "FashionMNIST" / "raw", tkd_data.DEBIAN_FASHION_MNIST]


def find_fashion() -> Path | None:
    """The first of :func:`fashion_folders` holding the four IDX files (gzipped or not; none is
    read), or None."""
    stems = [stem for pair in IDX_FILES.values() for stem in pair]
    for folder in fashion_folders():
        if all((folder / f"{s}.gz").is_file() or (folder / s).is_file() for s in stems):
            return folder
    return None


def looks_online() -> bool:
    """True where a download is worth trying without asking: on Colab."""
    try:
        return importlib.util.find_spec("google.colab") is not None
    except ModuleNotFoundError:  # no "google" package at all
        return False


def fashion_source(download: bool | None = None) -> Path | None:
    """The folder Fashion-MNIST is read from, or None when it cannot be had. Looks where
    :func:`tkd.data.load_dataset` looks; when nothing is there and ``download`` (default:
    :func:`looks_online`), lets tkd.data's loader download it first."""
    found = find_fashion()
    if found is not None:
        return found
    if download is None:
        download = looks_online()
    if not download:
        return None
    try:
        load_dataset("fashion-mnist", download=True)
    except (DatasetNotFoundError, ValueError):
        return None
    return find_fashion()


def choose_preset(requested: str = AUTO, show: bool = True) -> str:
    """The preset a notebook runs: ``requested`` unless it is "auto"; for "auto",
    ``$TKD_PRESET`` if set, else "fashion" when :func:`fashion_source` finds the data, else
    "quick". ``show`` displays :func:`banner` (the notebook's first output)."""
    from tkd.experiments import get_preset

    source = None
    if requested != AUTO:
        chosen, why = requested, "set in the parameters cell"
    elif os.environ.get("TKD_PRESET"):
        chosen, why = os.environ["TKD_PRESET"], "set by TKD_PRESET"
    else:
        source = fashion_source()
        chosen = "fashion" if source is not None else "quick"
        why = ("auto: Fashion-MNIST found" if source is not None else
               "auto: Fashion-MNIST is not on this machine (Debian's dataset-fashion-mnist "
               "package or $TKD_DATA would give it)")
    preset = get_preset(chosen)  # ValueError naming the presets for an unknown name
    if preset.dataset == "fashion-mnist" and source is None:
        source = find_fashion()
    if show:
        _show(banner(preset.name, why, source))
    return preset.name


def saved_student(preset: Preset, name: str, seed: int, data, teacher, log=print):
    """The saved student ``name`` x ``seed`` of ``preset`` (eval mode) when its record is
    current; otherwise, where ``data`` has at most ``SMALL_TRAIN_SET`` training images (the
    digits: seconds), one trained here with the preset's settings and nothing written to
    disk; on a larger set ``ValueError`` gives the command that saves it
    (:func:`tkd.runs.load_or_train_student` with ``save=False``)."""
    from tkd.runs import load_or_train_student

    return load_or_train_student(preset, name, data, teacher, seed=seed, log=log, save=False,
                                 max_train=SMALL_TRAIN_SET, retrain=True)


def banner(preset: str, why: str, source: Path | None = None) -> str:
    """One short Markdown paragraph: the preset, why it was chosen, and its data."""
    from tkd.experiments import get_preset

    spec = get_preset(preset)
    if spec.dataset == "digits":
        data = QUICK_NOTE
    elif spec.dataset == "fashion-mnist":
        data = f"Fashion-MNIST from `{source}`" if source else "Fashion-MNIST (to be downloaded)"
    else:
        data = spec.description
    return f"**Preset `{spec.name}`** ({why}): {data}."


def _show(markdown: str) -> None:
    """Markdown in a notebook, plain text elsewhere."""
    try:
        from IPython import get_ipython
        from IPython.display import Markdown, display
    except ImportError:
        get_ipython = None
    if get_ipython is not None and get_ipython() is not None:
        display(Markdown(markdown))
    else:
        print(markdown.replace("**", "").replace("`", ""))


# ---------------------------------------------------------------------------- the lesson run --
# The lab's plan and timing live with the notebooks (notebooks/lab.py); here only what notebook
# 00 runs.


def resolve_live(live: bool | str = AUTO) -> bool:
    """Whether notebook 00 starts the lesson run in the background: ``live`` when it is True or
    False; "auto" means yes, unless ``$TKD_LIVE`` is "0" (``notebooks/execute.py`` and the tests
    set it, so that an executed copy never trains)."""
    if live != AUTO:
        return bool(live)
    return os.environ.get("TKD_LIVE", "1") != "0"


class LessonRun:
    """The lesson-sized comparison training in a background process (:func:`start_lesson_run`):
    ``root`` (its results folder), ``log`` (its output), ``done()``, ``wait()``, ``seconds``."""

    def __init__(self, root: Path, process, log: Path):
        import time

        self.root, self.process, self.log = root, process, log
        self.started, self.ended = time.perf_counter(), None

    def done(self) -> bool:
        import time

        if self.process.poll() is not None and self.ended is None:
            self.ended = time.perf_counter()
        return self.process.poll() is not None

    def wait(self) -> int:
        """Wait for the run to finish; its exit status (0: every run trained)."""
        self.process.wait()
        self.done()
        return self.process.returncode

    @property
    def seconds(self) -> float:
        import time

        return (self.ended or time.perf_counter()) - self.started

    def status(self) -> str:
        """One line: running or finished, for how long, and the last line of its log."""
        last = [line for line in self.log.read_text().splitlines() if line.strip()][-1:] \
            if self.log.is_file() else []
        state = (f"finished (exit status {self.process.returncode})" if self.done()
                 else "still running")
        return (f"lesson run {state} after {self.seconds / 60:.1f} min in {self.root}"
                + (f"; last log line: {last[0]}" if last else ""))


def start_lesson_run(experiments: list[str], seeds: list[int], jobs: int = 2,
                     root: Path | None = None) -> LessonRun | str:
    """Start ``python -m tkd reproduce --preset lesson`` for ``experiments`` x ``seeds`` in a
    background process, into a fresh folder (default: a new temporary one) that gets a copy of
    the saved teacher, so the committed records are never touched and the kernel stays free.
    Returns the :class:`LessonRun`, or a sentence saying why nothing was started (no saved
    teacher, or one that is stale for this version of tkd: retraining it takes hours)."""
    import shutil
    import tempfile

    from tkd.experiments import get_preset, load_data, teacher_owner
    from tkd.grid import teacher_state
    from tkd.records import results_root, teacher_path

    lesson = get_preset("lesson")
    saved = teacher_path(lesson).parent
    state, why = teacher_state(lesson, None, load_data(teacher_owner(lesson)).identity())
    if state != "current":
        return (f"The saved teacher is {state}" + (f" ({why})" if why else "") +
                ": training the lesson runs would first retrain it, so nothing was started.")
    root = Path(root) if root else Path(tempfile.mkdtemp(prefix="tkd-lesson-"))
    shutil.copytree(saved, root / saved.relative_to(results_root()), dirs_exist_ok=True)
    log = root / "lesson-run.log"
    command = [sys.executable, "-m", "tkd", "reproduce", "--preset", "lesson", "--experiments",
               *experiments, "--seeds", *map(str, seeds), "--jobs", str(jobs), "--results",
               str(root), "--no-figures"]
    with open_stream_log(log) as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    return LessonRun(root, process, log)


# --------------------------------------------------------------------- the lab-track verdict --

LAB_PAIRS = [("triplet-batch-semihard", "kd-t4"), ("triplet", "ce-wd0.007"),
             ("triplet-batch-semihard", "triplet")]
"""The comparisons among the methods the lab track meets (00-03), besides the paper's
ordering: mining against Hinton KD, the paper's triplet against the student alone at its
weight decay, and mining against sampling."""


def _lab_step(step: dict) -> str:
    a, b = f"`{step['a']}`", f"`{step['b']}`"
    if step.get("missing") or step["n"] < 2:
        return (f"{a} > {b}: not shown yet ({step['n']} common seed"
                f"{'' if step['n'] == 1 else 's'}: no interval)")
    return (f"{a} > {b}: **{step['reading']}**, {step['mean']:+.2f} points "
            f"[{step['low']:+.2f}, {step['high']:+.2f}] over {step['n']} seeds")


def lab_verdict(runs, preset: str) -> str:
    """The verdict for the lab track, in Markdown: the paper's ordering step by step
    (:func:`tkd.verdict.ladder`) and the comparisons among the methods the lab meets
    (:data:`LAB_PAIRS`, :func:`tkd.verdict.paired`), each with its paired 95 % interval, and
    one sentence saying what the numbers mean. The full verdict, with every other method, is
    ``tkd.verdict.verdict_markdown`` (notebook 03's "What the paper claims", notebook 07)."""
    from tkd.verdict import ladder, ordering_reading, paired

    steps = ladder(runs)
    overall = ordering_reading([s["reading"] for s in steps])
    names = set(runs.experiment)
    met = [paired(runs, a, b) for a, b in LAB_PAIRS if a in names and b in names]
    return (f"**The paper's ordering on `{preset}` (triplet > Hinton KD > logit regression > "
            f"student alone): {overall}.** " + "; ".join(map(_lab_step, steps)) + ". "
            + ("**Among the methods of this lab:** " + "; ".join(map(_lab_step, met)) + ". "
               if met else "")
            + "Each number is the mean of the per-seed differences a − b in test accuracy, "
            "with its 95 % interval in brackets; a step holds when the interval lies above "
            "zero, is refuted when it lies below, and is not shown when it straddles zero.\n")
