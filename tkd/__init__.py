"""tkd: Triplet Loss for Knowledge Distillation (Oki, Abe, Miyao, Kurita; IJCNN 2020).

Modules, one a line (``tests/test_structure.py`` fails when one is missing here or from
``docs/files.md``):

``losses``       the losses as pure functions, teacher first, each with its formula
``miners``       every negative strategy (the paper's sampler; random, hard, semi-hard): indices
``objective``    the term table, who picks the negatives, the weighted sum; ``METHODS``
``models``       the paper's teacher and student, the 2022 student, CIFAR ResNets; ``predict``
``data``         datasets as device tensors, batch augmentation
``state``        what a run holds: ``TrainConfig``, ``Run`` and ``setup``
``evaluation``   scoring the validation and test splits every epoch; fidelity to the teacher
``train``        the trainer: ``train_step``, ``train_epoch``, ``run_epoch``, ``fit``
``precision``    the floating-point precision chosen from the device
``checkpoint``   checkpoints that survive a kill; saved models
``live``         live ``history.csv`` and TensorBoard scalars
``records``      run records (JSON): where they live, writing, reading and checking them
``staleness``    whether a record is current: settings, teacher, data and code as today's
``provenance``   the fingerprint of the code that decides training; which records are stale
``equivalence``  ``tkd equivalence``: records stay current across equivalent code changes
``portable``     the portable CPU mode (kernels capped at AVX2, MKL's COMPATIBLE branch)
``experiments``  the paper's experiments and presets as data; their recipes and run plan
``runs``         train or load a preset's runs: its teacher, a student of experiment x seed
``grid``         a preset's grid: the teacher, then every missing run (``--jobs``)
``cluster``      the grid on slurm through submitit
``fair``         the declared comparison: one choice rule, tuned rows, Holm and BH readings
``fair_tables``  the fair comparison's tables: claims, tuned rows, every choice, exploratory
``stats``        paired differences over seeds, p-values, Holm, BH; the convergence rule
``verdict``      the paper's claimed ordering, checked step by step from a runs table
``tables``       the runs table (one row per record) and the tables read from it
``figures``      the figures, and ``build_figures``: every table and figure of a preset
``verify``       ``tkd verify``: fresh runs against the committed records, at three levels
``embed``        one shared 2-D map of teacher and student logits, and its numbers
``plots``        seaborn figures of the map and of the widgets' quantities
``figure_checks`` whether a figure reads at a notebook's width (text size, overlaps); narrowing
``widgets``      widgets to move the KD temperature and the triplet margin
``notebooks``    what the notebooks share: setup, preset, banner, checks of their prose
``files``        atomic file writes
``cli``          every sub-command: ``train``, ``reproduce``, ``figures``, ``verify``, ...
``cli_records``  the record-maintenance sub-commands' work: ``equivalence``, ``backfill-*``, ...
``__main__``     ``python -m tkd``
"""

__version__ = "0.1.0"
