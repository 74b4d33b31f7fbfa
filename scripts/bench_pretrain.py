"""Throughput and peak memory of AdaptSSR pre-training steps (MLM and ranking) at a chosen scale.

Times full training steps (augmentation on the device, one forward of the stacked views, loss, backward, Adam
step) on random behaviour sequences; the default scale is the TTL release (645,972 behaviours, L = 100, B = 128).

    python scripts/bench_pretrain.py --device cuda --steps 50
    python scripts/bench_pretrain.py --device cpu --items 1700 --steps 5 --batch 128
Reports ms/step, sequences/s and peak memory (CUDA: max allocated; CPU: peak RSS of the process).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

import recbole_adaptssr  # noqa: E402,F401
from recbole_adaptssr.model.adaptssr import AdaptSSR  # noqa: E402


class _Shape:
    """The two things the model reads from a data set: the field names' vocabulary size."""

    def __init__(self, n_items):
        self.n_items = n_items

    def num(self, field):
        return self.n_items


def build_model(n_items, max_len, device, stage):
    """The model with the package's defaults (Appendix C; the MLM warm-up as the authors' release trains it)."""
    from recbole_adaptssr.compat import SavedConfig

    config = SavedConfig({
        "USER_ID_FIELD": "user_id", "ITEM_ID_FIELD": "item_id", "LIST_SUFFIX": "_list",
        "ITEM_LIST_LENGTH_FIELD": "item_length", "NEG_PREFIX": "neg_", "MAX_ITEM_LIST_LENGTH": max_len,
        "device": device, "LABEL_FIELD": "label", "train_stage": stage, "pretrain_stages": ["mlm", "ssr"],
        "hidden_size": 64, "n_layers": 2, "n_heads": 2, "inner_size": 256, "hidden_dropout_prob": 0.1,
        "attn_dropout_prob": 0.1, "hidden_act": "gelu", "layer_norm_eps": 1e-12, "initializer_range": 0.02,
        "mlm_mask_ratio": 0.3, "mlm_head": "tied", "mlm_hidden_dropout_prob": 0.5, "mlm_attn_dropout_prob": 0.5,
        "augmentations": ["mask", "crop", "reorder"], "mask_ratio": 0.6, "crop_ratio": 0.4, "reorder_ratio": 0.6,
        "ssr_lambda_mode": "adaptive", "ssr_fixed_lambda": 0.5, "ssr_lambda_estimate": "sample",
        "ssr_hard_negative": True, "ssr_ranking": True, "ssr_infonce_temperature": 1.0,
        "head_hidden_size": 64, "head_dropout_prob": 0.1,
    })
    return AdaptSSR(config, _Shape(n_items)).to(device)


def bench(stage, args):
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = build_model(args.items, args.max_len, device, stage)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-4)
    lengths = torch.randint(1, args.max_len + 1, (args.batch,), device=device)
    lengths[0] = args.max_len
    seq = torch.randint(1, args.items, (args.batch, args.max_len), device=device)
    seq = seq * (torch.arange(args.max_len, device=device)[None, :] < lengths[:, None])
    interaction = {model.ITEM_SEQ: seq, model.ITEM_SEQ_LEN: lengths}
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = model.calculate_loss(interaction)
        loss.backward()
        optimizer.step()

    for _ in range(args.warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = (time.perf_counter() - start) / args.steps
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**20
        reserved = torch.cuda.memory_reserved(device) / 2**20
        print(f"    cuda reserved after the steps: {reserved:.0f} MiB", flush=True)
        peak_kind = "cuda max allocated"
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        peak_kind = "process peak RSS"
    return {"stage": stage, "device": str(device), "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else "",
            "items": args.items, "max_len": args.max_len, "batch": args.batch, "ms_per_step": 1000 * seconds,
            "sequences_per_s": args.batch / seconds, "peak_mib": peak, "peak_kind": peak_kind,
            "torch": torch.__version__}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--items", type=int, default=645_972, help="behaviour vocabulary size (TTL: 645,972)")
    parser.add_argument("--max-len", type=int, default=100)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--stages", default="ssr,mlm")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args(argv)
    results = [bench(stage, args) for stage in args.stages.split(",")]
    for r in results:
        print(f"{r['stage']:>4} on {r['device']} {r['gpu']}: {r['ms_per_step']:.2f} ms/step, "
              f"{r['sequences_per_s']:.0f} sequences/s, peak {r['peak_mib']:.0f} MiB ({r['peak_kind']}); "
              f"items={r['items']} L={r['max_len']} B={r['batch']} torch {r['torch']}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
