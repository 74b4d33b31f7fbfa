"""Pre-training (pretext) tasks as plug-ins, and the per-stage view of the settings.

A pretext task is one module ``recbole_adaptssr/pretext/<name>.py`` holding a :class:`PretextTask` subclass whose
``name`` is ``<name>``, and one YAML of defaults ``recbole_adaptssr/properties/pretext/<name>.yaml`` whose keys
all start with ``<name>_``. ``pretrain_stages: [mlm, ssr]`` is a sequence of such names; RecBole's
find-by-module-name convention finds them, as it finds models. A task defined elsewhere (a user's package, a
test) is found when its module is imported or listed in the ``pretext_modules`` setting; its YAML is the
file its ``config_file`` attribute names.

A task declares:
  * its settings, read through a :class:`StageSettings` view (``settings["mask_ratio"]`` in stage ``mlm`` is
    ``mlm_mask_ratio`` if that is defined, else ``mask_ratio``): so two tasks never fight over a key, and any
    general setting (``learning_rate``, ``epochs``, ``stopping_step``, ``hidden_dropout_prob``, ...) can be set
    for one stage only as ``<stage>_<key>``;
  * :meth:`PretextTask.loss`, built from a batch of behaviour sequences (its own views or targets) and the
    encoder;
  * :meth:`PretextTask.validation_step`, the statistics logged per epoch (``loss`` and what the task defines),
    with :meth:`PretextTask.valid_metrics` saying which of them may select the kept epoch; per-sequence values
    under ``"samples"`` are gathered over the validation split and summarised by
    :meth:`PretextTask.summarize_samples` (quantiles, groups);
  * :meth:`PretextTask.check_start`, a warning when the stage starts from collapsed representations.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from recbole_adaptssr import distributed
from recbole_adaptssr import precision as step_precision
from recbole_adaptssr.item_softmax import KERNELS, PRECISIONS
from recbole_adaptssr.plugins import Registry, check_plugin_namespace, did_you_mean, plugin_defaults_file
from recbole_adaptssr.setting_errors import as_setting_errors
from recbole_adaptssr.stopping import check_stopping_settings


def _unknown_task(name, registry) -> str:
    known = registry.known()
    return (f"unknown pretext task {name!r} in pretrain_stages; known: {known}{did_you_mean(name, known)} (a task of "
            "your own is found once its module is imported or listed in pretext_modules)")


#: the pretext tasks by name (module ``recbole_adaptssr.pretext.<name>``, or one of ``pretext_modules``)
PRETEXT_TASKS = Registry("pretext task", package=__package__, unknown=_unknown_task)

#: where in-batch negatives come from under torch.distributed: every rank's sequences, or this rank's only
NEGATIVES = ("global", "local")
#: key of a validation step's per-sequence values ({name: (B,) tensor}), gathered over the split
SAMPLES = "samples"


class StageSettings:
    """The settings of one stage: ``<stage>_<key>`` when it is defined (not ``None``), else ``<key>``.

    The more specific key always wins, whoever set it; :meth:`shadowed` lists the general keys a user set that a
    stage key shadows, so the pipeline can say so.
    """

    def __init__(self, config, stage: str):
        self.config = config
        self.stage = stage

    def key(self, key: str) -> str:
        """The key that holds ``key`` for this stage."""
        prefixed = f"{self.stage}_{key}"
        if self.config[prefixed] is not None:
            return prefixed
        return key

    def __getitem__(self, key: str):
        name = self.key(key)
        if name not in self.config:
            raise KeyError(f"setting {self.stage}_{key} (or {key}) is not defined for stage {self.stage!r}")
        return self.config[name]

    def get(self, key: str, default=None):
        name = self.key(key)
        return self.config[name] if name in self.config and self.config[name] is not None else default

    def __contains__(self, key: str) -> bool:
        return self.key(key) in self.config

    def shadowed(self, user_keys) -> dict:
        """``{general key: stage key}`` for the general keys in ``user_keys`` that this stage's keys override."""
        prefix = f"{self.stage}_"
        return {key[len(prefix):]: key for key in self.config.final_config_dict
                if key.startswith(prefix) and key[len(prefix):] in user_keys and self.config[key] is not None}


class PretextTask(nn.Module):
    """Base class of a pre-training task on the user model (see the module docstring).

    Subclasses set ``name`` and implement :meth:`loss`; they own any parameters they need (an output head),
    which are saved with the model and are not part of the user model a downstream task loads.
    """

    name: ClassVar[str] = ""
    #: YAML of the task's defaults; ``None`` means ``properties/pretext/<name>.yaml`` of this package.
    config_file: ClassVar[str | None] = None
    #: Smallest batch the loss is defined on (in-batch negatives need 2); smaller leftovers contribute nothing.
    min_batch_size: ClassVar[int] = 1

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.name:
            PRETEXT_TASKS[cls.name] = cls

    def __init__(self, settings: StageSettings, n_items: int, hidden_size: int):
        super().__init__()
        self.settings = settings
        self.n_items = n_items
        self.hidden_size = hidden_size
        self.check_settings(settings)
        self.global_negatives = settings.get("ddp_negatives", "global") == "global"
        # the softmax's products: item_softmax_precision, else the stage's precision's (recbole_adaptssr/precision.py)
        values = {"kernel": settings.get("item_softmax_kernel"),
                  "precision": settings.get("item_softmax_precision")
                  or step_precision.ITEM_SOFTMAX_PRECISION[step_precision.setting(settings)]}
        #: keyword arguments of item_cross_entropy from this stage's settings (the function's defaults if unset)
        self.item_softmax_options = {name: value for name, value in values.items() if value is not None}

    def gather_batch(self, *tensors: torch.Tensor) -> tuple:
        """The batch seen by a loss built on in-batch negatives. Under ``torch.distributed`` with
        ``ddp_negatives: global`` (the default), each (b, ...) tensor becomes the global batch's (B, ...) tensor: every
        rank's rows in rank order, with gradients flowing back to the rank that owns them
        (:func:`recbole_adaptssr.distributed.gather_with_grad`), so N ranks of b = B / N sequences compute the loss
        one process computes on B. Otherwise (one process, ``ddp_negatives: local``, or validation, which each rank runs
        on whole batches of its own) the tensors as they are. ``None`` entries pass through."""
        if not self.global_negatives or not distributed.gathering():
            return tensors
        return tuple(None if t is None else distributed.gather_with_grad(t)[0] for t in tensors)

    # ------------------------------------------------------------------ declared by each task
    @classmethod
    def check_settings(cls, settings: StageSettings) -> None:
        """Raise ``ValueError`` naming the key for a bad setting. Called before pre-training starts."""
        step_precision.setting(settings)  # precision: one of float32, tf32, bf16
        negatives = settings.get("ddp_negatives", "global")
        if negatives not in NEGATIVES:
            raise ValueError(f"{settings.key('ddp_negatives')} must be one of {list(NEGATIVES)}, got {negatives!r}")
        for key, allowed_values in (("item_softmax_kernel", KERNELS), ("item_softmax_precision", PRECISIONS)):
            value = settings.get(key)
            if value is not None and value not in allowed_values:
                raise ValueError(f"{settings.key(key)} must be one of {list(allowed_values)}, got {value!r}")
        check_stopping_settings(settings.get, settings.key)
        metric = settings.get("valid_metric", "loss")
        allowed = cls.valid_metrics(settings)
        if metric not in allowed:
            raise ValueError(
                f"{settings.key('valid_metric')}={metric!r} is not a validation statistic of pretext task "
                f"{cls.name!r} with these settings; choose one of {sorted(allowed)}"
            )

    @classmethod
    def valid_metrics(cls, settings: StageSettings) -> dict:
        """Statistics of :meth:`validation_step` that may select the kept epoch -> whether bigger is better."""
        return {"loss": False}

    def fit_data(self, dataset) -> None:
        """Called once before the stage trains, with the training split (an ``AdaptSSRDataset``: one row per user,
        ``item_id_list`` / ``item_length``), for tasks that need corpus statistics (item correlations, sequences
        sharing a last behaviour, ...). Default: nothing."""

    def loss(self, encoder, item_seq: torch.Tensor, item_seq_len: torch.Tensor, generator=None) -> torch.Tensor:
        raise NotImplementedError

    def validation_step(self, encoder, item_seq, item_seq_len, generator=None) -> dict:
        """Statistics of one held-out batch: floats (averaged over sequences by the trainer) and, optionally, per-
        sequence values ``{"samples": {name: (B,) tensor}}`` (concatenated over the split and handed to
        :meth:`summarize_samples`). Default: the loss."""
        return {"loss": float(self.loss(encoder, item_seq, item_seq_len, generator=generator))}

    def summarize_samples(self, samples: dict) -> dict:
        """Statistics of the whole validation split from the per-sequence values ``{name: (N,) tensor}`` of
        :meth:`validation_step` (floats, or a dict of groups -> {name: float}, logged on a line of its own).
        Default: none."""
        return {}

    def check_start(self, statistics: dict) -> str | None:
        """A warning when the validation statistics before the first epoch show collapsed representations."""
        return None

    def may_stop(self, statistics: dict) -> bool:
        """Whether early stopping may end the stage at an epoch with these validation statistics (a task can refuse
        while it has not left a trivial plateau). Default: always."""
        return True

    def check_end(self, statistics: dict) -> str | None:
        """A warning when the kept epoch's validation statistics show the stage did not learn (e.g. no better than
        a trivial baseline)."""
        return None


def builtin_pretext_tasks() -> list:
    """Names of the pretext tasks shipped in this package (the modules of this folder)."""
    return PRETEXT_TASKS.builtin_modules()


def get_pretext_task(name: str, modules=()) -> type:
    """The :class:`PretextTask` subclass called ``name``: already imported, else ``recbole_adaptssr.pretext.<name>``,
    else found in one of ``modules`` (the ``pretext_modules`` setting)."""
    with as_setting_errors():  # the name is a setting's value
        return PRETEXT_TASKS.lookup(name, modules)


def task_defaults_file(task_class: type) -> str | None:
    """The YAML of a task's defaults (a built-in task must have one; a missing file named by a task is an error)."""
    return plugin_defaults_file(task_class, __package__, "pretext", "pretext task")


def check_defaults_namespace(task_class: type, defaults: dict, path: str) -> None:
    """A task's YAML may only define keys of its own namespace ``<name>_...``."""
    check_plugin_namespace(defaults, task_class.name, f"pretext task {task_class.name!r}", path)
