"""What the notebooks share: which preset a notebook runs, and the banner that says so.

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
from pathlib import Path

from tkd import data as tkd_data
from tkd.data import IDX_FILES, DatasetNotFoundError, load_dataset

AUTO = "auto"
QUICK_TEST_IMAGES = 359  # the digits' test split (tkd.data.load_dataset("digits"))
SMALL_TRAIN_SET = 10_000  # at most this many training images: a student trains in seconds
QUICK_NOTE = (f"the 8x8 digits ({QUICK_TEST_IMAGES} test images, one image = "
              f"{100 / QUICK_TEST_IMAGES:.2f} points): a fallback that runs anywhere; its "
              "numbers differ from the Fashion-MNIST verdict — see the boxes")


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


def saved_student(preset: str, name: str, seed: int, data, teacher, log=print):
    """The saved student ``name`` x ``seed`` of ``preset`` (eval mode) when its record is
    current; otherwise, where ``data`` has at most ``SMALL_TRAIN_SET`` training images (the
    digits: seconds), one trained here with the preset's settings and nothing written to
    disk; on a larger set ``ValueError`` gives the command that saves it
    (:func:`tkd.experiments.load_or_train_student` with ``save=False``)."""
    from tkd.experiments import load_or_train_student

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
