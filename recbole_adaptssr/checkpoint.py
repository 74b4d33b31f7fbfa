"""Checkpoints that load with ``torch.load(..., weights_only=True)``, written atomically, with a content checksum.

Stage checkpoints (:func:`save_checkpoint`) hold only tensors and plain Python values: the model's state dict, the
stage that produced it, the plain-typed settings, the item vocabulary (token -> id, so a later fine-tune on other
atomic files can align ids), the data it was trained on (``"data"``: the behaviour log's and the vocabulary's
fingerprints, :mod:`recbole_adaptssr.data.fingerprint`), the validation result of the kept epoch and the stage's
summary (validation metric, result before training, per-epoch history).

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
checkpoint of our format (it has a ``format_version``) without a checksum: there is no downgrade path (format 1,
which had none, is not read).

**Integrity, not authenticity.** The checksum detects corruption; anyone who can edit a checkpoint can recompute
it. For checkpoints on shared storage, set a key (the setting ``checkpoint_hmac_key``, or the environment variable
``RECBOLE_ADAPTSSR_HMAC_KEY``; the setting wins): every checkpoint written is then signed (``"signature"``:
HMAC-SHA256 of the checksum under the key), and every checkpoint read must carry a valid signature under that key
(an unsigned one, or one signed with another key or altered, is refused). Without a key, a signature is not
checked. The setting is taken out of the settings (never logged, recorded in ``run.json`` or saved in a
checkpoint): prefer the environment variable, which is in no file at all.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import os
import zipfile
from contextlib import contextmanager

import torch

from recbole_adaptssr.files import atomic_write
from recbole_adaptssr.plain_values import plain

FORMAT_VERSION = 3  # 3: records its data; 2: a checksum only (still read); 1 (no checksum) is refused
READABLE_VERSIONS = (2, 3)
CHECKSUM_KEY = "checksum"
SIGNATURE_KEY = "signature"
ALGORITHM = "sha256"
SIGNATURE_ALGORITHM = "hmac-sha256"
HMAC_KEY_ENV = "RECBOLE_ADAPTSSR_HMAC_KEY"
_UNCOVERED = (CHECKSUM_KEY, SIGNATURE_KEY)  # entries the content digest leaves out
_signing_key: str | None = None  # set by the Config of this process (checkpoint_hmac_key)


class CheckpointError(ValueError):
    """A checkpoint that cannot be trusted: empty, truncated, altered, or not one of ours. Names the path."""

    def __init__(self, path, problem: str):
        self.path, self.problem = os.fspath(path), problem
        super().__init__(f"checkpoint {self.path}: {problem}")

    def __reduce__(self):  # picklable (a worker process or a Ray task sends it back): rebuilt from its fields
        return type(self), (self.path, self.problem)


class CheckpointWriteError(OSError):
    """Writing a checkpoint failed; the previous file at ``path`` (if any) is intact."""

    def __init__(self, path, error: BaseException):
        self.path = os.fspath(path)
        super().__init__(f"could not write checkpoint {self.path} ({type(error).__name__}: {error}); "
                         "the previous file, if any, is unchanged")


# ----------------------------------------------------------------------------------------------------- signing key
def set_signing_key(key: str | None) -> None:
    """The key of ``checkpoint_hmac_key`` (None: the environment's :data:`HMAC_KEY_ENV`, if any)."""
    global _signing_key
    _signing_key = key or None


@contextmanager
def signing_key_in_environment():
    """While the block runs, :data:`HMAC_KEY_ENV` holds this process's key (the setting's, when one is set), so the
    processes it starts (an executor's workers, a local Ray) sign and verify as it does; then as it was."""
    saved = os.environ.get(HMAC_KEY_ENV)
    if _signing_key:
        os.environ[HMAC_KEY_ENV] = _signing_key
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(HMAC_KEY_ENV, None)
        else:
            os.environ[HMAC_KEY_ENV] = saved


def signing_key() -> bytes | None:
    """The key that signs and verifies checkpoints in this process, or None."""
    key = _signing_key or os.environ.get(HMAC_KEY_ENV) or None
    return None if key is None else key.encode("utf-8")


def _signature(key: bytes, digest: str) -> str:
    return hmac.new(key, digest.encode("ascii"), hashlib.sha256).hexdigest()


# ----------------------------------------------------------------------------------------------------- checksum
def content_digest(payload: dict) -> str:
    """SHA-256 (hex) over ``payload``'s contents, ``"checksum"`` and ``"signature"`` left out; identical before
    saving and after ``torch.load(weights_only=True)``."""
    h = hashlib.sha256()
    _feed(h, {k: v for k, v in payload.items() if k not in _UNCOVERED})
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
    """``payload`` plus its ``"checksum"`` entry, and its ``"signature"`` when a signing key is set."""
    body = {k: v for k, v in payload.items() if k not in _UNCOVERED}
    digest = content_digest(body)
    out = {**body, CHECKSUM_KEY: {"algorithm": ALGORITHM, "digest": digest}}
    key = signing_key()
    if key is not None:
        out[SIGNATURE_KEY] = {"algorithm": SIGNATURE_ALGORITHM, "digest": _signature(key, digest)}
    return out


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
    from recbole_adaptssr.data.fingerprint import checkpoint_record

    state = {
        "format_version": FORMAT_VERSION,
        "model": type(model).__name__,
        "stage": stage,
        "epoch": epoch,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "config": plain(config),
        "item_vocabulary": {str(token): index for index, token in enumerate(item_vocabulary)},
        "data": checkpoint_record(config, item_vocabulary),
        "valid_result": plain(valid_result),
        "summary": plain(summary or {}),
    }
    return save_payload(state, path)


# ----------------------------------------------------------------------------------------------------- reading
def verify_checkpoint(path, map_location="cpu", require_checksum: bool = False) -> dict:
    """Load ``path`` with ``weights_only=True`` and check it; return the payload.

    Raises ``FileNotFoundError`` (missing) or :class:`CheckpointError` naming the path and the problem: empty,
    truncated or not a torch archive, unreadable, not a dict, checksum mismatch, no checksum (``require_checksum``,
    or a checkpoint of our format), or, with a signing key, no valid signature."""
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
    key = signing_key()
    if recorded is None:
        if require_checksum or "format_version" in payload:
            raise CheckpointError(path, "has no checksum: written by an older or foreign writer, or altered (a "
                                        "checkpoint of format_version 1, before checksums, is not read: pre-train "
                                        "it again)")
        if key is not None:
            raise CheckpointError(path, "is not signed, and a signing key is set (checkpoint_hmac_key or "
                                        f"{HMAC_KEY_ENV}): it cannot be trusted")
        return payload
    if not isinstance(recorded, dict) or recorded.get("algorithm") != ALGORITHM:
        raise CheckpointError(path, f"unknown checksum record {recorded!r}")
    actual = content_digest(payload)
    if actual != recorded.get("digest"):
        raise CheckpointError(path, f"contents altered or corrupted: their SHA-256 is {actual[:16]}..., the "
                                    f"checkpoint records {str(recorded.get('digest'))[:16]}...")
    if key is not None:
        _verify_signature(path, payload.get(SIGNATURE_KEY), key, actual)
    return payload


def _verify_signature(path: str, signature, key: bytes, digest: str) -> None:
    if signature is None:
        raise CheckpointError(path, "is not signed, and a signing key is set (checkpoint_hmac_key or "
                                    f"{HMAC_KEY_ENV}): written without the key, or its signature was removed")
    if not isinstance(signature, dict) or signature.get("algorithm") != SIGNATURE_ALGORITHM or \
            not hmac.compare_digest(str(signature.get("digest")), _signature(key, digest)):
        raise CheckpointError(path, "its signature does not match the signing key: signed with another key, or "
                                    "altered and re-checksummed")


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
        raise CheckpointError(path, f"not a recbole-adaptssr checkpoint of a format this version reads "
                                    f"(format_version {state.get('format_version')!r}; readable: "
                                    f"{', '.join(map(str, READABLE_VERSIONS))})")
    return state
