"""Runtime shims that make RecBole 1.2.1 work on today's stack (numpy 2, torch >= 2.6, ray >= 2.40).

RecBole 1.2.1 is used as the registry ships it: nothing in its installed files is edited. Each shim below
fixes one break listed in SPEC-NOTES section 5 (RecBole issues #2212 and #2215), is idempotent, and is
applied by :func:`apply`, which ``import recbole_adaptssr`` calls before any RecBole code runs.

1. ``numpy_aliases``: ``Config.compatibility_settings`` reads ``np.float_``, ``np.complex_`` and
   ``np.unicode_``, removed in numpy 2. We restore them as aliases of the types numpy 1 aliased them to.
2. ``safe_checkpoints``: RecBole pickles its ``Config`` object into every checkpoint, so
   ``torch.load`` (``weights_only=True`` by default since torch 2.6) refuses to load it in
   ``Trainer.evaluate(load_best_model=True)``. We make the trainers store a plain-typed copy of the
   settings instead, so every checkpoint loads with ``weights_only=True``; loading never needs
   ``weights_only=False``.
3. ``ce_without_negatives``: a sequential model with ``loss_type: CE`` raises a config error unless the
   user also writes ``train_neg_sample_args: None``. :func:`default_train_neg_sampling` sets that default
   when the user did not choose a sampling themselves (our ``Config`` calls it).
4. ``fill_missing_values``: pandas 3 (copy-on-write) turns RecBole's chained
   ``feat[field].fillna(..., inplace=True)`` in ``Dataset._fill_nan`` into a silent no-op, so missing token
   and float values stay NaN. We replace that method with one that assigns the filled column back
   (identical result on pandas 2). Not covered: RecBole's ``_load_feat`` has the same chained call for
   empty ``token_seq``/``float_seq`` cells; our data sets have no sequence fields in atomic files.
5. ``no_anomaly_detection``: importing RecBole's ``sequential_recommender`` package (any lookup of SASRec,
   GRU4Rec, ...) runs ``sine.py``, which calls ``torch.autograd.set_detect_anomaly(True)`` for the whole
   process and slows every later training step 2-4x. We import the package once and switch it back off.
6. ray: RecBole's ``ray<=2.6.3`` pin installs a ray that imports ``pkg_resources`` (gone from
   setuptools >= 81) and uses ``np.bool8``. This is an install-level fix: we install RecBole with
   ``--no-deps`` and require ``ray[tune]>=2.40`` ourselves (see README); :func:`check_ray` turns an old
   ray into a clear error instead of an obscure import failure.
"""

from __future__ import annotations

import enum
import importlib.metadata
from typing import Any

import numpy as np

_NUMPY_ALIASES = {"float_": "float64", "complex_": "complex128", "unicode_": "str_"}
_applied = False


def numpy_aliases() -> None:
    """Restore the numpy 1 aliases that RecBole's ``Config.compatibility_settings`` reads."""
    for alias, target in _NUMPY_ALIASES.items():
        if alias not in np.__dict__:
            setattr(np, alias, getattr(np, target))


def plain(value: Any) -> Any:
    """Convert a settings value to types that ``torch.load(weights_only=True)`` accepts.

    Containers are converted recursively; enums become their name; numpy scalars become Python numbers;
    anything else that is not a builtin scalar becomes its ``str``.
    """
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [plain(v) for v in value]
    if hasattr(value, "final_config_dict"):  # a recbole Config
        return plain(value.final_config_dict)
    return str(value)


def safe_checkpoints() -> None:
    """Make RecBole's trainers save plain-typed settings instead of a pickled ``Config``."""
    import torch
    from recbole.trainer import trainer as rb_trainer

    trainer_cls = rb_trainer.Trainer
    if getattr(trainer_cls._save_checkpoint, "_adaptssr_safe", False):
        return

    def _save_checkpoint(self, epoch, verbose=True, **kwargs):
        if not self.config["single_spec"] and self.config["local_rank"] != 0:
            return
        saved_model_file = kwargs.pop("saved_model_file", self.saved_model_file)
        state = {
            "config": plain(self.config),
            "epoch": epoch,
            "cur_step": self.cur_step,
            "best_valid_score": float(self.best_valid_score),
            "state_dict": self.model.state_dict(),
            "other_parameter": plain(self.model.other_parameter()),
            "optimizer": self.optimizer.state_dict(),
        }
        torch.save(state, saved_model_file)  # default protocol: the weights-only unpickler rejects protocol 4
        if verbose:
            self.logger.info(rb_trainer.set_color("Saving current", "blue") + f": {saved_model_file}")

    def save_pretrained_model(self, epoch, saved_model_file):
        state = {
            "config": plain(self.config),
            "epoch": epoch,
            "state_dict": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "other_parameter": plain(self.model.other_parameter()),
        }
        torch.save(state, saved_model_file)

    _save_checkpoint._adaptssr_safe = True
    trainer_cls._save_checkpoint = _save_checkpoint
    rb_trainer.PretrainTrainer.save_pretrained_model = save_pretrained_model


def fill_missing_values() -> None:
    """Make ``Dataset._fill_nan`` fill NaNs on pandas 3 too (assignment instead of chained in-place fill)."""
    from recbole.data.dataset import dataset as rb_dataset
    from recbole.utils import FeatureType

    dataset_cls = rb_dataset.Dataset
    if getattr(dataset_cls._fill_nan, "_adaptssr_safe", False):
        return

    def _fill_nan(self):
        for feat_name in self.feat_name_list:
            feat = getattr(self, feat_name)
            for field in feat:
                ftype = self.field2type[field]
                if ftype == FeatureType.TOKEN:
                    feat[field] = feat[field].fillna(value=0)
                elif ftype == FeatureType.FLOAT:
                    feat[field] = feat[field].fillna(value=feat[field].mean())
                else:
                    dtype = np.int64 if ftype == FeatureType.TOKEN_SEQ else np.float64
                    feat[field] = feat[field].apply(
                        lambda x: np.array([], dtype=dtype) if isinstance(x, float) else x
                    )

    _fill_nan._adaptssr_safe = True
    dataset_cls._fill_nan = _fill_nan


def no_anomaly_detection() -> None:
    """Import RecBole's sequential models (whose sine.py enables anomaly detection) and disable it again."""
    import torch

    import recbole.model.sequential_recommender  # noqa: F401

    torch.autograd.set_detect_anomaly(False)


def default_train_neg_sampling(internal: dict, external: dict, model_type) -> None:
    """Use no training negatives for sequential ``loss_type: CE`` unless the user chose a sampling."""
    from recbole.utils import ModelType

    loss_type = external.get("loss_type", internal.get("loss_type"))
    if model_type == ModelType.SEQUENTIAL and loss_type == "CE" and "train_neg_sample_args" not in external:
        internal["train_neg_sample_args"] = None


def check_ray(minimum: str = "2.40") -> None:
    """Fail with an actionable message if an old ray (RecBole's pin) is installed."""
    try:
        version = importlib.metadata.version("ray")
    except importlib.metadata.PackageNotFoundError:
        return  # RecBole imports ray lazily enough for our paths; Ray Tune users get ray's own error.
    if _version_tuple(version) < _version_tuple(minimum):
        raise ImportError(
            f"ray {version} is installed, but recbole-adaptssr needs ray[tune]>={minimum}: ray <= 2.6.3 "
            "(RecBole 1.2.1's pin) imports pkg_resources and np.bool8, both gone on this stack. "
            f"Run: pip install 'ray[tune]>={minimum}'"
        )


def _version_tuple(version: str) -> tuple:
    parts = []
    for piece in version.split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def apply() -> None:
    """Apply every shim once (idempotent). Called by ``import recbole_adaptssr``."""
    global _applied
    if _applied:
        return
    numpy_aliases()
    check_ray()
    safe_checkpoints()
    fill_missing_values()
    no_anomaly_detection()
    _applied = True
