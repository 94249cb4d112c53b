"""tkd: Triplet Loss for Knowledge Distillation (Oki, Abe, Miyao, Kurita; IJCNN 2020).

Modules: ``losses`` (triplet, pair, KD, logit-MSE, the combined objective), ``miners``
(negative selection), ``models`` (the paper's teacher and student, CIFAR ResNets), ``data``
(datasets as device tensors), ``train`` (:func:`fit`), ``checkpoint``, ``results``, ``cli``.
"""

__version__ = "0.1.0"
