"""User-representation similarity distributions (paper section 4.6, Fig. 5).

For each pre-trained checkpoint: sample users of a data set, augment each user's behaviour sequence (by default
masking then cropping, each at proportion 0.6), encode the original and the augmented sequences with the
checkpoint's user model in eval mode (no dropout), and compute the cosine similarity

* between a user's original and augmented representations ("augmented"), and
* between a user's original representation and a random other user's ("other_user"),

then draw each distribution's density (a Gaussian KDE) in one panel per checkpoint
(:func:`recbole_adaptssr.analysis.figures.similarity_figure`). The numbers are written as CSV: every similarity,
and summary statistics.

Protocol (so that a result can be recomputed, and methods compared on the same views):

* sequences: ``<data_path>/<dataset>/<dataset>.inter``; each user's behaviours sorted by time (ties keep file
  order), the most recent ``MAX_ITEM_LIST_LENGTH`` of the checkpoint kept, left-aligned; tokens are mapped through
  the checkpoint's ``item_vocabulary``, a token it does not know maps to the mask id (= vocabulary size), as
  :mod:`recbole_adaptssr.data.task_dataset` does;
* users: in order of first appearance in the file; ``numpy.random.RandomState(seed).choice(n, min(users, n),
  replace=False)`` picks them (the same users for every checkpoint);
* augmentation: a fresh ``torch.Generator().manual_seed(seed)`` per checkpoint; the operators of ``augment`` are
  applied in the listed order, each to the whole batch of sampled users (``mask`` with the checkpoint's mask id,
  ``crop``, ``reorder``; :mod:`recbole_adaptssr.augment.sequence`), each at proportion ``ratio``. Checkpoints
  with the same ``MAX_ITEM_LIST_LENGTH`` therefore see the same masked positions and crop windows;
* other users: user ``i`` is paired with ``(i + k_i) mod N``, ``k_i`` drawn by
  ``numpy.random.RandomState(seed + 1).randint(1, N, size=N)`` (never itself).
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import sys

import numpy as np
import pandas as pd
import torch

KINDS = ("augmented", "other_user")
DEFAULT_AUGMENT = ("mask", "crop")


# ---------------------------------------------------------------------------------------------- checkpoint
def load_user_model(path: str, device="cpu"):
    """The user model of a pre-training checkpoint (eval mode) and the checkpoint's state.

    The architecture is read from the weights (vocabulary size, sequence length, hidden size) and the saved
    settings (layers, heads, feed-forward size, activation)."""
    from recbole_adaptssr import setup
    from recbole_adaptssr.checkpoint import load_checkpoint

    setup()  # RecBole's compatibility shims, before its layers are imported
    from recbole_adaptssr.encoder.user_model import UserModel

    state = load_checkpoint(path)
    prefix = "user_model."
    weights = {k[len(prefix):]: v for k, v in state["state_dict"].items() if k.startswith(prefix)}
    if not weights:
        raise ValueError(f"{path}: the checkpoint holds no user_model.* weights")
    config = state.get("config") or {}
    rows, hidden = weights["item_embedding.weight"].shape
    vocabulary = state.get("item_vocabulary") or {}
    if len(vocabulary) != rows - 1:
        raise ValueError(f"{path}: item_vocabulary has {len(vocabulary)} tokens but the embedding table has {rows} "
                         "rows (vocabulary + mask token)")
    model = UserModel(
        n_items=rows - 1,
        max_seq_length=weights["position_embedding.weight"].shape[0],
        hidden_size=hidden,
        n_layers=int(config.get("n_layers", 2)),
        n_heads=int(config.get("n_heads", 2)),
        inner_size=int(config.get("inner_size", 4 * hidden)),
        hidden_act=str(config.get("hidden_act", "gelu")),
        layer_norm_eps=float(config.get("layer_norm_eps", 1e-12)),
    )
    model.load_state_dict(weights, strict=True)
    return model.to(device).eval(), state


# ---------------------------------------------------------------------------------------------- data
def read_user_log(data_path: str, dataset: str):
    """``(log, users)``: the behaviour log sorted by (user, time), ties in file order, with ``code`` = the user's
    index in ``users`` (user tokens in order of first appearance)."""
    from recbole_adaptssr.data.task_dataset import read_behaviour_log

    log = read_behaviour_log(os.path.join(data_path, dataset, f"{dataset}.inter"))
    codes, users = pd.factorize(log["user"])
    log = log.assign(code=codes).sort_values(["code", "time"], kind="stable")
    return log, [str(u) for u in users]


def user_sequences(log: pd.DataFrame, tokens: list, vocabulary: dict, max_len: int, users: list | None = None):
    """``(user tokens, item_seq (N, max_len) LongTensor, lengths (N,) LongTensor)``: the most recent ``max_len``
    behaviours of each user (all users of the log, or ``users`` in that order), ids from ``vocabulary`` (unknown
    tokens -> ``len(vocabulary)``, the mask id)."""
    from recbole_adaptssr.data.dataset import recent_behaviours

    oov = len(vocabulary)
    ids = log["item"].map(vocabulary).fillna(oov).astype(np.int64).to_numpy()
    all_users, matrix, lengths, _ = recent_behaviours(log["code"].to_numpy(), ids, max_len)
    names = [tokens[c] for c in all_users]
    if users is not None:
        row = {name: i for i, name in enumerate(names)}
        missing = [u for u in users if u not in row]
        if missing:
            raise ValueError(f"user(s) {missing[:5]} have no behaviour in the log")
        index = [row[u] for u in users]
        names, matrix, lengths = list(users), matrix[index], lengths[index]
    return names, torch.from_numpy(np.ascontiguousarray(matrix)), torch.from_numpy(np.asarray(lengths, dtype=np.int64))


def sample_users(user_tokens: list, count: int, seed: int) -> list:
    """``min(count, N)`` distinct users, drawn with ``RandomState(seed).choice`` (see the module docstring)."""
    n = len(user_tokens)
    picks = np.random.RandomState(seed).choice(n, size=min(int(count), n), replace=False)
    return [user_tokens[i] for i in picks]


def other_users(n: int, seed: int) -> np.ndarray:
    """For each of ``n`` users, the index of a random other user (never itself)."""
    if n < 2:
        raise ValueError(f"the different-users similarity needs at least 2 users, got {n}")
    shift = np.random.RandomState(seed + 1).randint(1, n, size=n)
    return (np.arange(n) + shift) % n


def augment(item_seq: torch.Tensor, lengths: torch.Tensor, operators, ratio: float, mask_token_id: int,
            generator: torch.Generator):
    """Apply ``operators`` in order to every sequence, each at proportion ``ratio``."""
    from recbole_adaptssr.augment import sequence as ops

    seq, seq_len = item_seq, lengths
    for op in operators:
        if op == "mask":
            seq, seq_len = ops.mask(seq, seq_len, mask_token_id, ratio, generator)
        elif op == "crop":
            seq, seq_len = ops.crop(seq, seq_len, ratio, generator)
        elif op == "reorder":
            seq, seq_len = ops.reorder(seq, seq_len, ratio, generator)
        else:
            raise ValueError(f"unknown augmentation operator {op!r}; choose from {list(ops.OPERATORS)}")
    return seq, seq_len


@torch.no_grad()
def encode(model, item_seq: torch.Tensor, batch_size: int = 512, device="cpu") -> torch.Tensor:
    """User representations (N, d) of ``item_seq`` in eval mode, in batches."""
    model.eval()
    parts = [model(item_seq[i:i + batch_size].to(device)).cpu() for i in range(0, len(item_seq), batch_size)]
    return torch.cat(parts) if parts else torch.empty(0)


def cosine(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    return torch.nn.functional.cosine_similarity(a.double(), b.double(), dim=-1).numpy()


# ---------------------------------------------------------------------------------------------- analysis
def analyse(checkpoints: dict, data_path: str, dataset: str, users: int = 10000, operators=DEFAULT_AUGMENT,
            ratio: float = 0.6, seed: int = 0, batch_size: int = 512, device="cpu") -> dict:
    """``{name: {"users", "other_users", "augmented", "other_user"}}`` for ``{name: checkpoint path}``
    (see the module docstring for the protocol)."""
    operators = tuple(operators)
    if not checkpoints:
        raise ValueError("no checkpoint given")
    if not 0 < float(ratio) <= 1:
        raise ValueError(f"ratio must be in (0, 1], got {ratio!r}")
    log, tokens = read_user_log(data_path, dataset)
    picked = sample_users(tokens, users, seed)
    pairs = other_users(len(picked), seed)
    out = {}
    for name, path in checkpoints.items():
        model, state = load_user_model(path, device)
        names, seq, lengths = user_sequences(log, tokens, state["item_vocabulary"], model.max_seq_length, picked)
        generator = torch.Generator().manual_seed(int(seed))
        aug_seq, _ = augment(seq, lengths, operators, float(ratio), model.mask_token_id, generator)
        original = encode(model, seq, batch_size, device)
        augmented = encode(model, aug_seq, batch_size, device)
        out[name] = {
            "checkpoint": str(path), "users": names, "other_users": [names[j] for j in pairs],
            "augmented": cosine(original, augmented), "other_user": cosine(original, original[pairs]),
        }
    return out


def summary(values) -> dict:
    values = np.asarray(values, dtype=np.float64)
    q = np.quantile(values, [0.05, 0.25, 0.5, 0.75, 0.95])
    return {"n": int(len(values)), "mean": float(values.mean()), "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
            "min": float(values.min()), "q05": float(q[0]), "q25": float(q[1]), "median": float(q[2]),
            "q75": float(q[3]), "q95": float(q[4]), "max": float(values.max())}


def similarities_csv(results: dict) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["method", "kind", "user", "other_user", "similarity"])
    for name, r in results.items():
        for user, value in zip(r["users"], r["augmented"]):
            writer.writerow([name, "augmented", user, user, repr(float(value))])
        for user, other, value in zip(r["users"], r["other_users"], r["other_user"]):
            writer.writerow([name, "other_user", user, other, repr(float(value))])
    return out.getvalue()


def summary_csv(results: dict) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    fields = ["n", "mean", "std", "min", "q05", "q25", "median", "q75", "q95", "max"]
    writer.writerow(["method", "kind", *fields])
    for name, r in results.items():
        for kind in KINDS:
            stats = summary(r[kind])
            writer.writerow([name, kind, *(stats[f] if f == "n" else repr(stats[f]) for f in fields)])
    return out.getvalue()


def write_outputs(results: dict, out_dir: str, title: str = "", figure: bool = True) -> dict:
    """``similarity.csv`` (every similarity), ``similarity_summary.csv`` and, with ``figure``, Fig. 5 as
    ``similarity.png`` and ``similarity.svg`` (:func:`recbole_adaptssr.analysis.figures.similarity_figure`) in
    ``out_dir``, each written atomically, the CSVs first."""
    from recbole_adaptssr.analysis import figures
    from recbole_adaptssr.files import atomic_write

    files = {"csv": os.path.join(out_dir, "similarity.csv"), "summary": os.path.join(out_dir, "similarity_summary.csv")}
    for key, text in (("csv", similarities_csv(results)), ("summary", summary_csv(results))):
        atomic_write(files[key], lambda f, text=text: f.write(text), binary=False)
    if figure:
        files.update(figures.save(figures.similarity_figure(results, title), os.path.join(out_dir, "similarity")))
    return files


# ---------------------------------------------------------------------------------------------- command line
def parse_checkpoints(items) -> dict:
    out = {}
    for item in items:
        name, sep, path = str(item).partition("=")
        if not sep or not name or not path:
            raise ValueError(f"--checkpoints takes name=path, got {item!r}")
        if name in out:
            raise ValueError(f"--checkpoints names {name!r} twice")
        out[name] = path
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Fig. 5: distributions of the cosine similarity between user representations of original vs "
                    "augmented sequences and of different users, one panel per pre-trained checkpoint.")
    parser.add_argument("--checkpoints", nargs="+", required=True, metavar="NAME=PATH",
                        help="pre-training checkpoints, e.g. adaptssr=saved/RUN/units/UNIT/pretrain/ssr.pth")
    parser.add_argument("--dataset", required=True, help="data set name: DATA_PATH/NAME/NAME.inter")
    parser.add_argument("--data_path", required=True, help="folder holding the data set folder")
    parser.add_argument("--users", type=int, default=10000, help="users sampled (default 10000, as the paper)")
    parser.add_argument("--augment", default="mask,crop",
                        help="operators applied in this order (mask, crop, reorder; default mask,crop)")
    parser.add_argument("--ratio", type=float, default=0.6, help="proportion of every operator (default 0.6)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="similarity", help="output folder (default ./similarity)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch_size", type=int, default=512)
    parser.add_argument("--no_figure", action="store_true", help="write the CSV files only")
    return parser


def main(argv=None) -> dict:
    args = build_parser().parse_args(argv)
    if args.users < 2:
        raise SystemExit("--users must be at least 2")
    try:
        checkpoints = parse_checkpoints(args.checkpoints)
    except ValueError as error:
        raise SystemExit(str(error)) from error
    operators = [op.strip() for op in args.augment.split(",") if op.strip()]
    results = analyse(checkpoints, args.data_path, args.dataset, args.users, operators, args.ratio, args.seed,
                      args.batch_size, args.device)
    title = f"{args.dataset}: {len(next(iter(results.values()))['users'])} users, {'+'.join(operators)} at {args.ratio}"
    files = write_outputs(results, args.out, title, figure=not args.no_figure)
    for name, r in results.items():
        a, o = summary(r["augmented"]), summary(r["other_user"])
        print(f"{name}: augmented mean {a['mean']:.4f} (std {a['std']:.4f}), "
              f"different users mean {o['mean']:.4f} (std {o['std']:.4f})")
    print("written: " + ", ".join(files.values()))
    return files


if __name__ == "__main__":  # pragma: no cover
    sys.exit(0 if main() else 1)
