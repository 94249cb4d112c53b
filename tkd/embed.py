"""Where teacher and student logits lie: collection, one shared 2-D map, and the numbers.

Shapes: ``logits`` are ``(N, classes)``, ``labels`` ``(N,)``, a 2-D map ``(N, 2)``.
The teacher and every student are projected **together** (one UMAP, PCA or t-SNE fitted on all
their logits stacked), so a teacher point and its student point share coordinates and the
distance between them means something. Everything is seeded and repeatable.

This module maps and measures; it never trains. The students to map come from
:func:`tkd.runs.load_or_train_student` (in the notebooks, `tkd.notebooks.saved_student`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

from tkd.data import TensorSplit
from tkd.losses import distance
from tkd.miners import fixed_negatives
from tkd.models import predict

PROJECTIONS = ("umap", "pca", "tsne")


@dataclass
class Outputs:
    """One model's outputs on one split: ``logits`` (N, classes), ``labels`` (N,) and, when
    asked for, the penultimate ``features`` (N, d). NumPy float32 / int64 arrays."""

    logits: np.ndarray
    labels: np.ndarray
    features: np.ndarray | None = None


@torch.no_grad()
def collect(model: nn.Module, split: TensorSplit, features: bool = False,
            batch_size: int = 1000) -> Outputs:
    """Logits (and with ``features=True`` the ``model.forward_features`` output) of ``model`` on
    every image of ``split``, in one pass (:func:`tkd.models.predict`), on the model's device, as
    NumPy arrays; labels come along."""
    device = next(model.parameters()).device
    out = predict(model, split.images.to(device), batch_size, features=features)
    logits, feats = out if features else (out, None)
    return Outputs(logits.cpu().numpy(), split.labels.cpu().numpy().astype(np.int64),
                   feats.cpu().numpy() if features else None)


# ------------------------------------------------------------------------ shared 2-D map ----


def project(arrays: list[np.ndarray], method: str = "umap", seed: int = 0,
            **options) -> list[np.ndarray]:
    """Fit ONE 2-D projection on ``arrays`` stacked ((N_i, d) each) and return their (N_i, 2)
    coordinates. ``method``: ``"umap"`` (umap-learn; options such as ``n_neighbors``,
    ``min_dist``), ``"pca"`` or ``"tsne"`` (scikit-learn). Same inputs and seed, same map."""
    if method not in PROJECTIONS:
        raise ValueError(f"method={method!r} is not known; choose one of {', '.join(PROJECTIONS)}")
    stacked = np.concatenate([np.asarray(a, dtype=np.float32) for a in arrays])
    if stacked.ndim != 2 or len(stacked) < 3:
        raise ValueError(f"need at least 3 points of shape (n, d) to project, got {stacked.shape}")
    if method == "pca":
        from sklearn.decomposition import PCA

        coords = PCA(2, random_state=seed, **options).fit_transform(stacked)
    elif method == "tsne":
        from sklearn.manifold import TSNE

        perplexity = options.pop("perplexity", min(30.0, (len(stacked) - 1) / 3))
        coords = TSNE(2, perplexity=perplexity, init="pca", random_state=seed,
                      **options).fit_transform(stacked)
    else:
        import warnings

        with warnings.catch_warnings():  # "n_jobs overridden by setting random_state": wanted
            warnings.simplefilter("ignore", UserWarning)
            import umap

            options.setdefault("n_neighbors", min(15, len(stacked) - 1))
            coords = umap.UMAP(n_components=2, random_state=seed, **options).fit_transform(stacked)
    coords = np.asarray(coords, dtype=np.float32)
    return np.split(coords, np.cumsum([len(a) for a in arrays])[:-1])


def shared_map(teacher: np.ndarray, students: dict[str, np.ndarray], labels: np.ndarray,
               method: str = "umap", seed: int = 0, **options) -> pd.DataFrame:
    """Teacher logits (N, classes) and each student's (N, classes) in one map fitted on all.

    Returns a long table with one row per model and sample: ``model`` ("teacher" or the
    student's name), ``sample`` (0..N-1), ``label``, ``x``, ``y``; ``table.attrs`` holds the
    ``method`` and, for PCA, ``explained_variance`` (the share of variance along x and y).
    """
    names = ["teacher", *students]
    arrays = [teacher, *students.values()]
    for name, array in zip(names, arrays):
        if np.shape(array) != np.shape(teacher):
            raise ValueError(f"{name} logits have shape {np.shape(array)}, teacher's "
                             f"{np.shape(teacher)}; they must match")
    coords = project(arrays, method, seed, **options)
    labels = np.asarray(labels)
    frames = [pd.DataFrame({"model": name, "sample": np.arange(len(xy)), "label": labels,
                            "x": xy[:, 0], "y": xy[:, 1]}) for name, xy in zip(names, coords)]
    table = pd.concat(frames, ignore_index=True)
    table["model"] = pd.Categorical(table["model"], categories=names)
    table.attrs["method"] = method  # the plots label their axes from it
    if method == "pca":  # share of the stacked logits' variance along PC1 and PC2
        from sklearn.decomposition import PCA

        stacked = np.concatenate([np.asarray(a, dtype=np.float32) for a in arrays])
        table.attrs["explained_variance"] = [
            float(v) for v in PCA(2, random_state=seed).fit(stacked).explained_variance_ratio_]
    return table


# ------------------------------------------------------------------------------ numbers ----


def log_softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise log-softmax of ``logits / temperature``: (N, classes) -> (N, classes)."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def kl_to_teacher(teacher: np.ndarray, student: np.ndarray, temperature: float = 1.0) -> float:
    """Mean over samples of ``KL(softmax(t/T) || softmax(s/T))`` (nats); 0 when s == t."""
    log_t, log_s = log_softmax(teacher, temperature), log_softmax(student, temperature)
    return float((np.exp(log_t) * (log_t - log_s)).sum(axis=1).mean())


def margin_satisfied(teacher: np.ndarray, student: np.ndarray, labels: np.ndarray,
                     margin: float = 5.0, seed: int = 0) -> float:
    """Share of triplets (anchor ``t_i``, positive ``s_i``, negative ``s_j``) with
    ``||t_i - s_i|| + margin <= ||t_i - s_j||``, i.e. zero triplet loss. ``j`` is the fixed
    other-class negative of :func:`tkd.miners.fixed_negatives` (``seed``)."""
    labels_t = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    negatives = fixed_negatives(labels_t, int(labels_t.max()) + 1, seed)
    t, s = torch.as_tensor(teacher).float(), torch.as_tensor(student).float()
    hinge = distance(t, s) - distance(t, s[negatives]) + margin
    return float((hinge <= 0).float().mean())


def knn_purity(points: np.ndarray, labels: np.ndarray, k: int = 10) -> float:
    """Mean share of each point's ``k`` nearest neighbours (itself excluded) of its class."""
    from sklearn.neighbors import NearestNeighbors

    labels = np.asarray(labels)
    k = min(k, len(points) - 1)
    index = NearestNeighbors(n_neighbors=k + 1).fit(points).kneighbors(points)[1][:, 1:]
    return float((labels[index] == labels[:, None]).mean())


def separation(points: np.ndarray, labels: np.ndarray) -> float:
    """Silhouette score of ``points`` (N, d) grouped by ``labels`` (-1 .. 1; higher: classes
    lie apart); NaN if there are fewer than two classes."""
    from sklearn.metrics import silhouette_score

    labels = np.asarray(labels)
    if len(np.unique(labels)) < 2 or len(np.unique(labels)) >= len(labels):
        return float("nan")
    return float(silhouette_score(points, labels))


def logit_metrics(teacher: np.ndarray, student: np.ndarray, labels: np.ndarray,
                  margin: float = 5.0, temperature: float = 1.0, seed: int = 0) -> dict:
    """The numbers that go with the map, for one student (all logits (N, classes)):

    ``accuracy`` (student vs labels), ``distance`` (mean ``||t_i - s_i||``), ``agreement``
    (share of equal top-1 classes), ``kl`` (:func:`kl_to_teacher` at ``temperature``),
    ``margin_satisfied`` (:func:`margin_satisfied`), ``silhouette`` and ``knn_purity`` of the
    student logits by class.
    """
    teacher, student = np.asarray(teacher, np.float32), np.asarray(student, np.float32)
    labels = np.asarray(labels)
    if teacher.shape != student.shape or teacher.ndim != 2 or len(labels) != len(teacher):
        raise ValueError(f"teacher {teacher.shape}, student {student.shape} and labels "
                         f"{labels.shape} must be (N, classes), (N, classes) and (N,)")
    return {
        "accuracy": float((student.argmax(1) == labels).mean()),
        "distance": float(np.linalg.norm(teacher - student, axis=1).mean()),
        "agreement": float((teacher.argmax(1) == student.argmax(1)).mean()),
        "kl": kl_to_teacher(teacher, student, temperature),
        "margin_satisfied": margin_satisfied(teacher, student, labels, margin, seed),
        "silhouette": separation(student, labels),
        "knn_purity": knn_purity(student, labels),
    }


def metrics_table(teacher: np.ndarray, students: dict[str, np.ndarray], labels: np.ndarray,
                  **options) -> pd.DataFrame:
    """:func:`logit_metrics` for every student, one row each, indexed by the student's name.
    A first row ``teacher`` (the teacher against itself) gives the reference values."""
    rows = {name: logit_metrics(teacher, logits, labels, **options)
            for name, logits in {"teacher": teacher, **students}.items()}
    return pd.DataFrame.from_dict(rows, orient="index")
