"""Extra RecBole metrics for the user-profiling tasks, registered like RecBole's built-in metrics.

:class:`Acc` is multi-class classification accuracy (the age / life-status / ... tasks). After
:func:`register_metrics` it can be named in a configuration exactly like a built-in metric::

    metrics: [Acc]
    valid_metric: Acc

and RecBole's ``Config`` (``eval_type`` = VALUE, ``valid_metric_bigger`` = True), ``Collector`` (collects
``rec.score`` and ``data.label``) and ``Evaluator`` (reports ``{"acc": ...}``) treat it as one of their own.
Binary tasks (gender, CVR) use RecBole's built-in ``AUC``, a value metric of the same kind.

RecBole 1.2.1 builds its metric registry once, at import, by scanning ``recbole.evaluator.metrics``
(:mod:`recbole.evaluator.register`), and other modules import the registry's containers by name:
``recbole.evaluator.evaluator`` imports ``metrics_dict``; ``recbole.config.configurator`` imports
``metric_types`` and ``smaller_metrics`` (through ``recbole.evaluator``); ``Register`` (used by the
``Collector``) reads the module global ``metric_information``. All these names are bound to the very same
dict / list objects, so :func:`register_metrics` updates those objects in place, and that is visible
everywhere. It still walks every module that holds such a name and updates each distinct object, so a
module that had rebound a name to a copy would be covered as well.
"""

from __future__ import annotations

import importlib

import torch
from recbole.evaluator.base_metric import AbstractMetric
from recbole.utils import EvaluatorType

__all__ = ["Acc", "register_metrics", "EXTRA_METRICS"]


class Acc(AbstractMetric):
    r"""Multi-class classification accuracy: the share of samples whose predicted class is their label.

    Inputs (collected by RecBole's ``Collector`` over all evaluation batches):

    - ``rec.score``: the model's ``predict`` output, concatenated along dim 0.

      * shape ``(N, C)`` with ``C >= 2``: one score (logit or probability) per class. The predicted class is
        ``argmax`` over the classes. **Ties resolve to the lowest class index** (``torch.argmax`` returns the
        first maximal index), so a row of equal scores predicts class 0.
      * shape ``(N,)`` or ``(N, 1)``: the binary case, a *probability* of class 1. The predicted class is
        ``score > 0.5`` (a score of exactly 0.5 predicts class 0). Do not pass logits here: a logit must be
        passed through a sigmoid first (or thresholded at 0 by the model itself).

    - ``data.label``: the class index ``0 .. C-1`` of every sample (``C = 2`` in the binary case), as a float
      or integer tensor of shape ``(N,)`` or ``(N, 1)``.

    .. math::
        \mathrm{Acc} = \frac{1}{N} \sum_{i=1}^{N} \mathbb{1}\left[\hat{y}_i = y_i\right]

    The value is rounded to ``config["metric_decimal_place"]`` like every RecBole metric and returned as
    ``{"acc": value}``.

    Raises:
        ValueError: no samples; score and label counts differ; a score tensor of more than 2 dimensions;
            NaN scores (``argmax`` would silently count NaN as the maximum); a label that is not an integer
            or lies outside ``[0, C)``.
    """

    metric_type = EvaluatorType.VALUE
    metric_need = ["rec.score", "data.label"]
    smaller = False

    def __init__(self, config):
        super().__init__(config)

    def calculate_metric(self, dataobject):
        scores = dataobject.get("rec.score")
        labels = dataobject.get("data.label")
        return {"acc": round(self.metric_info(scores, labels), self.decimal_place)}

    @staticmethod
    def predicted_classes(scores: torch.Tensor) -> tuple[torch.Tensor, int]:
        """Predicted class of every row and the number of classes ``C`` (see the class docstring)."""
        scores = torch.as_tensor(scores).detach()
        if scores.dim() == 2 and scores.shape[1] == 1:
            scores = scores.squeeze(1)
        if scores.dim() == 1:
            return (scores > 0.5).long(), 2
        if scores.dim() == 2:
            return scores.argmax(dim=1), scores.shape[1]
        raise ValueError(
            f"Acc: rec.score must have shape (N, C) (one score per class) or (N,) (binary probability of "
            f"class 1), got shape {tuple(scores.shape)}."
        )

    @classmethod
    def metric_info(cls, scores: torch.Tensor, labels: torch.Tensor) -> float:
        """Unrounded accuracy of ``scores`` (``(N, C)``, ``(N,)`` or ``(N, 1)``) against class ``labels``."""
        scores = torch.as_tensor(scores).detach().cpu()
        labels = torch.as_tensor(labels).detach().cpu()
        if labels.dim() == 2 and labels.shape[1] == 1:
            labels = labels.squeeze(1)
        if labels.dim() != 1:
            raise ValueError(f"Acc: data.label must have shape (N,), got shape {tuple(labels.shape)}.")
        if scores.dim() == 0 or scores.shape[0] != labels.shape[0]:
            raise ValueError(
                f"Acc: rec.score has shape {tuple(scores.shape)} but data.label has {labels.shape[0]} labels; "
                "the first dimensions must match (one score row per labelled sample)."
            )
        if labels.numel() == 0:
            raise ValueError("Acc: no samples to evaluate (empty rec.score / data.label).")
        if scores.is_floating_point() and torch.isnan(scores).any():
            raise ValueError(f"Acc: rec.score contains {int(torch.isnan(scores).sum())} NaN value(s).")
        predicted, n_classes = cls.predicted_classes(scores)
        if labels.is_floating_point() or labels.is_complex():
            if not torch.isfinite(labels).all() or not torch.equal(labels, labels.round()):
                raise ValueError("Acc: data.label must hold integer class indices, got non-integer values.")
        labels = labels.long()
        bad = (labels < 0) | (labels >= n_classes)
        if bad.any():
            raise ValueError(
                f"Acc: {int(bad.sum())} label(s) outside [0, {n_classes}) (e.g. {int(labels[bad][0])}); "
                f"rec.score has {n_classes} classes"
                + (" (1-D scores mean the binary case: labels must be 0 or 1)." if n_classes == 2 else ".")
            )
        return (predicted == labels).double().mean().item()


#: The metrics this package adds to RecBole's registry, by RecBole's lower-case name.
EXTRA_METRICS = {"acc": Acc}

# Modules that hold (by import) a name bound to one of the registry's containers.
_REGISTRY_HOLDERS = (
    "recbole.evaluator.register",
    "recbole.evaluator",
    "recbole.evaluator.evaluator",
    "recbole.evaluator.collector",
    "recbole.config.configurator",
)


def _registry_objects(name: str) -> list:
    """Every distinct object bound to ``name`` in the modules that use RecBole's metric registry."""
    found, seen = [], set()
    for module_name in _REGISTRY_HOLDERS:
        obj = getattr(importlib.import_module(module_name), name, None)
        if obj is not None and id(obj) not in seen:
            seen.add(id(obj))
            found.append(obj)
    return found


def register_metrics() -> dict:
    """Put this package's metrics into RecBole's metric registry (idempotent). Returns :data:`EXTRA_METRICS`.

    Updates, in place, ``metrics_dict`` (name -> class, used by ``Evaluator``), ``metric_information``
    (name -> ``metric_need``, used by the ``Collector``'s ``Register``), ``metric_types`` (name -> evaluator
    type, used by ``Config`` to derive ``eval_type``) and ``smaller_metrics`` (used by ``Config`` to derive
    ``valid_metric_bigger``). Names are lower-case, as RecBole lower-cases the names in ``metrics`` and
    ``valid_metric``.

    Raises:
        RuntimeError: RecBole already registers a *different* metric under one of our names.
    """
    for name, metric_cls in EXTRA_METRICS.items():
        for registry in _registry_objects("metrics_dict"):
            existing = registry.get(name)
            # A class of the same name from this module (e.g. after importlib.reload) may be replaced.
            if existing is not None and existing is not metric_cls and not (
                existing.__module__ == metric_cls.__module__ and existing.__qualname__ == metric_cls.__qualname__
            ):
                raise RuntimeError(
                    f"RecBole already has a metric named '{name}' ({existing.__module__}.{existing.__qualname__}); "
                    f"refusing to replace it with {metric_cls.__module__}.{metric_cls.__qualname__}."
                )
            registry[name] = metric_cls
        for registry in _registry_objects("metric_information"):
            registry[name] = metric_cls.metric_need
        for registry in _registry_objects("metric_types"):
            registry[name] = metric_cls.metric_type
        for registry in _registry_objects("smaller_metrics"):
            if metric_cls.smaller is True and name not in registry:
                registry.append(name)
            elif metric_cls.smaller is not True:
                while name in registry:
                    registry.remove(name)
    return EXTRA_METRICS
