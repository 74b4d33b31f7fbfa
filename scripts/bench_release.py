"""Time the authors' AdaptSSR release (github.com/yflyl613/AdaptSSR, its ``Code/`` folder) at the TTL scale, the
way its pre-training scripts train: the release's own data sets, models and Adam, one step as its training loop
does it (a DataLoader with ``num_workers=0`` doing the per-sample Python augmentation, the copy to the device,
forward, backward, Adam step). The release's code is not part of this project: pass the folder holding it.

    python scripts/bench_release.py --release /path/to/AdaptSSR/Code --device cuda

Stages: ``ssr`` (``Code/AdaptSSR``: the ranking step, dropout 0.1, lr 2e-4) and ``mlm`` (``Code/MLM``: mask ratio
0.3, dropout 0.5, lr 5e-4, full softmax by ``F.cross_entropy`` over all items). Data: ``--users`` sequences with
scripts/generate_ttl.py's lengths (a quarter of 100, the rest gamma, mean about 55) and Zipf item popularity over
``--items`` behaviours (TTL: 645,972, plus the padding row of the release's item map), L = 100, B = 128. Reported:
ms/step and sequences/s over ``--steps`` steps after ``--warmup`` steps (wall clock, synchronised at both ends),
peak GPU memory (allocated, reserved). The training-loop code below is this project's; it calls the release's
classes as its pretrain.py scripts do (their scripts run arg parsing, logging and an evaluation process at import,
so they are not imported).
"""

from __future__ import annotations

import argparse
import json
import pickle
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # generate_ttl

from generate_ttl import lengths as ttl_lengths  # noqa: E402
from generate_ttl import zipf_ranks  # noqa: E402


def behaviours(users: int, items: int, max_len: int, seed: int) -> np.ndarray:
    """(users, max_len) int32 sequences, left-aligned, 0-padded (the release's pretrain_remap layout)."""
    rng = np.random.default_rng(seed)
    n = ttl_lengths(rng, users, max_len)
    out = np.zeros((users, max_len), dtype=np.int32)
    ids = rng.permutation(items) + 1
    for row, length in enumerate(n):
        out[row, :length] = ids[zipf_ranks(rng, items, int(length))]
    return out


def ranking_collate(samples):
    """The release's batch layout for its ranking step: two (B, L) views and each view's masked positions as
    [batch indices, positions] lists."""
    seq_1, seq_2, rows_1, cols_1, rows_2, cols_2 = [], [], [], [], [], []
    for i, (view_1, view_2, masked_1, masked_2) in enumerate(samples):
        seq_1.append(view_1)
        seq_2.append(view_2)
        rows_1 += [i] * len(masked_1)
        cols_1 += list(masked_1)
        rows_2 += [i] * len(masked_2)
        cols_2 += list(masked_2)
    return (torch.LongTensor(np.array(seq_1)), torch.LongTensor(np.array(seq_2)), [rows_1, cols_1],
            [rows_2, cols_2])


def mlm_collate(samples):
    """The release's batch layout for its MLM step: (B, L) sequences and the masked positions."""
    seqs, rows, cols = [], [], []
    for i, (seq, masked) in enumerate(samples):
        seqs.append(seq)
        rows += [i] * len(masked)
        cols += list(masked)
    return torch.LongTensor(np.array(seqs)), [rows, cols]


def release_args(stage: str, items: int, max_len: int) -> argparse.Namespace:
    """The release's defaults for the stage (its pretrain.py argument defaults, TTL's L = 100)."""
    common = dict(base_model="BERT4Rec", n_items=items + 1, emb_dim=64, max_len=max_len, n_layers=2, n_heads=2,
                  batch_size=128)
    if stage == "ssr":
        return argparse.Namespace(**common, lr=2e-4, trm_dropout=0.1, pooling="attn", num_pooling=1,
                                  cos_pooling=False, crop_ratio=0.4, mask_ratio=0.6, reorder_ratio=0.6, reg_coef=1)
    return argparse.Namespace(**common, lr=5e-4, trm_dropout=0.5, pooling=None, mask_ratio=0.3)


def bench_stage(stage: str, total_behavior: np.ndarray, uid_path: str, args) -> dict:
    from torch.utils.data import DataLoader

    package = "AdaptSSR" if stage == "ssr" else "MLM"
    dataset_module = __import__(f"{package}.dataset", fromlist=["PretrainDataset"])
    model_module = __import__(f"{package}.model", fromlist=["PretrainModel"])
    device = torch.device(args.device)
    settings = release_args(stage, args.items, args.max_len)
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    model = model_module.PretrainModel(settings, device).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr, weight_decay=0)
    data = dataset_module.PretrainDataset(total_behavior, uid_path, settings)
    loader = DataLoader(data, batch_size=settings.batch_size, shuffle=False, pin_memory=device.type == "cuda",
                        num_workers=0, collate_fn=ranking_collate if stage == "ssr" else mlm_collate)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)

    def step(batch):
        if stage == "ssr":
            seq_1, seq_2, masked_1, masked_2 = batch
            seq_1 = seq_1.to(device, non_blocking=True)
            seq_2 = seq_2.to(device, non_blocking=True)
            loss, hit_pos_semi, hit_semi_neg = model(seq_1, seq_2, masked_1, masked_2)
            size = len(seq_1)
            _ = hit_pos_semi / (size * 2), hit_semi_neg / (size * 2 * 4 * (size - 1))  # its accuracies, unsynced
        else:
            seq, masked = batch
            seq = seq.to(device, non_blocking=True)
            loss, hit = model(seq, masked)
            _ = hit / len(masked[0])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    batches = iter(loader)
    for _ in range(args.warmup):
        step(next(batches))
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    begin = time.perf_counter()
    for _ in range(args.steps):
        step(next(batches))
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = (time.perf_counter() - begin) / args.steps
    out = {"stage": stage, "ms_per_step": 1000 * seconds, "sequences_per_s": settings.batch_size / seconds,
           "steps": args.steps, "warmup": args.warmup}
    if device.type == "cuda":
        out["peak_allocated_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
        out["peak_reserved_mib"] = torch.cuda.max_memory_reserved(device) / 2**20
    del model, optimizer
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--release", required=True, type=Path, help="the release's Code/ folder")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--stages", default="ssr,mlm")
    parser.add_argument("--items", type=int, default=645_972)
    parser.add_argument("--max-len", type=int, default=100)
    parser.add_argument("--users", type=int, default=20_000, help="sequences generated (>= (warmup + steps) x 128)")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if (args.warmup + args.steps) * 128 > args.users:
        raise SystemExit(f"--users {args.users} holds fewer than (warmup + steps) x 128 sequences")
    code = args.release.resolve()
    if not (code / "AdaptSSR" / "model.py").is_file() or not (code / "models" / "BERT4Rec.py").is_file():
        raise SystemExit(f"{code} is not the release's Code/ folder (no AdaptSSR/model.py, models/BERT4Rec.py)")
    sys.path.insert(0, str(code))
    total_behavior = behaviours(args.users, args.items, args.max_len, args.seed)
    order = np.random.default_rng(args.seed + 1).permutation(args.users).astype(np.int32)
    report = {"device": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu",
              "torch": torch.__version__, "items": args.items, "L": args.max_len, "B": 128,
              "mean_length": float((total_behavior != 0).sum(1).mean()), "stages": []}
    with tempfile.TemporaryDirectory() as tmp:
        uid_path = str(Path(tmp) / "train_uid.pkl")
        with open(uid_path, "wb") as f:
            pickle.dump(order, f, protocol=pickle.HIGHEST_PROTOCOL)
        for stage in args.stages.split(","):
            result = bench_stage(stage, total_behavior, uid_path, args)
            report["stages"].append(result)
            print(f"release {stage:>4} on {report['device']}: {result['ms_per_step']:.1f} ms/step, "
                  f"{result['sequences_per_s']:.0f} sequences/s, peak allocated "
                  f"{result.get('peak_allocated_mib', 0):.0f} MiB, reserved {result.get('peak_reserved_mib', 0):.0f} MiB "
                  f"(torch {torch.__version__})", flush=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
