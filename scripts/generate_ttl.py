#!/usr/bin/env python
"""Generate seeded synthetic files in the TTL release layout (for tests and the full-scale benchmark).

Writes, into ``--output``:
  original_desen_pretrain.csv                 one user per line, behaviours left-padded with 0 to --max-len
  original_desen_age.csv                      behaviours,,label   (8 classes, 0..7)
  original_desen_lifestatus.csv               behaviours,,label   (6 classes, 0..5)
  original_desen_finetune_click_nouserID.csv  behaviours,,t1,t2,...  (target domain of --click-items items)
  original_desen_finetune_like_nouserID.csv   behaviours,,t1,t2,...  (target domain of --like-items items)

Defaults give the release's size (Table 1 of the AdaptSSR paper): 1,470,149 sequences, 645,972 distinct
behaviours, average length about 55, maximum 100; task sizes about 1.47M / 1.02M / 1.40M / 0.26M samples.
Behaviour popularity is Zipf-like (1/(rank+10), ids scrambled) and every behaviour id occurs at least once; about a
quarter of the users have the full 100 behaviours, the others a gamma-distributed length.  Task lines come in
an order shuffled within blocks of users, as the real task files are not in pretrain order.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

PRETRAIN = "original_desen_pretrain.csv"
AGE = "original_desen_age.csv"
LIFE = "original_desen_lifestatus.csv"
CLICK = "original_desen_finetune_click_nouserID.csv"
LIKE = "original_desen_finetune_like_nouserID.csv"

FULL_USERS = 1_470_149
FULL_ITEMS = 645_972
# Share of users in each task file and mean targets per line, chosen to land near Table 1's sample counts.
P_AGE = 1_470_147 / FULL_USERS
P_LIFE = 1_020_277 / FULL_USERS
P_CLICK, P_LIKE = 0.59, 0.1075


def zipf_ranks(rng: np.random.Generator, n_items: int, size: int, c: float = 10.0) -> np.ndarray:
    """Ranks in [0, n_items) with P(rank k) roughly proportional to 1/(k+c)."""
    u = rng.random(size)
    r = np.power(float(n_items) + c, u) * np.power(c, 1.0 - u) - c
    return np.minimum(r.astype(np.int64), n_items - 1)


def lengths(rng: np.random.Generator, n: int, max_len: int) -> np.ndarray:
    full = rng.random(n) < 0.25
    g = np.ceil(rng.gamma(shape=1.3, scale=32.4, size=n)).astype(np.int64)
    g = np.clip(g, 1, max_len - 1)
    return np.where(full, max_len, g)


def generate(out: Path, users: int = FULL_USERS, items: int = FULL_ITEMS, seed: int = 0, max_len: int = 100,
             click_items: int = 17_879, like_items: int = 7_539, chunk: int = 20_000, quiet: bool = False) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    item_ids = rng.permutation(items) + 1  # rank -> behaviour id (1..items); 0 stays padding
    click_ids = rng.permutation(click_items) + 1
    like_ids = rng.permutation(like_items) + 1
    cover = rng.permutation(items) + 1  # every id placed once somewhere, spread over the chunks
    n_chunks = (users + chunk - 1) // chunk
    cover_parts = np.array_split(cover, n_chunks)
    zero_pad = ["0"] * max_len
    counts = {"users": 0, "behaviours": 0, "age": 0, "lifestatus": 0, "click_lines": 0, "click_samples": 0,
              "like_lines": 0, "like_samples": 0}
    t0 = time.time()
    files = {k: open(out / v, "w", buffering=1 << 20) for k, v in
             [("pre", PRETRAIN), ("age", AGE), ("life", LIFE), ("click", CLICK), ("like", LIKE)]}
    try:
        for c in range(n_chunks):
            n = min(chunk, users - c * chunk)
            lens = lengths(rng, n, max_len)
            total = int(lens.sum())
            flat = item_ids[zipf_ranks(rng, items, total)]
            cov = cover_parts[c]
            if len(cov) > total:  # tiny scales: not every id can be placed
                cov = cov[:total]
            flat[rng.choice(total, size=len(cov), replace=False)] = cov
            ends = np.cumsum(lens)
            starts = ends - lens
            flat_s = flat.astype(str).tolist()
            lines = []
            for i in range(n):
                k = int(lens[i])
                lines.append(",".join(zero_pad[: max_len - k] + flat_s[starts[i]: ends[i]]))
            files["pre"].write("\n".join(lines) + "\n")
            counts["users"] += n
            counts["behaviours"] += total

            def subset(p):
                idx = np.flatnonzero(rng.random(n) < p)
                return idx[rng.permutation(len(idx))]

            age_idx = subset(P_AGE)
            age_lab = rng.choice(8, size=len(age_idx), p=[.05, .17, .22, .2, .15, .1, .07, .04])
            files["age"].write("".join(f"{lines[i]},,{y}\n" for i, y in zip(age_idx.tolist(), age_lab.tolist())))
            counts["age"] += len(age_idx)
            life_idx = subset(P_LIFE)
            life_lab = rng.choice(6, size=len(life_idx), p=[.3, .25, .2, .12, .08, .05])
            files["life"].write("".join(f"{lines[i]},,{y}\n" for i, y in zip(life_idx.tolist(), life_lab.tolist())))
            counts["lifestatus"] += len(life_idx)
            rec_tasks = (("click", P_CLICK, click_ids, click_items), ("like", P_LIKE, like_ids, like_items))
            for key, p, ids, n_t in rec_tasks:
                idx = subset(p)
                k_t = 1 + rng.geometric(0.62, size=len(idx)) - 1  # 1, 2, ... mean about 1.6
                tg = ids[zipf_ranks(rng, n_t, int(k_t.sum()))].astype(str).tolist()
                buf, j = [], 0
                for i, k in zip(idx.tolist(), k_t.tolist()):
                    t = list(dict.fromkeys(tg[j: j + k]))
                    j += k
                    buf.append(f"{lines[i]},,{','.join(t)}\n")
                    counts[f"{key}_samples"] += len(t)
                files[key].write("".join(buf))
                counts[f"{key}_lines"] += len(idx)
            if not quiet and (c % 10 == 9 or c == n_chunks - 1):
                print(f"  {counts['users']:,}/{users:,} users, {time.time() - t0:.0f}s", file=sys.stderr, flush=True)
    finally:
        for f in files.values():
            f.close()
    counts["seconds"] = round(time.time() - t0, 1)
    counts["bytes"] = sum(os.path.getsize(out / v) for v in (PRETRAIN, AGE, LIFE, CLICK, LIKE))
    return counts


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--output", required=True, type=Path, help="folder to write the five CSV files into")
    ap.add_argument("--users", type=int, default=FULL_USERS, help="number of users/sequences (default %(default)s)")
    ap.add_argument("--items", type=int, default=FULL_ITEMS, help="number of distinct behaviours (default %(default)s)")
    ap.add_argument("--seed", type=int, default=0, help="random seed (default %(default)s)")
    ap.add_argument("--max-len", type=int, default=100, help="line length incl. padding (default %(default)s)")
    ap.add_argument("--click-items", type=int, default=17_879, help="click target domain size (default %(default)s)")
    ap.add_argument("--like-items", type=int, default=7_539, help="like target domain size (default %(default)s)")
    ap.add_argument("--quiet", action="store_true", help="no progress output")
    a = ap.parse_args(argv)
    if a.users < 1 or a.items < 1 or a.max_len < 2:
        ap.error("--users and --items must be >= 1, --max-len >= 2")
    counts = generate(a.output, a.users, a.items, a.seed, a.max_len, a.click_items, a.like_items, quiet=a.quiet)
    print(" ".join(f"{k}={v}" for k, v in counts.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
