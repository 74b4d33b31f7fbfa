"""A cached, memory-mapped copy of a behaviour log (``NAME.inter``), grouped per user, built once per data set.

RecBole reads an atomic file with pandas' Python parser (about 63 s for 11M behaviours here), and every stage,
task and seed of a pipeline needs the same thing from it: each user's behaviours in time order. This module reads
the log once with pyarrow's CSV reader, checks that it reads exactly as RecBole's and our task loader's parsers
would, and writes a :class:`BehaviourLog` to one file that later runs map into memory:

* ``users``: user tokens in order of first appearance in the file (= RecBole's remapped ids 1..n);
* ``items``: item tokens in order of first appearance (= RecBole's remapped item ids 1..m);
* ``indptr``, ``log``: CSR rows, user by user, of item ids (1-based into ``items``) sorted by
  (user, timestamp, file order), the timestamp compared as float64: the order pre-training and the downstream
  tasks both use (exact for integer timestamps below 2^53; :mod:`recbole_adaptssr.data.validation` refuses a log
  where float64 would order a user's behaviours differently from their exact values).

The most recent ``L`` behaviours of any user, for any ``L``, are a slice of these rows (:meth:`BehaviourLog.recent`).

**When the cache is used.** Only when it is exact. The fast reader is used for a log that has no quote character,
no carriage return and no NUL byte (where pandas' parsers and pyarrow's could disagree), whose selected columns
are ``user_id``/``item_id``/``timestamp`` with no token read as missing by pandas (``""``, ``NA``, ...), whose
timestamps all parse to the same finite float under Python's ``float`` and ``pandas.to_numeric``, and whose rows all
have the header's number of fields. Otherwise the reason is logged once and the data set is read the usual way.

**Invalidation.** The cache file records the source's size, mtime, ctime, inode and a BLAKE2b digest of its full
content. If size, mtime_ns, ctime_ns and inode all match, the cache is valid (any write to the file changes its
ctime, which no tool can set back). Otherwise the source is hashed again: the same content (a copied or touched
file) keeps the cache, whose recorded stat is refreshed; a different content rebuilds it.
**Integrity.** The file holds a BLAKE2b digest of its payload, checked on every load together with its size,
magic and format version: a truncated or corrupt file is reported and rebuilt, never used.
**Writing.** The file is written atomically (temporary file, fsync, rename; :func:`recbole_adaptssr.files.atomic_write`)
into ``DATA/.adaptssr-cache/``, beside the data set folder ``DATA/NAME/`` (the converters' folder keeps only their
own files), or into ``sequence_cache_dir``. A file there that does not start with this format's magic may be
anyone's: it is never overwritten (the log is read without writing the cache, with a warning). A folder that
cannot be written only costs the cache.
"""

from __future__ import annotations

import hashlib
import json
import logging
import mmap
import os
import struct
import threading
import time
from dataclasses import dataclass

import numpy as np

from recbole_adaptssr.files import atomic_write

log = logging.getLogger(__name__)

MAGIC = b"ADSSRSEQ"
FORMAT_VERSION = 2  # 2: one order (float64); 1 also held a float32 order
CACHE_FOLDER = ".adaptssr-cache"
SUFFIX = ".seqcache"
USER_FIELD, ITEM_FIELD, TIME_FIELD = "user_id", "item_id", "timestamp"
_ALIGN = 64
_BLOCK = 1 << 24
# pandas reads these as missing even with dtype=str (RecBole's loader drops such rows): never cached
_NA_STRINGS = frozenset(
    {"", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>",
     "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"}
)
_ARRAYS = ("users_blob", "items_blob", "indptr", "log")


class CacheUnavailable(Exception):
    """The log cannot be cached exactly (the reason is the message); it is read the usual way."""


@dataclass
class BehaviourLog:
    """A behaviour log grouped per user (see the module docstring). Arrays may be read-only memory maps."""

    users: list
    items: list
    indptr: np.ndarray
    log: np.ndarray
    source: str = ""

    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_behaviours(self) -> int:
        return int(self.indptr[-1])

    def counts(self) -> np.ndarray:
        return np.diff(self.indptr)

    def recent(self, max_len: int, rows: np.ndarray | None = None):
        """``(matrix, lengths, counts)`` of ``rows`` (default: every user, in order): the most recent ``max_len``
        item ids (1-based into ``items``), chronological, left-aligned, 0-padded, as int64."""
        data = self.log
        ends = self.indptr[1:] if rows is None else self.indptr[1:][rows]
        counts = np.diff(self.indptr) if rows is None else ends - self.indptr[:-1][rows]
        lengths = np.minimum(counts, max_len)
        start = ends - lengths
        offsets = np.arange(max_len)
        if len(data) == 0:
            return np.zeros((len(lengths), max_len), np.int64), lengths.astype(np.int64), counts.astype(np.int64)
        itype = np.int32 if len(data) < 2**31 - max_len else np.int64  # few, narrow passes over (users x L)
        index = np.empty((len(lengths), max_len), dtype=itype)
        np.add(start.astype(itype)[:, None], offsets.astype(itype)[None, :], out=index)
        np.minimum(index, len(data) - 1, out=index)
        matrix = np.take(data, index).astype(np.int64)
        del index
        matrix[offsets[None, :] >= lengths[:, None]] = 0
        return matrix, lengths.astype(np.int64), counts.astype(np.int64)

    def rows_items(self, rows: np.ndarray) -> np.ndarray:
        """The behaviours (item ids, 1-based) of ``rows`` concatenated row after row, each in time order (f64)."""
        starts, ends = self.indptr[:-1][rows], self.indptr[1:][rows]
        lengths = ends - starts
        total = int(lengths.sum())
        if total == 0:
            return np.zeros(0, dtype=np.int64)
        # position k of the output reads log[starts[row(k)] + (k - first output position of row(k))]
        shift = np.repeat(starts - (np.cumsum(lengths) - lengths), lengths)
        return np.asarray(self.log)[np.arange(total, dtype=np.int64) + shift]


# ---------------------------------------------------------------------------------------------------- source files
def _stat(path: str) -> dict:
    st = os.stat(path)
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns, "ino": st.st_ino,
            "dev": st.st_dev}


def scan_source(path: str) -> tuple[str, dict]:
    """(BLAKE2b-128 hex digest of the file, which of ``"``, CR, NUL it holds), in one pass."""
    digest = hashlib.blake2b(digest_size=16)
    flags = {"quote": False, "cr": False, "nul": False}
    with open(path, "rb", buffering=0) as f:
        while True:
            block = f.read(_BLOCK)
            if not block:
                break
            digest.update(block)
            flags["quote"] = flags["quote"] or b'"' in block
            flags["cr"] = flags["cr"] or b"\r" in block
            flags["nul"] = flags["nul"] or b"\x00" in block
    return digest.hexdigest(), flags


def read_header(path: str) -> list[str]:
    """The header's ``field:type`` entries, read as RecBole reads them (first line, last character dropped)."""
    with open(path, "r", encoding="utf-8") as f:
        head = f.readline()[:-1]
    return head.split("\t")


def read_log(path: str) -> BehaviourLog:
    """Read ``path`` (a tab-separated atomic ``.inter``) into a :class:`BehaviourLog`; ``CacheUnavailable`` when
    pyarrow's reading could differ from pandas' (RecBole's and the task loader's)."""
    try:
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.csv as pacsv
    except ImportError:
        raise CacheUnavailable("pyarrow is not installed") from None
    import pandas as pd

    header = read_header(path)
    names = [entry.split(":")[0] for entry in header]
    if len(set(names)) != len(names):
        raise CacheUnavailable(f"the header repeats a field name: {header}")
    columns = {}
    for want, kinds in ((USER_FIELD, ("token",)), (ITEM_FIELD, ("token",)), (TIME_FIELD, ("float",))):
        entries = [e for e in header if e.split(":")[0] == want]
        if not entries or _field_type(entries[0]) not in kinds:
            raise CacheUnavailable(f"the header has no field {want}:{kinds[0]} (it has {header})")
        columns[want] = entries[0]
    try:
        table = pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(skip_rows=1, column_names=header, block_size=_BLOCK, use_threads=True),
            parse_options=pacsv.ParseOptions(delimiter="\t", quote_char=False, double_quote=False, escape_char=False,
                                             newlines_in_values=False, ignore_empty_lines=True),
            convert_options=pacsv.ConvertOptions(include_columns=[columns[f] for f in (USER_FIELD, ITEM_FIELD,
                                                                                       TIME_FIELD)],
                                                 column_types={c: pa.string() for c in columns.values()},
                                                 strings_can_be_null=False, null_values=[],
                                                 quoted_strings_can_be_null=False),
        )
    except (pa.ArrowInvalid, UnicodeDecodeError) as error:
        raise CacheUnavailable(f"pyarrow cannot read it as a plain tab-separated file ({error})") from None
    codes, uniques = {}, {}
    for field in (USER_FIELD, ITEM_FIELD, TIME_FIELD):
        column = table.column(columns[field])
        unique = pc.unique(column)  # in order of first appearance
        codes[field] = pc.index_in(column, value_set=unique).to_numpy().astype(np.int64, copy=False)
        uniques[field] = unique.to_pylist()
        na = _NA_STRINGS.intersection(uniques[field])
        if na:
            raise CacheUnavailable(f"field {field} holds value(s) pandas reads as missing: {sorted(na)}")
    del table
    t_float = np.array([float(s) for s in uniques[TIME_FIELD]], dtype=np.float64) if uniques[TIME_FIELD] else \
        np.zeros(0)
    t_pandas = pd.to_numeric(pd.Series(uniques[TIME_FIELD], dtype=object), errors="coerce").to_numpy(np.float64)
    if not np.all(np.isfinite(t_float)) or not np.array_equal(t_float, t_pandas):
        raise CacheUnavailable("some timestamps are not finite numbers on which Python and pandas agree")
    for field in (USER_FIELD, ITEM_FIELD):
        if any("\n" in token for token in uniques[field]):  # pragma: no cover - impossible without quotes
            raise CacheUnavailable(f"a {field} token holds a newline")
    user, item = codes[USER_FIELD], codes[ITEM_FIELD]
    t64 = t_float[codes[TIME_FIELD]]
    del codes
    n = len(user)
    same_user = user[1:] == user[:-1]
    grouped = bool(np.all(same_user | (user[1:] > user[:-1])))  # first-appearance codes: rows of a user contiguous
    if grouped and bool(np.all(~same_user | (t64[1:] >= t64[:-1]))):
        order = None  # already sorted by (user, time): the converters' layout
    else:
        order = _stable_order(user, t64)
    ids = (item + 1).astype(np.int32)
    logged = ids if order is None else ids[order]
    indptr = np.zeros(len(uniques[USER_FIELD]) + 1, dtype=np.int64)
    np.cumsum(np.bincount(user, minlength=len(uniques[USER_FIELD])), out=indptr[1:])
    assert indptr[-1] == n
    return BehaviourLog(uniques[USER_FIELD], uniques[ITEM_FIELD], indptr, logged, source=path)


def _field_type(entry: str) -> str:
    parts = entry.split(":")
    return parts[1] if len(parts) == 2 else ""


def _stable_order(user: np.ndarray, time_key: np.ndarray) -> np.ndarray:
    order = np.argsort(time_key, kind="stable")
    return order[np.argsort(user[order], kind="stable")]


# ---------------------------------------------------------------------------------------------------- cache file
def cache_path(inter_path: str, cache_dir: str | None = None, suffix: str = SUFFIX) -> str:
    """Where the cache of ``inter_path`` (``DATA/NAME/NAME.inter``) lives: ``DATA/.adaptssr-cache/``, beside the
    data set folder (not inside it: the converters' folder keeps only their own files), or ``cache_dir``; the file
    name carries a digest of the log's real path, so data sets never share a cache file (``suffix``: the kind of
    file kept there for the log, e.g. :mod:`~recbole_adaptssr.data.fingerprint`'s digest records)."""
    inter_path = os.path.abspath(inter_path)
    folder = cache_dir or os.path.join(os.path.dirname(os.path.dirname(inter_path)), CACHE_FOLDER)
    tag = hashlib.blake2b(os.path.realpath(inter_path).encode(), digest_size=6).hexdigest()
    return os.path.join(os.path.abspath(folder), f"{os.path.basename(inter_path)}-{tag}{suffix}")


def _blob(tokens: list) -> np.ndarray:
    return np.frombuffer("\n".join(tokens).encode("utf-8"), dtype=np.uint8)


def write_cache(path: str, data: BehaviourLog, source_stat: dict, source_digest: str) -> str:
    """Write ``data`` to ``path`` atomically (see the module docstring for the layout and the checks)."""
    arrays = {"users_blob": _blob(data.users), "items_blob": _blob(data.items),
              "indptr": np.ascontiguousarray(data.indptr, dtype=np.int64),
              "log": np.ascontiguousarray(data.log, dtype=np.int32)}
    specs, offset = {}, 0
    digest = hashlib.blake2b(digest_size=16)  # of the payload as written: each array, then its zero padding
    for name, array in arrays.items():
        specs[name] = {"dtype": array.dtype.str, "shape": list(array.shape), "offset": offset, "nbytes": array.nbytes}
        offset += _padded(array.nbytes)
        digest.update(memoryview(array).cast("B"))
        digest.update(bytes(_padded(array.nbytes) - array.nbytes))
    payload_size = offset
    header = {"format_version": FORMAT_VERSION, "source": {"path": os.path.abspath(data.source), **source_stat,
                                                            "blake2b": source_digest},
              "n_users": data.n_users, "n_items": len(data.items), "n_behaviours": data.n_behaviours,
              "arrays": specs, "payload_size": payload_size, "payload_blake2b": digest.hexdigest(),
              "written": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    raw = json.dumps(header).encode("utf-8")
    start = _padded(len(MAGIC) + 8 + len(raw))
    raw = raw + b" " * (start - len(MAGIC) - 8 - len(raw))

    def write(f):
        f.write(MAGIC)
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for array in arrays.values():
            f.write(memoryview(array).cast("B"))
            f.write(bytes(_padded(array.nbytes) - array.nbytes))

    return atomic_write(path, write)


def _padded(nbytes: int) -> int:
    return -(-nbytes // _ALIGN) * _ALIGN


class CorruptCache(Exception):
    """The cache file is truncated, altered or not ours (the message says which)."""


class StaleCache(CorruptCache):
    """The cache file was written by another format version of this module."""


def _read_header(f) -> tuple[dict, int]:
    lead = f.read(len(MAGIC) + 8)
    if len(lead) < len(MAGIC) + 8 or lead[:len(MAGIC)] != MAGIC:
        raise CorruptCache("not a sequence cache file (wrong magic)")
    (size,) = struct.unpack("<Q", lead[len(MAGIC):])
    raw = f.read(size)
    if len(raw) != size:
        raise CorruptCache("truncated header")
    try:
        header = json.loads(raw.decode("utf-8"))
    except ValueError:
        raise CorruptCache("unreadable header") from None
    if not isinstance(header, dict):
        raise CorruptCache("unreadable header")
    if header.get("format_version") != FORMAT_VERSION:
        raise StaleCache(f"format version {header.get('format_version')}, this code reads {FORMAT_VERSION}")
    return header, len(MAGIC) + 8 + size


def read_cache(path: str, verify: bool = True) -> tuple[BehaviourLog, dict]:
    """``(log, header)`` of a cache file, memory-mapped; ``CorruptCache`` for a damaged one."""
    with open(path, "rb") as f:
        header, start = _read_header(f)
        size = os.fstat(f.fileno()).st_size
        if size != start + header["payload_size"]:
            raise CorruptCache(f"{size:,} bytes, the header says {start + header['payload_size']:,} (truncated?)")
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    if verify:
        digest = hashlib.blake2b(memoryview(mm)[start:], digest_size=16).hexdigest()
        if digest != header["payload_blake2b"]:
            raise CorruptCache("payload checksum mismatch (the file was altered or damaged)")
    arrays = {}
    for name, spec in header["arrays"].items():
        dtype = np.dtype(spec["dtype"])
        count = int(np.prod(spec["shape"])) if spec["shape"] else 1
        arrays[name] = np.frombuffer(mm, dtype=dtype, count=count, offset=start + spec["offset"]).reshape(
            spec["shape"])
    users = bytes(arrays["users_blob"]).decode("utf-8").split("\n") if header["n_users"] else []
    items = bytes(arrays["items_blob"]).decode("utf-8").split("\n") if header["n_items"] else []
    if len(users) != header["n_users"] or len(items) != header["n_items"] \
            or arrays["indptr"][-1] != header["n_behaviours"]:
        raise CorruptCache("the arrays disagree with the header")
    data = BehaviourLog(users, items, arrays["indptr"], arrays["log"], source=header["source"]["path"])
    return data, header


# ---------------------------------------------------------------------------------------------------- load or build
_memo: dict = {}
_memo_lock = threading.Lock()
_reported: set = set()


def _report_once(key, level, message):
    if key not in _reported:
        _reported.add(key)
        log.log(level, message)


def load_behaviour_log(inter_path: str, cache_dir: str | None = None) -> BehaviourLog | None:
    """The :class:`BehaviourLog` of ``inter_path`` from its cache (built and written when missing, stale or
    damaged), or None when the log cannot be cached exactly (the reason is logged once)."""
    inter_path = os.path.abspath(inter_path)
    if not os.path.isfile(inter_path):
        return None
    stat = _stat(inter_path)
    key = (inter_path, cache_dir)
    with _memo_lock:
        hit = _memo.get(key)
        if hit is not None and hit[0] == stat:
            return hit[1]
        data = _load_or_build(inter_path, cache_dir, stat)
        if data is not None:
            _memo[key] = (stat, data)
        return data


def _load_or_build(inter_path: str, cache_dir: str | None, stat: dict) -> BehaviourLog | None:
    path = cache_path(inter_path, cache_dir)
    digest = None
    if os.path.exists(path):
        try:
            data, header = read_cache(path)
            recorded = header["source"]
            if all(recorded.get(k) == v for k, v in stat.items() if k != "dev"):
                log.info(f"sequence cache: using {path}")
                return data
            digest, flags = scan_source(inter_path)
            if digest == recorded.get("blake2b"):
                log.info(f"sequence cache: {inter_path} has the content the cache was built from; "
                         f"refreshing its recorded stat in {path}")
                _write(path, data, _stat(inter_path), digest)
                return data
            log.info(f"sequence cache: {inter_path} changed since {path} was built; rebuilding it")
        except StaleCache as error:
            log.info(f"sequence cache: {path} was written by another version ({error}); rebuilding it")
        except (CorruptCache, OSError, ValueError, KeyError, TypeError) as error:
            log.warning(f"sequence cache: {path} is damaged ({error}); rebuilding it")
    if digest is None:
        digest, flags = scan_source(inter_path)
    bad = [what for what, flag in (("a quote character", flags["quote"]), ("a carriage return", flags["cr"]),
                                   ("a NUL byte", flags["nul"])) if flag]
    if bad:
        _report_once((inter_path, "flags"), logging.INFO,
                     f"sequence cache not used for {inter_path}: it holds {' and '.join(bad)}, where the parsers "
                     "could differ; reading it the usual way")
        return None
    started = time.perf_counter()
    try:
        data = read_log(inter_path)
    except CacheUnavailable as why:
        _report_once((inter_path, "read"), logging.INFO,
                     f"sequence cache not used for {inter_path}: {why}; reading it the usual way")
        return None
    after = _stat(inter_path)
    if after != stat:  # changed while we read it: use nothing we read
        _report_once((inter_path, "moving"), logging.WARNING,
                     f"sequence cache not used: {inter_path} changed while it was read")
        return None
    log.info(f"sequence cache: read {inter_path} ({data.n_users:,} users, {data.n_behaviours:,} behaviours) in "
             f"{time.perf_counter() - started:.1f}s")
    _write(path, data, stat, digest)
    return data


def _write(path: str, data: BehaviourLog, stat: dict, digest: str) -> None:
    if os.path.lexists(path):
        try:
            with open(path, "rb") as f:
                ours = f.read(len(MAGIC)) == MAGIC
        except OSError:
            ours = False
        if not ours or os.path.islink(path) or not os.path.isfile(path):
            _report_once((path, "foreign"), logging.WARNING,
                         f"sequence cache not written: {path} exists and is not a sequence cache file")
            return
    try:
        write_cache(path, data, stat, digest)
        log.info(f"sequence cache: wrote {path}")
    except OSError as error:
        _report_once((path, "write"), logging.WARNING, f"sequence cache not written to {path}: {error}")


def clear_memo() -> None:
    """Forget the logs this process has loaded (tests; a long-lived process that wants to free the maps)."""
    with _memo_lock:
        _memo.clear()
        _reported.clear()


# ---------------------------------------------------------------------------------------------------- task users
def task_behaviours(data: BehaviourLog, id_token, max_len: int, resolve_vocabulary):
    """What a downstream task builds from the log (``AdaptSSRTaskDataset._behaviour_user_feat``), from the cache:
    ``(uids, recent, lengths, vocabulary, oov_behaviours)``.

    ``id_token``: the task's user tokens by internal id; a log row belongs to the user whose token it carries.
    ``resolve_vocabulary(tokens)`` gets the item tokens of those users' behaviours in the order the task loader
    meets them (users by id, each in time order), first appearances only, and returns ``{token: id}``; behaviours
    outside it count as ``oov_behaviours`` and take the OOV id ``len(vocabulary)``. ``recent``/``lengths`` are
    the most recent ``max_len`` behaviour ids of the users ``uids`` (those with a behaviour), as int64."""
    import pandas as pd

    rows = pd.Index(data.users, dtype=object).get_indexer(np.asarray(id_token, dtype=object))
    uids = np.flatnonzero(rows >= 0)
    rows = rows[uids]
    ordered = data.rows_items(rows)
    tokens = np.asarray(data.items, dtype=object)
    vocabulary = resolve_vocabulary(tokens[pd.unique(ordered) - 1])
    oov_id = len(vocabulary)
    remap = np.zeros(len(tokens) + 1, dtype=np.int64)  # 0 (padding) stays 0
    remap[1:] = [vocabulary.get(token, oov_id) for token in data.items]
    oov = int(np.count_nonzero(remap[ordered] == oov_id))
    recent, lengths, _ = data.recent(max_len, rows)
    return uids, remap[recent], lengths, vocabulary, oov
