#!/usr/bin/env python
"""Seeded synthetic data with learnable signal, written straight into our atomic task layout.

  python scripts/generate_synthetic.py --output data --name synth --users 10000 --seed 0
  python run_recbole_adaptssr.py --model=AdaptSSR --dataset=synth --data_path=data

Writes ``OUTPUT/NAME/`` as the converters do (README "Data layout"): ``NAME.inter`` (every user's behaviours,
the pre-training corpus), one ``NAME.<task>`` per task, the manifest ``NAME.tasks.json`` and the statistics
``NAME.stats.json`` / ``NAME.stats.md``, through the converters' staged output (``dataset_converters.common``):
the folder is built in a temporary sibling and renamed into place when complete, with the marker
``NAME.converted.json`` listing the files written.  An existing ``OUTPUT/NAME`` is replaced only if empty, or
with ``--overwrite`` if it holds nothing but an earlier generated (or converted) data set; a folder holding any
other file is never touched.

Model (details in ``scripts/SYNTHETIC.md``):

* K interest topics.  Behaviour items (``i1``..``iI``) and target items (``t1``..``tT``, a separate domain) are
  dealt evenly and at random to the topics; within a topic pool popularity is Zipf-like.
* Each user has 1..``max_user_topics`` dominant topics with Dirichlet(1) weights (the mixture theta).  A
  sequence has ``min_len``..``max_len`` behaviours (uniform), strictly increasing integer timestamps.  Each
  behaviour is, with probability ``noise``, a draw from a Zipf popularity over all items (so popularity alone is
  a nontrivial baseline), otherwise a draw from the pool of a topic picked by the user's mixture.
* ``drift`` > 0: each user also has a second mixture theta2; the behaviour at relative position p (0 first,
  1 last) uses theta2 with probability ``drift * p``.  The user's current mixture is
  ``(1 - drift) theta + drift theta2``.
* Tasks (kind from the name or ``name:kind[:classes]``), each over its own ``labelled_share`` of the users:
  multiclass (``age`` 8 classes, ``lifestatus`` 6): argmax of a random topic->class linear map of theta plus
  Gaussian noise, every class preferred by some topic;  binary (``gender``): sign of a random projection of
  theta plus noise, split at the median;  recommendation (``click``, ``like``): 1..``max_targets`` distinct
  targets per user from the target pools of its current topics (``noise`` share from target popularity);
  cvr (``cvr``): ``cvr_per_user`` (user, target) pairs, half from the user's topics, half uniform, converting
  with probability 0.05 + 0.85 x (current weight of the target's topic).  ``label_noise`` replaces that share
  of labels (classes, binary labels, recommended targets, conversions) by uniform random ones: 1.0 leaves no
  signal at all.

Same seed and options give byte-identical files (all but the marker, which records host, process and time).
Every task draws from its own generator seeded by (seed, task name), so adding or removing a task leaves the
other files unchanged.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
import zlib
from collections import Counter
from pathlib import Path

import numpy as np

from dataset_converters.common import (
    EXIT_BAD_INPUT,
    ConversionError,
    TaskSummary,
    check_token,
    finish_dataset,
    sequence_stats,
    staged_dataset_dir,
)

# Known task names and their kind (plus the class count of multiclass tasks: the paper's T1 and T2).
KNOWN_TASKS = {
    "age": ("multiclass", 8), "lifestatus": ("multiclass", 6), "life": ("multiclass", 6),
    "gender": ("binary", 2), "click": ("recommendation", 0), "like": ("recommendation", 0),
    "thumbup": ("recommendation", 0), "rec": ("recommendation", 0), "cvr": ("cvr", 0),
}
KINDS = ("multiclass", "binary", "recommendation", "cvr")
DEFAULT_CLASSES = 8
# Suffixes RecBole or our layout give a meaning to: not task names.
RESERVED = frozenset({"inter", "user", "item", "kg", "link", "net", "tasks", "stats"})
_TASK_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")

DEFAULTS = dict(users=10_000, items=5_000, targets=1_000, topics=20, min_len=10, max_len=100, noise=0.2,
                label_noise=0.1, labelled_share=1.0, tasks="age,gender,click,cvr", max_user_topics=3,
                drift=0.0, max_targets=5, cvr_per_user=4, seed=0)

CHUNK_USERS = 16_384  # behaviours are drawn and written per chunk of users (fixed: part of the output's identity)
ZIPF_C = 10.0  # P(rank k) ~ 1 / (k + ZIPF_C)
T0 = 1_600_000_000  # first timestamps fall in [T0, T0 + 10^7)
MAX_GAP = 86_400  # seconds between two behaviours: uniform in [1, MAX_GAP]
SCORE_NOISE = 0.5  # sd of the Gaussian added to class scores (multiclass) ...
BINARY_NOISE = 0.25  # ... and to the binary projection
CLASS_PREFERENCE = 2.0  # bonus of a topic's preferred class in the topic->class map
CVR_MATCH_SHARE = 0.5  # share of cvr candidates drawn from the user's own topics
CVR_BASE, CVR_GAIN = 0.05, 0.85  # P(convert) = CVR_BASE + CVR_GAIN * (user's weight on the target's topic)
_BUF = 1 << 20


# ------------------------------------------------------------------------------------------------ options
def parse_tasks(tasks) -> list[tuple[str, str, int]]:
    """``"age,gender:binary,life:multiclass:6"`` (or a list of such specs) -> [(name, kind, classes)]."""
    specs = [s.strip() for s in tasks.split(",")] if isinstance(tasks, str) else [str(s).strip() for s in tasks]
    out, seen = [], set()
    for spec in specs:
        if not spec:
            continue
        parts = spec.split(":")
        name = parts[0]
        if not _TASK_NAME.match(name) or name in RESERVED:
            raise ValueError(f"bad task name {name!r}: letters, digits, '_' or '-', starting with a letter, "
                             f"not one of {', '.join(sorted(RESERVED))}")
        if name in seen:
            raise ValueError(f"task {name!r} given twice")
        if len(parts) > 3:
            raise ValueError(f"bad task spec {spec!r}: expected name[:kind[:classes]]")
        if len(parts) == 1:
            if name not in KNOWN_TASKS:
                raise ValueError(f"unknown task {name!r}: give its kind as {name}:KIND "
                                 f"(KIND one of {', '.join(KINDS)}), or use one of {', '.join(KNOWN_TASKS)}")
            kind, classes = KNOWN_TASKS[name]
        else:
            kind = parts[1]
            if kind not in KINDS:
                raise ValueError(f"bad task spec {spec!r}: kind must be one of {', '.join(KINDS)}")
            classes = KNOWN_TASKS[name][1] if KNOWN_TASKS.get(name, ("",))[0] == kind else DEFAULT_CLASSES
            classes = {"binary": 2, "multiclass": classes}.get(kind, 0)
        if len(parts) == 3:
            if kind != "multiclass" or not parts[2].isdigit() or int(parts[2]) < 2:
                raise ValueError(f"bad task spec {spec!r}: only a multiclass task takes a class count (>= 2)")
            classes = int(parts[2])
        seen.add(name)
        out.append((name, kind, classes))
    if not out:
        raise ValueError("no tasks given")
    return out


def check_options(o: dict) -> None:
    for key in ("users", "items", "targets", "topics", "min_len", "max_user_topics", "max_targets", "cvr_per_user"):
        if int(o[key]) < 1:
            raise ValueError(f"{key} must be >= 1, got {o[key]}")
    if o["max_len"] < o["min_len"]:
        raise ValueError(f"max_len ({o['max_len']}) must be >= min_len ({o['min_len']})")
    if o["items"] < o["topics"] or o["targets"] < o["topics"]:
        raise ValueError("items and targets must be >= topics (every topic needs a pool)")
    for key in ("noise", "label_noise", "drift"):
        if not 0.0 <= o[key] <= 1.0:
            raise ValueError(f"{key} must be in [0, 1], got {o[key]}")
    if not 0.0 < o["labelled_share"] <= 1.0:
        raise ValueError(f"labelled_share must be in (0, 1], got {o['labelled_share']}")
    if o["seed"] < 0:
        raise ValueError("seed must be >= 0")


# ------------------------------------------------------------------------------------------------ the world
def zipf_ranks(rng: np.random.Generator, n, size: int) -> np.ndarray:
    """Ranks in [0, n) with P(k) ~ 1/(k + ZIPF_C); ``n`` a scalar or one pool size per draw."""
    n = np.asarray(n, dtype=np.float64)
    u = rng.random(size)
    r = np.power(n + ZIPF_C, u) * np.power(ZIPF_C, 1.0 - u) - ZIPF_C
    return np.minimum(r.astype(np.int64), (n - 1).astype(np.int64))


class Pools:
    """``n`` objects dealt evenly at random to ``k`` topics; Zipf-like popularity inside each pool and overall."""

    def __init__(self, rng: np.random.Generator, n: int, k: int):
        self.n = n
        self.topic = rng.permutation(np.arange(n) % k)  # object -> topic
        self.members = np.argsort(self.topic, kind="stable")  # pool k = members[start[k]: start[k] + size[k]]
        self.size = np.bincount(self.topic, minlength=k)
        self.start = np.concatenate([[0], np.cumsum(self.size)[:-1]])
        self.by_popularity = rng.permutation(n)  # global popularity rank -> object

    def draw(self, rng: np.random.Generator, topics: np.ndarray) -> np.ndarray:
        """One object per entry of ``topics`` from that topic's pool."""
        return self.members[self.start[topics] + zipf_ranks(rng, self.size[topics], len(topics))]

    def popular(self, rng: np.random.Generator, size: int) -> np.ndarray:
        return self.by_popularity[zipf_ranks(rng, self.n, size)]


def user_mixtures(rng: np.random.Generator, n_users: int, k: int, m: int) -> tuple[np.ndarray, np.ndarray]:
    """(topics (U, m), weights (U, m)): 1..m distinct dominant topics per user, Dirichlet(1) weights, 0 on the
    unused slots (they come last)."""
    m = min(m, k)
    topics = np.argsort(rng.random((n_users, k)), axis=1)[:, :m]
    count = rng.integers(1, m + 1, size=n_users)
    w = rng.gamma(1.0, size=(n_users, m)) * (np.arange(m) < count[:, None])
    return topics, w / w.sum(axis=1, keepdims=True)


def dense(topics: np.ndarray, weights: np.ndarray, k: int) -> np.ndarray:
    theta = np.zeros((len(topics), k))
    np.add.at(theta, (np.repeat(np.arange(len(topics)), topics.shape[1]), topics.ravel()), weights.ravel())
    return theta


def pick_slot(rng: np.random.Generator, weights: np.ndarray) -> np.ndarray:
    """One slot index per row of ``weights`` (rows sum to 1)."""
    cum = np.cumsum(weights, axis=1)
    u = rng.random(len(weights)) * cum[:, -1]  # scaled: a rounding error never reaches a zero-weight slot
    return (u[:, None] >= cum[:, :-1]).sum(axis=1)


def task_rng(seed: int, name: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(name.encode()), 1])


# ------------------------------------------------------------------------------------------------ writing
def _tokens(prefix: str, n: int) -> np.ndarray:
    return np.array([f"{prefix}{i}" for i in range(1, n + 1)], dtype=object)


def _write_rows(path: Path, header: str, *columns) -> None:
    with open(path, "w", encoding="utf-8", buffering=_BUF) as f:
        f.write(header + "\n")
        f.write("".join(["\t".join(map(str, row)) + "\n" for row in zip(*(c.tolist() for c in columns))]))


def _write_behaviours(path: Path, rng: np.random.Generator, o: dict, items: Pools, mix, mix2, utok, itok):
    """Draw and write every user's behaviour sequence, chunk by chunk; return (sequence stats, lengths)."""
    n_users = o["users"]
    lens = rng.integers(o["min_len"], o["max_len"] + 1, size=n_users)
    seen = np.zeros(o["items"], dtype=bool)
    with open(path, "w", encoding="utf-8", buffering=_BUF) as f:
        f.write("user_id:token\titem_id:token\ttimestamp:float\n")
        for lo in range(0, n_users, CHUNK_USERS):
            hi = min(lo + CHUNK_USERS, n_users)
            ln = lens[lo:hi]
            owner = np.repeat(np.arange(lo, hi), ln)
            m = len(owner)
            first = np.repeat(np.cumsum(ln) - ln, ln)  # index of the user's first behaviour in the chunk
            pos = np.arange(m) - first
            topics, weights = mix[0][owner], mix[1][owner]
            if mix2 is not None:
                late = rng.random(m) < o["drift"] * pos / np.maximum(np.repeat(ln, ln) - 1, 1)
                topics = np.where(late[:, None], mix2[0][owner], topics)
                weights = np.where(late[:, None], mix2[1][owner], weights)
            topic = topics[np.arange(m), pick_slot(rng, weights)]
            item = items.draw(rng, topic)
            noisy = rng.random(m) < o["noise"]
            item[noisy] = items.popular(rng, int(noisy.sum()))
            seen[item] = True
            gaps = np.cumsum(rng.integers(1, MAX_GAP + 1, size=m))
            start = rng.integers(T0, T0 + 10_000_000, size=hi - lo)
            ts = np.repeat(start, ln) + gaps - gaps[first]  # the user's first behaviour at its start time
            us, its, tss = utok[owner].tolist(), itok[item].tolist(), ts.tolist()
            f.write("".join([f"{u}\t{i}\t{t}\n" for u, i, t in zip(us, its, tss)]))
    stats = sequence_stats(n_users, int(lens.sum()), int(seen.sum()), int(lens.min()), int(lens.max()))
    return stats, lens


def _labelled(rng: np.random.Generator, n_users: int, share: float) -> np.ndarray:
    k = max(1, int(round(share * n_users)))
    return np.sort(rng.choice(n_users, size=k, replace=False))


def _class_task(rng, name, kind, classes, users, theta, o, utok, path) -> TaskSummary:
    """multiclass: argmax of theta W + noise; binary: theta v + noise above its median."""
    k = theta.shape[1]
    if kind == "multiclass":
        prefer = np.resize(rng.permutation(classes), k)[rng.permutation(k)]  # every class preferred if k >= C
        w = rng.normal(size=(k, classes)) + CLASS_PREFERENCE * np.eye(classes)[prefer]
        y = np.argmax(theta[users] @ w + SCORE_NOISE * rng.normal(size=(len(users), classes)), axis=1)
    else:
        s = theta[users] @ rng.normal(size=k) + BINARY_NOISE * rng.normal(size=len(users))
        y = (s > np.median(s)).astype(np.int64)
    noisy = rng.random(len(users)) < o["label_noise"]
    y[noisy] = rng.integers(0, classes, size=int(noisy.sum()))
    labels = y.astype(str).astype(object)
    _write_rows(path, "user_id:token\tlabel:token", utok[users], labels)
    summary = TaskSummary(name, kind, path.name)
    summary.labels = Counter(labels.tolist())
    summary.num_samples = summary.num_users = len(users)
    return summary


def _target_task(rng, name, kind, users, cur, targets: Pools, o, utok, ttok, path) -> TaskSummary:
    """recommendation: distinct targets from the user's current topics; cvr: (user, target, 0/1) pairs."""
    n_t = o["targets"]
    per = (rng.integers(1, o["max_targets"] + 1, size=len(users)) if kind == "recommendation"
           else np.full(len(users), o["cvr_per_user"]))
    owner = np.repeat(users, per)
    m = len(owner)
    topic = cur[0][owner, pick_slot(rng, cur[1][owner])]
    tgt = targets.draw(rng, topic)
    if kind == "recommendation":
        pop = rng.random(m) < o["noise"]
        tgt[pop] = targets.popular(rng, int(pop.sum()))
        noisy = rng.random(m) < o["label_noise"]
        tgt[noisy] = rng.integers(0, n_t, size=int(noisy.sum()))
    else:
        other = rng.random(m) >= CVR_MATCH_SHARE
        tgt[other] = rng.integers(0, n_t, size=int(other.sum()))
    # distinct (user, target) pairs, ordered by user then target id
    code, first = np.unique(owner.astype(np.int64) * n_t + tgt, return_index=True)
    u, t = code // n_t, code % n_t
    summary = TaskSummary(name, kind, path.name)
    summary.num_samples, summary.num_users = len(code), len(np.unique(u))
    summary.targets = set(ttok[np.unique(t)].tolist())
    if kind == "recommendation":
        _write_rows(path, "user_id:token\ttarget_id:token", utok[u], ttok[t])
        return summary
    match = cur[2][u, targets.topic[t]]
    y = (rng.random(len(u)) < CVR_BASE + CVR_GAIN * match).astype(np.int64)
    rate = y.mean()
    noisy = rng.random(len(u)) < o["label_noise"]
    y[noisy] = rng.random(int(noisy.sum())) < rate  # random conversions at the same overall rate
    _write_rows(path, "user_id:token\ttarget_id:token\tlabel:float", utok[u], ttok[t], y)
    summary.labels = Counter(y.astype(str).tolist())
    return summary


def generate(output_dir, name: str, *, overwrite: bool = False, quiet: bool = True, **options) -> Path:
    """Write the synthetic data set ``output_dir/name`` (options: see ``DEFAULTS`` and the CLI); return its path.

    Raises ValueError on bad options and ``dataset_converters.ConversionError`` on a bad name or an existing
    ``output_dir/name`` that may not be replaced (kind ``output_exists``: an earlier data set, pass ``overwrite``;
    ``foreign_files``: it holds files not written by us, never replaced).  On any failure nothing is left behind.
    """
    unknown = set(options) - set(DEFAULTS)
    if unknown:
        raise TypeError(f"unknown option(s): {', '.join(sorted(unknown))}")
    o = {**DEFAULTS, **options}
    for key in ("noise", "label_noise", "labelled_share", "drift"):
        o[key] = float(o[key])
    for key in set(DEFAULTS) - {"noise", "label_noise", "labelled_share", "drift", "tasks"}:
        o[key] = int(o[key])
    check_options(o)
    tasks = parse_tasks(o["tasks"])
    o["tasks"] = ",".join(f"{n}:{k}" + (f":{c}" if k == "multiclass" else "") for n, k, c in tasks)
    t0 = time.time()
    with staged_dataset_dir(output_dir, name, overwrite=overwrite) as tmp:  # refuses up front, before any work
        seq, summaries = _generate_into(tmp, name, o, tasks)
    final = Path(output_dir) / name
    if not quiet:
        print(f"{final}: {seq['num_sequences']:,} users, {seq['num_behaviours']:,} behaviours, tasks "
              + ", ".join(f"{s.name} ({s.kind}, {s.num_samples:,} samples)" for s in summaries)
              + f" in {time.time() - t0:.1f}s", file=sys.stderr)
    return final


def _generate_into(tmp: Path, name: str, o: dict, tasks: list) -> tuple[dict, list]:
    root = np.random.SeedSequence(o["seed"])
    world_rng, user_rng, beh_rng = (np.random.default_rng(s) for s in root.spawn(3))
    k = o["topics"]
    items, targets = Pools(world_rng, o["items"], k), Pools(world_rng, o["targets"], k)
    mix = user_mixtures(user_rng, o["users"], k, o["max_user_topics"])
    theta = dense(*mix, k)
    mix2 = user_mixtures(user_rng, o["users"], k, o["max_user_topics"]) if o["drift"] > 0 else None
    cur_theta = theta if mix2 is None else (1 - o["drift"]) * theta + o["drift"] * dense(*mix2, k)
    if mix2 is None:
        current = (mix[0], mix[1], cur_theta)
    else:  # the current mixture as (topics, weights) over both topic sets
        current = (np.concatenate([mix[0], mix2[0]], axis=1),
                   np.concatenate([(1 - o["drift"]) * mix[1], o["drift"] * mix2[1]], axis=1), cur_theta)
    utok, itok, ttok = _tokens("u", o["users"]), _tokens("i", o["items"]), _tokens("t", o["targets"])
    for tok in (utok[0], itok[0], ttok[0]):
        assert check_token(tok) is None, tok

    seq, _ = _write_behaviours(tmp / f"{name}.inter", beh_rng, o, items, mix, mix2, utok, itok)
    summaries = []
    for task, kind, classes in tasks:
        rng = task_rng(o["seed"], task)
        users = _labelled(rng, o["users"], o["labelled_share"])
        path = tmp / f"{name}.{task}"
        if kind in ("multiclass", "binary"):
            summaries.append(_class_task(rng, task, kind, classes, users, theta, o, utok, path))
        else:
            summaries.append(_target_task(rng, task, kind, users, current, targets, o, utok, ttok, path))
    notes = [f"Synthetic: {k} topics, {o['max_user_topics']} dominant topics per user at most, behaviour noise "
             f"share {o['noise']}, label noise share {o['label_noise']}, drift {o['drift']}.",
             "Targets (t...) are a separate item domain grouped by topic; see scripts/SYNTHETIC.md."]
    finish_dataset(tmp, name, "synthetic (scripts/generate_synthetic.py)", seq, summaries, [], o, notes)
    return seq, summaries


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--output", required=True, type=Path, help="folder that receives NAME/")
    ap.add_argument("--name", default="synthetic", help="data set name (default %(default)s)")
    helps = {"users": "users (= sequences)", "items": "distinct behaviour items", "targets": "target-domain items",
             "topics": "interest topics K", "min_len": "shortest sequence", "max_len": "longest sequence",
             "noise": "share of behaviours (and rec targets) drawn from global popularity",
             "label_noise": "share of labels replaced by random ones (1.0: no signal)",
             "labelled_share": "share of users labelled in each task",
             "tasks": "comma-separated name[:kind[:classes]]; kinds " + ", ".join(KINDS),
             "max_user_topics": "most dominant topics per user", "drift": "interest drift strength in [0, 1]",
             "max_targets": "most recommendation targets per labelled user",
             "cvr_per_user": "cvr candidate pairs per labelled user", "seed": "random seed"}
    for key, default in DEFAULTS.items():
        typ = type(default) if key != "tasks" else str
        ap.add_argument("--" + key.replace("_", "-"), type=typ, default=default,
                        help=f"{helps[key]} (default %(default)s)")
    ap.add_argument("--overwrite", action="store_true",
                    help="replace an existing OUTPUT/NAME holding an earlier generated or converted data set "
                         "(never one holding other files)")
    ap.add_argument("--quiet", action="store_true", help="no summary line")
    a = vars(ap.parse_args(argv))
    output, name, overwrite, quiet = a.pop("output"), a.pop("name"), a.pop("overwrite"), a.pop("quiet")
    try:
        path = generate(output, name, overwrite=overwrite, quiet=quiet, **a)
    except (ValueError, ConversionError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
