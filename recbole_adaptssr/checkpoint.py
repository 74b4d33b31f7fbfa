"""Checkpoints that load with ``torch.load(..., weights_only=True)``, written atomically, with a content checksum.

Stage checkpoints (:func:`save_checkpoint`) hold only tensors and plain Python values: the model's state dict, the
stage that produced it, the plain-typed settings, the item vocabulary (token -> id, so a later fine-tune on other
atomic files can align ids), the validation result of the kept epoch and the stage's summary (validation metric,
result before training, per-epoch history).

Every file written here (stage checkpoints, pre-training resume checkpoints, and RecBole-style fine-tune checkpoints
through :func:`recbole_adaptssr.compat.save_trainer_checkpoint`) is

* **atomic** (:func:`atomic_torch_save`): serialized into a temporary file in the same folder
  (``.<name>.tmp-<pid>-<random>``), flushed and fsynced, then renamed over ``path`` (and the folder fsynced). A
  failed or interrupted write leaves the previous file as it was; the error names ``path``.
* **checksummed** (:func:`content_digest`): the payload carries ``"checksum": {"algorithm": "sha256", "digest":
  ...}``, a SHA-256 over the payload's *contents* (every tensor's dtype, shape and raw bytes, every plain value's
  type and ``repr``, dict keys in a canonical order), not over the file's bytes. The checksum travels inside the
  file (one file, one rename, nothing to keep in step), loading stays ``torch.load(path, weights_only=True)``, and
  RecBole's readers (``Trainer.resume_checkpoint``, ``evaluate(load_best_model=True)``,
  ``recbole.quick_start.load_data_and_model``) ignore the extra key.

:func:`verify_checkpoint` / :func:`load_checkpoint` reject, with the path and the reason, an empty file, a file that
is not a complete torch archive (truncated, or not a checkpoint), a payload whose recomputed checksum differs from
the recorded one (a flipped byte in a tensor or a value; torch itself does not check its archive's CRCs), and a
stage checkpoint of this format version without a checksum. Files of format version 1 (before checksums) still load.
"""

from __future__ import annotations

import enum
import hashlib
import os
import zipfile

import torch

from recbole_adaptssr.compat import plain
from recbole_adaptssr.files import atomic_write

FORMAT_VERSION = 2  # 2: carries a checksum; 1 (no checksum) is still read
READABLE_VERSIONS = (1, 2)
CHECKSUM_KEY = "checksum"
ALGORITHM = "sha256"


class CheckpointError(ValueError):
    """A checkpoint that cannot be trusted: empty, truncated, altered, or not one of ours. Names the path."""

    def __init__(self, path, problem: str):
        self.path, self.problem = os.fspath(path), problem
        super().__init__(f"checkpoint {self.path}: {problem}")


class CheckpointWriteError(OSError):
    """Writing a checkpoint failed; the previous file at ``path`` (if any) is intact."""

    def __init__(self, path, error: BaseException):
        self.path = os.fspath(path)
        super().__init__(f"could not write checkpoint {self.path} ({type(error).__name__}: {error}); "
                         "the previous file, if any, is unchanged")


# ----------------------------------------------------------------------------------------------------- checksum
def content_digest(payload: dict) -> str:
    """SHA-256 (hex) over ``payload``'s contents, ``"checksum"`` itself left out; identical before saving and after
    ``torch.load(weights_only=True)``."""
    h = hashlib.sha256()
    _feed(h, {k: v for k, v in payload.items() if k != CHECKSUM_KEY})
    return h.hexdigest()


def _feed(h, value) -> None:
    if isinstance(value, torch.Tensor):
        t = value.detach()
        if t.layout != torch.strided:
            t = t.to_dense()
        t = t.cpu().contiguous().reshape(-1)
        h.update(f"T{t.dtype}{tuple(value.shape)}:".encode())
        if t.numel():
            h.update(t.view(torch.uint8).numpy().tobytes())
    elif isinstance(value, dict):
        h.update(f"D{len(value)}:".encode())
        for key in sorted(value, key=lambda k: (type(k).__name__, repr(k))):
            _feed(h, key)
            _feed(h, value[key])
    elif isinstance(value, (list, tuple)):
        h.update(f"L{len(value)}:".encode())
        for item in value:
            _feed(h, item)
    elif value is None or isinstance(value, (bool, int, float, str, bytes)):
        text = repr(value)
        h.update(f"S{type(value).__name__}:{len(text)}:{text}".encode())
    elif isinstance(value, enum.Enum):
        h.update(f"E{type(value).__name__}.{value.name};".encode())
    elif isinstance(value, torch.device):
        h.update(f"V{value};".encode())
    elif hasattr(value, "final_config_dict"):  # SavedConfig (or a RecBole Config)
        h.update(f"C{type(value).__name__}:".encode())
        _feed(h, value.final_config_dict)
    else:
        h.update(f"O{type(value).__name__}:{value!r};".encode())


def with_checksum(payload: dict) -> dict:
    """``payload`` plus its ``"checksum"`` entry."""
    body = {k: v for k, v in payload.items() if k != CHECKSUM_KEY}
    return {**body, CHECKSUM_KEY: {"algorithm": ALGORITHM, "digest": content_digest(body)}}


# ----------------------------------------------------------------------------------------------------- writing
def atomic_torch_save(payload, path) -> str:
    """``torch.save(payload)`` to a temporary file beside ``path``, fsync, rename into place (see the module
    docstring). Raises :class:`CheckpointWriteError` naming ``path``; the previous file is left intact."""
    try:
        # default protocol: the weights-only unpickler rejects protocol 4
        return atomic_write(path, lambda f: torch.save(payload, f))
    except Exception as error:  # KeyboardInterrupt, SystemExit propagate as they are (previous checkpoint intact)
        raise CheckpointWriteError(os.fspath(path), error) from error


def save_payload(payload: dict, path) -> str:
    """Write ``payload`` (tensors and plain values) with its checksum, atomically; return ``path``."""
    return atomic_torch_save(with_checksum(payload), path)


def save_checkpoint(path, model, stage: str, config, item_vocabulary, valid_result=None, epoch=None,
                    summary: dict | None = None) -> str:
    """Write a stage checkpoint to ``path`` (folders created, atomically, with its checksum) and return the path.
    ``summary``: the stage's ``valid_metric``, ``initial_valid_result`` and ``history`` (a resumed pipeline reads
    the results of finished stages back from here)."""
    state = {
        "format_version": FORMAT_VERSION,
        "model": type(model).__name__,
        "stage": stage,
        "epoch": epoch,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "config": plain(config),
        "item_vocabulary": {str(token): index for index, token in enumerate(item_vocabulary)},
        "valid_result": plain(valid_result),
        "summary": plain(summary or {}),
    }
    return save_payload(state, path)


# ----------------------------------------------------------------------------------------------------- reading
def verify_checkpoint(path, map_location="cpu", require_checksum: bool = False) -> dict:
    """Load ``path`` with ``weights_only=True`` and check it; return the payload.

    Raises ``FileNotFoundError`` (missing) or :class:`CheckpointError` naming the path and the problem: empty,
    truncated or not a torch archive, unreadable, not a dict, checksum mismatch, or (``require_checksum``, or a
    stage checkpoint of this format version) no checksum."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    size = os.path.getsize(path)
    if size == 0:
        raise CheckpointError(path, "the file is empty (0 bytes): it was never written completely")
    if not _is_zip(path):
        raise CheckpointError(path, f"not a complete torch zip archive ({size} bytes): truncated, or not written by "
                                    "torch.save")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # noqa: BLE001 - torch raises RuntimeError, UnpicklingError, EOFError, KeyError...
        raise CheckpointError(path, f"unreadable ({size} bytes; corrupted?): {type(error).__name__}: "
                                    f"{str(error).splitlines()[0] if str(error) else ''}") from None
    if not isinstance(payload, dict):
        raise CheckpointError(path, f"holds a {type(payload).__name__}, not a checkpoint dict")
    recorded = payload.get(CHECKSUM_KEY)
    if recorded is None:
        if require_checksum or payload.get("format_version", 0) >= 2:
            raise CheckpointError(path, "has no checksum: written by an older or foreign writer, or altered")
        return payload
    if not isinstance(recorded, dict) or recorded.get("algorithm") != ALGORITHM:
        raise CheckpointError(path, f"unknown checksum record {recorded!r}")
    actual = content_digest(payload)
    if actual != recorded.get("digest"):
        raise CheckpointError(path, f"contents altered or corrupted: their SHA-256 is {actual[:16]}..., the "
                                    f"checkpoint records {str(recorded.get('digest'))[:16]}...")
    return payload


def _is_zip(path: str) -> bool:
    try:
        return zipfile.is_zipfile(path)
    except Exception:  # noqa: BLE001 - a damaged end record can make zipfile raise (BadZipFile, ...)
        return False


def load_checkpoint(path, map_location="cpu") -> dict:
    """Read a stage checkpoint written by :func:`save_checkpoint`, always with ``weights_only=True``, verified
    (see :func:`verify_checkpoint`)."""
    state = verify_checkpoint(path, map_location=map_location)
    if state.get("format_version") not in READABLE_VERSIONS:
        raise CheckpointError(path, f"not a recbole-adaptssr checkpoint (format_version {FORMAT_VERSION})")
    return state
