"""Downstream task kinds as plug-ins: one module ``recbole_adaptssr/downstream/<kind>.py`` and one YAML
``properties/downstream/<kind>.yaml`` each (the paper's Table 1 kinds: multiclass, binary, cvr, recommendation).

A kind declares the fields its task file holds, how its labels are encoded, its head on the user representation
u (a two-layer MLP, Appendix C) and, in its YAML, RecBole's evaluation of it: ``<kind>_metrics``,
``<kind>_valid_metric``, ``<kind>_eval_mode`` (``labeled`` or ``full``), for ranking metrics ``<kind>_topk``, and
``<kind>_split_by`` (``row``: the samples are split at random; ``user``: the users are, so a test user is cold).
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from recbole_adaptssr.plugins import Registry, did_you_mean
from recbole_adaptssr.setting_errors import as_setting_errors


def _unknown_kind(name, registry) -> str:
    known = builtin_task_kinds()
    return f"unknown task kind {name!r}; known: {known}" + did_you_mean(name, known, n=2)


#: the task kinds by name (module ``recbole_adaptssr.downstream.<name>``)
TASK_KINDS = Registry("task kind", package=__package__, unknown=_unknown_kind)


def two_layer_mlp(in_size: int, hidden_size: int, out_size: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_size, hidden_size), nn.ReLU(), nn.Dropout(dropout),
                         nn.Linear(hidden_size, out_size))


def target_table(num_targets: int, hidden_size: int, kind: str) -> nn.Embedding:
    """The learned embedding of the task's target items (row 0 is padding), for heads that score targets."""
    if num_targets < 2:
        raise ValueError(f"a {kind} head needs target items, got {num_targets - 1}")
    table = nn.Embedding(num_targets, hidden_size, padding_idx=0)
    nn.init.normal_(table.weight, std=0.02)
    return table


class TaskHead(nn.Module):
    """Loss and scores of one task kind on top of the user representation u (B, d)."""

    def loss(self, u: torch.Tensor, label: torch.Tensor | None, target: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError

    def predict(self, u: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError

    def full_sort(self, u: torch.Tensor) -> torch.Tensor:
        raise ValueError(f"full-sort scoring needs a recommendation task, this head is {type(self).__name__}")


class TaskKind:
    """A downstream task kind. Subclasses set the class attributes and implement :meth:`build_head`."""

    name: ClassVar[str] = ""
    #: fields of the task file besides the user: "label" and/or "target"
    fields: ClassVar[tuple] = ()
    #: labels are class tokens, indexed 0..C-1 in sorted order; ``num_classes`` fixes C (binary: 2)
    class_labels: ClassVar[bool] = False
    num_classes: ClassVar[int | None] = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.name:
            TASK_KINDS[cls.name] = cls

    @classmethod
    def has_targets(cls) -> bool:
        return "target" in cls.fields

    @classmethod
    def build_head(cls, hidden_size: int, head_hidden_size: int, dropout: float, dataset) -> TaskHead:
        raise NotImplementedError

    @classmethod
    def evaluation_settings(cls, config) -> dict:
        """RecBole settings of a run on this kind (metrics, valid_metric, topk, eval mode) from ``<kind>_*``."""
        from recbole_adaptssr.pretext.base import StageSettings

        view = StageSettings(config, cls.name)
        settings = {"metrics": list(view["metrics"]), "valid_metric": view["valid_metric"],
                    "eval_mode": view["eval_mode"], "split_by": view.get("split_by", "row")}
        if view.get("topk") is not None:
            settings["topk"] = list(view["topk"])
        return settings

    @classmethod
    def check_settings(cls, config) -> None:
        settings = cls.evaluation_settings(config)
        if settings["eval_mode"] not in ("labeled", "full"):
            raise ValueError(f"{cls.name}_eval_mode must be labeled or full, got {settings['eval_mode']!r}")
        if settings["split_by"] not in ("row", "user"):
            raise ValueError(f"{cls.name}_split_by must be row or user, got {settings['split_by']!r}")
        metrics = [m.lower() for m in settings["metrics"]]
        valid = str(settings["valid_metric"]).lower()
        if valid.split("@")[0] not in metrics:
            raise ValueError(f"{cls.name}_valid_metric={settings['valid_metric']!r} is not one of "
                             f"{cls.name}_metrics={settings['metrics']}")
        if "@" in valid and int(valid.split("@")[1]) not in settings.get("topk", []):
            raise ValueError(f"{cls.name}_valid_metric={settings['valid_metric']!r} needs "
                             f"{valid.split('@')[1]} in {cls.name}_topk={settings.get('topk')}")


def builtin_task_kinds() -> list:
    return TASK_KINDS.builtin_modules()


def get_task_kind(name: str) -> type:
    """The :class:`TaskKind` called ``name`` (module ``recbole_adaptssr.downstream.<name>``)."""
    with as_setting_errors():  # the name is a setting's value
        return TASK_KINDS.lookup(name)
