"""Negative selection for the triplet and pair losses, kept apart from the losses themselves.

A *negative* for sample ``i`` (label ``y_i``) is another sample of a different class. Every strategy
lives here, and each returns indices, never losses:

- ``"sample"``, the paper's: a uniformly random other-class image of the whole training split,
  drawn for every image once per epoch (:class:`NegativeSampler`; :func:`fixed_negatives` for
  the fixed draw a test split is scored with); it needs an extra forward on the drawn images.

The three in-batch strategies reuse logits that the batch already has:

- ``"batch-random"``: a uniformly random other-class sample of the same batch;
- ``"batch-hard"``: the other-class sample whose logits lie closest to the anchor;
- ``"batch-semihard"`` (FaceNet, Schroff et al. 2015, and TensorFlow Addons'
  ``triplet_semihard_loss``): the closest other-class sample that is still farther from the
  anchor than the positive, ``d(a, p) < d(a, n)``; where none exists, the *farthest* one.

Which distance ranks the candidates is the term's choice (its row in
:data:`tkd.objective.TABLE`): the triplet loss pushes ``||t_i - s_j||`` (anchor = teacher
logits, candidates = student logits), the pair loss ``||s_i - t_j||`` (anchor = student logits,
candidates = teacher logits).

Every miner returns ``(index, valid)``: ``index`` (batch,) int64 into the batch and ``valid``
(batch,) bool. A sample whose batch holds no other-class sample has ``valid = False`` (its index
points at itself); the losses give such a row zero weight, so it contributes nothing.
"""

from __future__ import annotations

import torch
from torch import Tensor

NEGATIVE_STRATEGIES = ("sample", "batch-random", "batch-hard", "batch-semihard")
BATCH_STRATEGIES = NEGATIVE_STRATEGIES[1:]


def check_strategy(name: str) -> str:
    """Return ``name`` if it is a known negative strategy, else raise a ``ValueError``."""
    if name not in NEGATIVE_STRATEGIES:
        raise ValueError(
            f"negatives={name!r} is not a known negative strategy; "
            f"choose one of {', '.join(NEGATIVE_STRATEGIES)}"
        )
    return name


def other_class_mask(labels: Tensor) -> Tensor:
    """(batch,) labels -> (batch, batch) bool, True where the two samples' classes differ."""
    return labels[:, None] != labels[None, :]


def _pick(scores: Tensor, mask: Tensor, largest: bool) -> tuple[Tensor, Tensor]:
    """Arg-max/min of ``scores`` (batch, batch) over the True entries of ``mask`` per row."""
    fill = float("-inf") if largest else float("inf")
    masked = scores.masked_fill(~mask, fill)
    index = masked.argmax(dim=1) if largest else masked.argmin(dim=1)
    valid = mask.any(dim=1)
    rows = torch.arange(len(scores), device=scores.device)
    return torch.where(valid, index, rows), valid


def batch_random(labels: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """A uniformly random other-class partner in the batch for each sample.

    labels: (batch,) int64. ``generator`` (on any device) makes the draw repeatable.
    Returns ``(index, valid)``, each (batch,).
    """
    mask = other_class_mask(labels)
    where = generator.device if generator is not None else labels.device
    noise = torch.rand(mask.shape, generator=generator, device=where).to(labels.device)
    return _pick(noise, mask, largest=True)


def same_class_mask(labels: Tensor) -> Tensor:
    """(batch,) labels -> (batch, batch) bool, True where two *different* samples share a class."""
    same = labels[:, None] == labels[None, :]
    return same & ~torch.eye(len(labels), dtype=torch.bool, device=labels.device)


def batch_positives(labels: Tensor, generator: torch.Generator | None = None
                    ) -> tuple[Tensor, Tensor]:
    """A uniformly random *other* sample of the same class in the batch for each sample: the
    positive of a triplet anchored on the student itself (no teacher).

    labels: (batch,) int64. Returns ``(index, valid)``, each (batch,); ``valid`` is False where
    the sample is the only one of its class in the batch.
    """
    mask = same_class_mask(labels)
    where = generator.device if generator is not None else labels.device
    noise = torch.rand(mask.shape, generator=generator, device=where).to(labels.device)
    return _pick(noise, mask, largest=True)


def batch_hard(anchor: Tensor, candidates: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """For each anchor row, the other-class candidate at the smallest distance.

    anchor, candidates: (batch, classes) — teacher logits and student logits of the batch;
    labels: (batch,). Returns ``(index, valid)``, each (batch,).
    """
    distance = torch.cdist(anchor.detach().float(), candidates.detach().float())
    return _pick(distance, other_class_mask(labels), largest=False)


def batch_semihard(
    anchor: Tensor, positive: Tensor, candidates: Tensor, labels: Tensor
) -> tuple[Tensor, Tensor]:
    """Semi-hard negatives as FaceNet defines them (Schroff et al., CVPR 2015, eq. 4; the rule
    of TensorFlow Addons' ``triplet_semihard_loss``): per anchor ``i``, the other-class
    candidate ``j`` with the smallest ``d(a_i, c_j)`` among those with
    ``d(a_i, c_j) > d(a_i, p_i)``; where no candidate is that far, the *farthest* other-class
    candidate.

    anchor, positive, candidates: (batch, classes); labels: (batch,).
    Returns ``(index, valid)``, each (batch,).
    """
    anchor, positive = anchor.detach().float(), positive.detach().float()
    distance = torch.cdist(anchor, candidates.detach().float())
    positive_distance = (anchor - positive).norm(dim=1, keepdim=True)
    other = other_class_mask(labels)
    semihard = other & (distance > positive_distance)
    index_semi, has_semi = _pick(distance, semihard, largest=False)
    index_far, valid = _pick(distance, other, largest=True)
    return torch.where(has_semi, index_semi, index_far), valid


def mine_negatives(
    strategy: str,
    labels: Tensor,
    anchor: Tensor | None = None,
    positive: Tensor | None = None,
    candidates: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Pick an in-batch negative for every sample with one of :data:`BATCH_STRATEGIES`.

    labels: (batch,); anchor, positive, candidates: (batch, classes). For the triplet loss
    anchor = teacher logits, positive = candidates = student logits (the default when
    ``candidates`` is None). Returns ``(index, valid)``, each (batch,).
    """
    check_strategy(strategy)
    if strategy == "sample":
        raise ValueError(
            "negatives='sample' draws negatives from the dataset, not the batch: "
            "use tkd.miners.NegativeSampler for it"
        )
    if strategy == "batch-random":
        return batch_random(labels, generator)
    if anchor is None or positive is None:
        raise ValueError(f"negatives={strategy!r} needs the anchor and positive logits")
    candidates = positive if candidates is None else candidates
    if strategy == "batch-hard":
        return batch_hard(anchor, candidates, labels)
    return batch_semihard(anchor, positive, candidates, labels)


# ------------------------------------------------- the paper's negatives: the whole split ----


class NegativeSampler:
    """Draws, for each anchor label ``y``, a uniformly random sample of the split with label != y.

    labels: (N,) int64 labels of the whole split (on any device). The split is sorted by label
    once; class ``c`` occupies ``order[start[c] : start[c] + count[c]]``. A draw picks
    ``r`` in ``[0, N - count[y])`` and skips over the block of class ``y``.
    """

    def __init__(self, labels: Tensor, num_classes: int):
        labels = labels.long()
        if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(f"labels must lie in 0..{num_classes - 1}")
        self.num_classes = num_classes
        self.order = torch.argsort(labels, stable=True)  # (N,) split indices, grouped by class
        self.count = torch.bincount(labels, minlength=num_classes)  # (classes,)
        self.start = torch.cumsum(self.count, 0) - self.count  # (classes,)
        if len(labels) == 0 or bool((self.count == len(labels)).any()):
            raise ValueError("every sample has the same class: no negative of another class exists")

    def __len__(self) -> int:
        return len(self.order)

    def draw(self, batch_labels: Tensor, generator: torch.Generator) -> Tensor:
        """batch_labels (B,) -> (B,) int64 split indices of other-class samples.

        Random numbers come from the CPU ``generator``; the result is on the sampler's device.
        """
        device = self.order.device
        y = batch_labels.to(device).long()
        pool = len(self.order) - self.count[y]  # (B,) how many samples are of another class
        u = torch.rand(len(y), generator=generator, dtype=torch.float64).to(device)
        r = torch.minimum((u * pool).long(), pool - 1)  # uniform in [0, pool)
        position = r + torch.where(r >= self.start[y], self.count[y], 0)
        return self.order[position]


def fixed_negatives(labels: Tensor, num_classes: int, seed: int = 0) -> Tensor:
    """One fixed other-class negative per sample: (N,) labels -> (N,) indices (test split)."""
    generator = torch.Generator().manual_seed(seed)
    return NegativeSampler(labels, num_classes).draw(labels, generator)
