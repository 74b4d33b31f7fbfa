"""Runtime shims that make RecBole 1.2.1 work on today's stack (numpy 2, torch >= 2.6, ray >= 2.40).

RecBole 1.2.1 is used as the registry ships it: nothing in its installed files is edited. Each shim below
fixes one break listed in docs/install.md, "What breaks in RecBole 1.2.1 today" (RecBole issues #2212 and
#2215), is idempotent, and is applied by :func:`apply`. Nothing is applied on import: our entry points
(``run_recbole_adaptssr.py``, the experiment API, our ``Config``) call :func:`apply` explicitly, once. Our own trainers do not rely on these
patches: they get safe checkpoints by subclassing (:func:`save_trainer_checkpoint` is the one implementation both
use); the patches exist for RecBole's own models run through our entry points.

1. ``numpy_aliases``: ``Config.compatibility_settings`` reads ``np.float_``, ``np.complex_`` and
   ``np.unicode_``, removed in numpy 2. We restore them as aliases of the types numpy 1 aliased them to.
2. ``safe_checkpoints``: RecBole pickles its ``Config`` object into every checkpoint, so
   ``torch.load`` (``weights_only=True`` by default since torch 2.6) refuses to load it in
   ``Trainer.evaluate(load_best_model=True)``. We make RecBole's trainers store a :class:`SavedConfig` (the
   settings as plain values and RecBole's enums, allow-listed for the weights-only unpickler) and encode
   ``other_parameter()`` values the unpickler cannot hold (numpy arrays, scipy sparse matrices) as tensors,
   decoded again by ``load_other_parameter``. Tensors (Pop's counts, LightGCN's cached embeddings) stay tensors.
   So every checkpoint loads with ``weights_only=True``, and ``recbole.quick_start.load_data_and_model`` works
   on a checkpoint of a RecBole model trained through our entry point.
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
6. ``dok_update``: RecBole's graph models (LightGCN, NGCF, SpectralCF, GCMC, NCL, KGIN, MCCLK) fill their
   adjacency with ``scipy.sparse.dok_matrix._update``, a private method that scipy >= 1.12 removed. We restore it
   as scipy had it: a plain dict update of the stored entries (no checks; RecBole passes (row, col) -> value).
7. ray: RecBole's ``ray<=2.6.3`` pin installs a ray that imports ``pkg_resources`` (gone from
   setuptools >= 81) and uses ``np.bool8``. This is an install-level fix: we install RecBole with
   ``--no-deps`` and require ``ray[tune]>=2.40`` ourselves (see README); :func:`check_ray` turns an old
   ray into a clear error instead of an obscure import failure. For the same reason RecBole is not a declared
   requirement of the package: :func:`check_recbole` turns its absence into the install command.
"""

from __future__ import annotations

import enum
import importlib.metadata

import numpy as np

from recbole_adaptssr.plain_values import plain

_NUMPY_ALIASES = {"float_": "float64", "complex_": "complex128", "unicode_": "str_"}
_applied = False


def numpy_aliases() -> None:
    """Restore the numpy 1 aliases that RecBole's ``Config.compatibility_settings`` reads."""
    for alias, target in _NUMPY_ALIASES.items():
        if alias not in np.__dict__:
            setattr(np, alias, getattr(np, target))


def _recbole_enums() -> list:
    from recbole.utils import enum_type

    return [obj for obj in vars(enum_type).values() if isinstance(obj, type) and issubclass(obj, enum.Enum)]


class SavedConfig:
    """The settings of a RecBole checkpoint, loadable with ``weights_only=True``.

    It holds ``final_config_dict`` (plain values, RecBole's enums and ``torch.device``) and answers
    ``config[key]`` (``None`` for a missing key) and ``key in config`` as RecBole's ``Config`` does, which is all
    that ``recbole.quick_start.load_data_and_model`` and RecBole's data and model constructors ask of it.
    """

    def __init__(self, final_config_dict: dict):
        self.final_config_dict = final_config_dict

    def __getitem__(self, key):
        return self.final_config_dict.get(key)

    def __setitem__(self, key, value):
        self.final_config_dict[key] = value

    def __contains__(self, key):
        return key in self.final_config_dict

    def __str__(self):
        return "\n".join(f"{key} = {value}" for key, value in self.final_config_dict.items())


def saved_config(config) -> SavedConfig:
    """``config`` (RecBole's ``Config`` or a dict) -> :class:`SavedConfig`: enums and devices kept, numpy
    scalars made Python numbers, anything else that is not plain made its ``str``."""
    import torch

    def convert(value):
        if isinstance(value, (enum.Enum, torch.device)):
            return value
        if isinstance(value, dict):
            return {str(k): convert(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [convert(v) for v in value]
        return plain(value)

    values = config.final_config_dict if hasattr(config, "final_config_dict") else dict(config)
    return SavedConfig(convert(values))


def register_safe_globals() -> None:
    """Allow-list :class:`SavedConfig` and RecBole's enums for ``torch.load(..., weights_only=True)``."""
    import torch

    torch.serialization.add_safe_globals([SavedConfig, *_recbole_enums()])


_TAG = "__recbole_adaptssr__"


def encode_other_parameter(values: dict) -> dict:
    """A model's ``other_parameter()`` in types the weights-only unpickler accepts.

    Tensors and plain values stay as they are; numpy arrays and scipy sparse matrices become tagged dicts of
    tensors; ``nn.Module`` values are left out (their weights are in the state dict already).
    """
    import numpy
    import torch

    def encode(value):
        if value is None or isinstance(value, (bool, int, float, str, torch.Tensor)):
            return value
        if isinstance(value, torch.nn.Module):
            return {_TAG: "module"}
        if isinstance(value, numpy.ndarray):
            return {_TAG: "ndarray", "data": torch.from_numpy(numpy.ascontiguousarray(value))}
        if hasattr(value, "tocoo") and hasattr(value, "format"):  # scipy sparse matrix
            coo = value.tocoo()
            return {_TAG: "sparse", "format": value.format, "shape": list(coo.shape),
                    "row": torch.from_numpy(coo.row.astype(numpy.int64)),
                    "col": torch.from_numpy(coo.col.astype(numpy.int64)),
                    "data": torch.from_numpy(numpy.ascontiguousarray(coo.data))}
        if isinstance(value, dict):
            return {k: encode(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [encode(v) for v in value]
        return plain(value)

    return {key: encode(value) for key, value in (values or {}).items()}


def decode_other_parameter(values: dict) -> dict:
    """Inverse of :func:`encode_other_parameter`; module placeholders are dropped."""

    def decode(value):
        if isinstance(value, dict) and _TAG in value:
            kind = value[_TAG]
            if kind == "ndarray":
                return value["data"].numpy()
            if kind == "sparse":
                from scipy.sparse import coo_matrix

                matrix = coo_matrix((value["data"].numpy(), (value["row"].numpy(), value["col"].numpy())),
                                    shape=tuple(value["shape"]))
                return matrix.asformat(value["format"])
            return _DROP
        if isinstance(value, dict):
            return {k: decode(v) for k, v in value.items()}
        if isinstance(value, list):
            return [decode(v) for v in value]
        return value

    decoded = {key: decode(value) for key, value in (values or {}).items()}
    return {key: value for key, value in decoded.items() if value is not _DROP}


_DROP = object()


def save_trainer_checkpoint(trainer, epoch, saved_model_file, verbose=True) -> None:
    """RecBole's ``Trainer._save_checkpoint`` contract (same keys), with a weights-only loadable payload, written
    atomically (temporary file, fsync, rename: a failed write leaves the previous checkpoint intact and the error
    names the path) and carrying a ``"checksum"`` of its contents (see :mod:`recbole_adaptssr.checkpoint`)."""
    from recbole.utils import set_color

    from recbole_adaptssr.checkpoint import save_payload
    from recbole_adaptssr.data.fingerprint import checkpoint_record

    config = trainer.config
    if not config["single_spec"] and config["local_rank"] != 0:
        return
    state = {
        "config": saved_config(config),
        "data": checkpoint_record(config),
        "epoch": epoch,
        "cur_step": trainer.cur_step,
        "best_valid_score": float(trainer.best_valid_score),
        "state_dict": trainer.model.state_dict(),
        "other_parameter": encode_other_parameter(trainer.model.other_parameter()),
        "optimizer": trainer.optimizer.state_dict(),
    }
    save_payload(state, saved_model_file)
    if verbose:
        trainer.logger.info(set_color("Saving current", "blue") + f": {saved_model_file}")


def safe_checkpoints() -> None:
    """Make RecBole's trainers save weights-only loadable checkpoints, and RecBole's models decode them."""
    from recbole.model.abstract_recommender import AbstractRecommender
    from recbole.trainer import trainer as rb_trainer

    register_safe_globals()
    trainer_cls = rb_trainer.Trainer
    if getattr(trainer_cls._save_checkpoint, "_adaptssr_safe", False):
        return

    def _save_checkpoint(self, epoch, verbose=True, **kwargs):
        save_trainer_checkpoint(self, epoch, kwargs.pop("saved_model_file", self.saved_model_file), verbose)

    def save_pretrained_model(self, epoch, saved_model_file):
        import torch

        state = {
            "config": saved_config(self.config),
            "epoch": epoch,
            "state_dict": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "other_parameter": encode_other_parameter(self.model.other_parameter()),
        }
        torch.save(state, saved_model_file)

    original_load = AbstractRecommender.load_other_parameter

    def load_other_parameter(self, para):
        return original_load(self, None if para is None else decode_other_parameter(para))

    _save_checkpoint._adaptssr_safe = True
    trainer_cls._save_checkpoint = _save_checkpoint
    rb_trainer.PretrainTrainer.save_pretrained_model = save_pretrained_model
    AbstractRecommender.load_other_parameter = load_other_parameter


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


def dok_update() -> None:
    """Give ``scipy.sparse.dok_matrix`` back the ``_update`` RecBole's graph models call (removed in scipy 1.12)."""
    from scipy.sparse import dok_matrix

    if hasattr(dok_matrix, "_update"):
        return

    def _update(self, data):
        self._dict.update(data)

    dok_matrix._update = _update


def default_train_neg_sampling(internal: dict, external: dict, model_type) -> None:
    """Use no training negatives for sequential ``loss_type: CE`` unless the user chose a sampling."""
    from recbole.utils import ModelType

    loss_type = external.get("loss_type", internal.get("loss_type"))
    if model_type == ModelType.SEQUENTIAL and loss_type == "CE" and "train_neg_sample_args" not in external:
        internal["train_neg_sample_args"] = None


RECBOLE_MISSING = """RecBole 1.2.1 is not installed. It is installed without its dependencies, because its ray<=2.6.3 pin \
cannot be installed next to ray[tune]>=2.40 on this stack (README, Install). From the repository root:
    bash scripts/install.sh
or, in the Python environment of recbole-adaptssr:
    pip install --no-deps recbole==1.2.1"""


def check_recbole() -> None:
    """Fail with the install command if RecBole cannot be imported (it is not a declared requirement)."""
    import importlib.util

    if importlib.util.find_spec("recbole") is None:
        raise ImportError(RECBOLE_MISSING)


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
    """Apply every shim once (idempotent). Called by our entry points, never on import."""
    global _applied
    if _applied:
        return
    check_recbole()
    numpy_aliases()
    check_ray()
    safe_checkpoints()
    fill_missing_values()
    no_anomaly_detection()
    dok_update()
    _applied = True
