"""What a run's data is: a content digest of each of its files (the behaviour log, the task manifest, each
selected task file) and of the item vocabulary. Every run folder (``run.json``) and every checkpoint records it,
so that resuming or fine-tuning on other data is refused with what changed (``allow_data_change: True`` lets it
through) and a checkpoint whose vocabulary barely covers the data is refused with the overlap figure.

A file's digest is BLAKE2b-128 of its bytes, computed once per content: it is remembered per process and, beside
the sequence cache (``.adaptssr-cache/`` beside the data set folder, or ``sequence_cache_dir``), in a small JSON
record keyed by the file's size, mtime, ctime and inode (any write changes its ctime, which no tool sets back),
so an unchanged log of gigabytes is not read again by the next command. A file whose stat changed but whose bytes
did not (a copy, a touch) keeps its record. The record also keeps what other modules concluded about that content
(:func:`remember`, :func:`recall`: the data check's verdicts, :mod:`recbole_adaptssr.data.validation`).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading

from recbole_adaptssr.files import atomic_write

RECORD_SUFFIX = ".digest.json"
_memo: dict = {}
_lock = threading.Lock()


def _stat(path: str) -> dict:
    st = os.stat(path)
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns, "ino": st.st_ino}


def _record_path(path: str, cache_dir: str | None) -> str:
    from recbole_adaptssr.data.sequence_cache import cache_path

    return cache_path(path, cache_dir, suffix=RECORD_SUFFIX)


def file_record(path: str, cache_dir: str | None = None) -> dict:
    """``{"file", "size", "blake2b", "flags"}`` of ``path`` (``flags``: whether it holds a quote character, a
    carriage return, a NUL byte), computed once per content (see the module docstring)."""
    from recbole_adaptssr.data.sequence_cache import scan_source

    path = os.path.abspath(path)
    stat = _stat(path)
    with _lock:
        hit = _memo.get(path)
        if hit is not None and hit[0] == stat:
            return dict(hit[1])
    record_file = _record_path(path, cache_dir)
    saved = _read_record(record_file)
    if saved.get("stat") == stat:
        record = {k: saved[k] for k in _FIELDS}
    else:
        digest, flags = scan_source(path)
        record = {"file": os.path.basename(path), "size": stat["size"], "blake2b": digest, "flags": flags}
        checks = saved.get("checks", {}) if saved.get("blake2b") == digest else {}  # same bytes: same verdicts
        if _stat(path) == stat:  # not changed while it was read
            _write_record(record_file, {**record, "stat": stat, "checks": checks})
    with _lock:
        _memo[path] = (stat, record)
    return dict(record)


_FIELDS = ("file", "size", "blake2b", "flags")


def _read_record(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            saved = json.load(f)
    except (OSError, ValueError):
        return {}
    valid = isinstance(saved, dict) and all(k in saved for k in (*_FIELDS, "stat"))
    return saved if valid else {}


def recall(path: str, cache_dir: str | None, key: str):
    """What was remembered under ``key`` about ``path``'s current content, or None."""
    record = file_record(path, cache_dir)
    saved = _read_record(_record_path(os.path.abspath(path), cache_dir))
    if saved.get("blake2b") != record["blake2b"]:
        return None
    return (saved.get("checks") or {}).get(key)


def remember(path: str, cache_dir: str | None, key: str, value) -> None:
    """Keep ``value`` (plain JSON) under ``key`` for ``path``'s current content (best effort)."""
    record = file_record(path, cache_dir)
    record_file = _record_path(os.path.abspath(path), cache_dir)
    saved = _read_record(record_file)
    if saved.get("blake2b") != record["blake2b"]:
        return
    _write_record(record_file, {**saved, "checks": {**(saved.get("checks") or {}), key: value}})


def _write_record(path: str, record: dict) -> None:
    try:
        atomic_write(path, lambda f: f.write(json.dumps(record, indent=1)), binary=False)
    except OSError:
        pass  # a folder that cannot be written only costs reading the file again next time


def clear_memo() -> None:
    """Forget the digests this process computed (tests)."""
    with _lock:
        _memo.clear()


def fingerprint(path: str, cache_dir: str | None = None) -> dict:
    """``{"file", "size", "blake2b"}`` of one file (what checkpoints and run folders record)."""
    record = file_record(path, cache_dir)
    return {k: record[k] for k in ("file", "size", "blake2b")}


def behaviour_log_path(config) -> str:
    return os.path.join(str(config["data_path"]), f"{config['dataset']}.inter")


def data_fingerprint(folder: str, name: str, tasks=(), cache_dir: str | None = None) -> dict:
    """The fingerprint of a data set as a run uses it: its behaviour log, its manifest (when there is one) and
    the files of ``tasks``."""
    log = os.path.join(folder, f"{name}.inter")
    manifest = os.path.join(folder, f"{name}.tasks.json")
    return {"dataset": name,
            "behaviour_log": fingerprint(log, cache_dir) if os.path.isfile(log) else None,
            "manifest": fingerprint(manifest, cache_dir) if os.path.isfile(manifest) else None,
            "tasks": {str(t): fingerprint(os.path.join(folder, f"{name}.{t}"), cache_dir) for t in tasks}}


def vocabulary_fingerprint(tokens) -> dict:
    """``{"tokens", "blake2b"}`` of an item vocabulary (tokens in id order)."""
    digest = hashlib.blake2b(digest_size=16)
    tokens = list(tokens)
    for token in tokens:
        digest.update(str(token).encode("utf-8") + b"\n")
    return {"tokens": len(tokens), "blake2b": digest.hexdigest()}


def _setting(config, key):
    try:
        return config[key]
    except KeyError:  # a plain dict of settings
        return None


def checkpoint_record(config, item_vocabulary=None) -> dict:
    """What a checkpoint records of its data: the behaviour log's fingerprint (None where the settings name no
    data set with a ``.inter``), the task it was fine-tuned on (if any) and the item vocabulary's fingerprint."""
    folder, name, cache_dir = (_setting(config, k) for k in ("data_path", "dataset", "sequence_cache_dir"))
    log = os.path.join(str(folder), f"{name}.inter") if folder is not None and name is not None else None
    record = {"dataset": None if name is None else str(name),
              "behaviour_log": fingerprint(log, cache_dir) if log and os.path.isfile(log) else None}
    task = _setting(config, "downstream_task")
    if task and log:
        path = os.path.join(str(folder), f"{name}.{task}")
        record["task"] = {str(task): fingerprint(path, cache_dir)} if os.path.isfile(path) else None
    if item_vocabulary is not None:
        record["vocabulary"] = vocabulary_fingerprint(item_vocabulary)
    return record


def _describe(entry) -> str:
    if not entry:
        return "absent"
    return f"{entry['size']:,} bytes, blake2b {entry['blake2b'][:12]}..."


def differences(then: dict | None, now: dict | None) -> list:
    """What changed between two fingerprints, one line per file (files only one side knows are not compared,
    except the behaviour log and the manifest)."""
    then, now = then or {}, now or {}
    changes = []
    for key, what in (("behaviour_log", "behaviour log"), ("manifest", "task manifest")):
        a, b = then.get(key), now.get(key)
        if (a or {}).get("blake2b") != (b or {}).get("blake2b"):
            name = (b or a or {}).get("file", key)
            changes.append(f"{what} {name}: then {_describe(a)}, now {_describe(b)}")
    for task in sorted(set(then.get("tasks") or {}) & set(now.get("tasks") or {})):
        a, b = then["tasks"][task], now["tasks"][task]
        if a.get("blake2b") != b.get("blake2b"):
            changes.append(f"task file {b.get('file', task)}: then {_describe(a)}, now {_describe(b)}")
    return changes


def vocabulary_overlap(vocabulary, item_counts: dict) -> tuple:
    """``(share of behaviours, share of distinct items)`` of a log (``{item token: count}``) whose item the
    ``vocabulary`` (token -> id) knows; behaviours outside it become the mask token when fine-tuning."""
    total = sum(item_counts.values())
    known = [token for token in item_counts if token in vocabulary]
    behaviours = sum(item_counts[token] for token in known) / total if total else 0.0
    items = len(known) / len(item_counts) if item_counts else 0.0
    return behaviours, items
