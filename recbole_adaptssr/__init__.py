"""recbole-adaptssr: AdaptSSR (NeurIPS 2023) user-model pre-training as RecBole components.

Importing the package (or a pure module such as :mod:`recbole_adaptssr.losses` or
:mod:`recbole_adaptssr.augment.sequence`) has no side effect and does not import RecBole. The compatibility
shims for RecBole 1.2.1 on today's stack (:mod:`recbole_adaptssr.compat`) and the ``Acc`` metric registration are
applied explicitly by our entry points (``run_recbole_adaptssr.py``, :mod:`recbole_adaptssr.experiment`, our
``Config``); call :func:`setup` to apply them yourself before using RecBole's own API directly.

The package layout follows the pipeline::

    data/        behaviour log, pre-training sequences, downstream task samples, the embedded ml-100k
    augment/     explicit sequence augmentations (batched tensor operations)
    encoder/     the user model of Eq. 2-4
    pretext/     pre-training tasks, one module each, found by name (mlm, ssr, ...)
    losses.py    pure loss functions (Eq. 5-9)
    model/       the RecBole model: encoder + pretext tasks + a downstream head
    trainer.py   the pre-training stages and the downstream trainer
    downstream/  downstream task kinds and their heads (multiclass, binary, cvr, recommendation)
    evaluation/  extra RecBole metrics (Acc)
    experiment/  pretrain(), finetune() -> RunResult, the (start point x task x seed) grid, results tables
"""

__version__ = "0.2.0"


def setup() -> None:
    """Apply the RecBole compatibility shims and register our metrics (idempotent)."""
    from recbole_adaptssr import compat
    from recbole_adaptssr.evaluation import metrics

    compat.apply()
    metrics.register_metrics()
