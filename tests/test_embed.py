"""tkd.embed: logit collection, the shared map and the numbers on cases with known answers."""

import numpy as np
import pytest
import torch

from tkd import embed
from tkd.data import load_dataset
from tkd.models import build_model


def _blobs(n_per_class=20, classes=4, dim=6, spread=0.1, seed=0):
    """Well separated clusters: (n, dim) points and (n,) labels."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dim)) * 20
    labels = np.repeat(np.arange(classes), n_per_class)
    return (centres[labels] + rng.normal(size=(len(labels), dim)) * spread).astype(np.float32), \
        labels


def test_collect_shapes_and_one_pass_matches_forward():
    torch.manual_seed(0)
    model = build_model("paper-student", 10, 1, 8)
    split = load_dataset("digits").test.subset(50)
    out = embed.collect(model, split, features=True, batch_size=16)
    assert out.logits.shape == (50, 10) and out.features.shape == (50, 128)
    assert out.labels.tolist() == split.labels.tolist()
    with torch.no_grad():
        direct = model(split.images.float() / 255).numpy()
    np.testing.assert_allclose(out.logits, direct, rtol=1e-5, atol=1e-5)
    assert embed.collect(model, split).features is None
    assert model.training  # collect leaves the mode as it found it


@pytest.mark.parametrize("method", ["pca", "tsne", pytest.param("umap", marks=pytest.mark.slow)])
def test_project_shapes_and_repeatable(method):
    points, _ = _blobs(n_per_class=10)
    a, b = points[:25], points[25:]
    first = embed.project([a, b], method, seed=3)
    second = embed.project([a, b], method, seed=3)
    assert [x.shape for x in first] == [(25, 2), (15, 2)]
    for x, y in zip(first, second):
        np.testing.assert_array_equal(x, y)


def test_project_rejects_unknown_method():
    with pytest.raises(ValueError, match="umap"):
        embed.project([np.zeros((5, 3))], "isomap")


def test_shared_map_is_one_fit_over_all_models():
    teacher, labels = _blobs()
    students = {"same": teacher.copy(), "shifted": teacher + 50.0}
    table = embed.shared_map(teacher, students, labels, method="pca")
    assert list(table.columns) == ["model", "sample", "label", "x", "y"]
    assert table.groupby("model", observed=True).size().tolist() == [80, 80, 80]
    t = table[table.model == "teacher"][["x", "y"]].to_numpy()
    same = table[table.model == "same"][["x", "y"]].to_numpy()
    shifted = table[table.model == "shifted"][["x", "y"]].to_numpy()
    np.testing.assert_allclose(t, same, atol=1e-4)  # same logits, same place on the one map
    assert np.linalg.norm(t - shifted, axis=1).min() > 10  # a shifted student lies elsewhere
    with pytest.raises(ValueError, match="must match"):
        embed.shared_map(teacher, {"bad": teacher[:, :3]}, labels, method="pca")


def test_identical_teacher_and_student():
    teacher, labels = _blobs()
    numbers = embed.logit_metrics(teacher, teacher, labels)
    assert numbers["distance"] == 0.0
    assert numbers["agreement"] == 1.0
    assert abs(numbers["kl"]) < 1e-12
    assert numbers["knn_purity"] == 1.0
    assert numbers["silhouette"] > 0.9


def test_numbers_on_known_cases():
    teacher = np.array([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0], [0.0, 2.0]], dtype=np.float32)
    labels = np.array([0, 1, 0, 1])
    student = teacher[:, ::-1].copy()  # every top-1 flipped
    numbers = embed.logit_metrics(teacher, student, labels, margin=0.5)
    assert numbers["agreement"] == 0.0 and numbers["accuracy"] == 0.0
    assert numbers["distance"] == pytest.approx(np.sqrt(8))
    p, q = np.exp(2) / (1 + np.exp(2)), 1 / (1 + np.exp(2))  # softmax([2, 0]) and its flip
    expected_kl = p * np.log(p / q) + q * np.log(q / p)
    assert numbers["kl"] == pytest.approx(expected_kl, rel=1e-6)
    # Positive = anchor exactly; the negative (other class) lies sqrt(8) away from the anchor.
    assert embed.margin_satisfied(teacher, teacher, labels, margin=2.0) == 1.0
    assert embed.margin_satisfied(teacher, teacher, labels, margin=3.0) == 0.0
    assert embed.kl_to_teacher(teacher, student, temperature=1e6) == pytest.approx(0, abs=1e-9)


def test_separation_scores():
    points, labels = _blobs()
    mixed = np.random.default_rng(1).permutation(labels)
    assert embed.knn_purity(points, mixed) < 0.6
    assert embed.separation(points, mixed) < 0.1
    assert np.isnan(embed.separation(points, np.zeros_like(labels)))


def test_metrics_table_has_a_teacher_reference_row():
    teacher, labels = _blobs()
    table = embed.metrics_table(teacher, {"noisy": teacher + 1.0}, labels)
    assert list(table.index) == ["teacher", "noisy"]
    assert table.loc["teacher", "distance"] == 0.0
    assert table.loc["noisy", "distance"] == pytest.approx(np.sqrt(6), rel=1e-5)
    assert table.loc["noisy", "agreement"] == 1.0  # a constant shift keeps the top-1 class
