"""Full-softmax item cross-entropy: the direct full-logits computation against the blocked one.

Times one forward + backward of the MLM loss over all items, ``F.cross_entropy(hidden @ W.T + b, targets)``
("naive") and :func:`recbole_adaptssr.item_softmax.item_cross_entropy` ("blocked"), on random data, and reports
ms per forward+backward, peak memory and the largest absolute difference of the loss and the gradients.

    python scripts/bench_item_softmax.py --device cuda --scale ttl
    python scripts/bench_item_softmax.py --device cpu --scale ttl --rows 1000 --repeat 3
    python scripts/bench_item_softmax.py --device cpu --items 100000 --block-items 4096 8192 32768

``--scale ttl`` is the TTL release: V = 645,972 items, d = 64, N = 128 * 100 * 0.3 = 3,840 masked positions
(the naive version holds about three (N x V) float32 tensors at once: 28 GB at that N; lower --rows on a CPU).
Peak memory: on CUDA torch.cuda.max_memory_allocated / max_memory_reserved over each method's runs; on CPU the
peak resident set size above the level before the method ran, sampled every 2 ms by a thread.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import statistics
import threading
import time
from pathlib import Path

import torch
import torch.nn.functional as F

# the module alone (importing the package would import RecBole and apply its shims, which this needs not)
_spec = importlib.util.spec_from_file_location(
    "item_softmax", Path(__file__).resolve().parents[1] / "recbole_adaptssr" / "item_softmax.py"
)
item_softmax = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(item_softmax)

SCALES = {"ttl": {"items": 645_972, "dim": 64, "rows": 3_840}, "small": {"items": 50_000, "dim": 64, "rows": 1_000}}
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class PeakRSS:
    """Peak resident set size of this process while the context is open, sampled by a thread."""

    def __init__(self, interval=0.002):
        import psutil  # only the CPU figures need it

        self.interval = interval
        self.process = psutil.Process()
        self.base = self.peak = 0
        self._stop = threading.Event()

    def _sample(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(self.interval)

    def __enter__(self):
        self.base = self.peak = self.process.memory_info().rss
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss)


def naive_loss(hidden, weight, targets, bias):
    logits = hidden @ weight.t()
    if bias is not None:
        logits = logits + bias
    return F.cross_entropy(logits.float(), targets)


def make_blocked(block_rows, block_items):
    def blocked_loss(hidden, weight, targets, bias):
        return item_softmax.item_cross_entropy(
            hidden, weight, targets, bias, block_rows=block_rows, block_items=block_items
        )

    return blocked_loss


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run(method, inputs, targets, repeat, device):
    """Warm up once, then time ``repeat`` forward+backward passes; returns (loss, grads, stats)."""
    times = []
    loss = grads = None
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    with contextlib.nullcontext() if device.type == "cuda" else PeakRSS() as rss:
        for step in range(repeat + 1):
            for x in inputs:
                if x is not None:
                    x.grad = None
            synchronize(device)
            begin = time.perf_counter()
            loss = method(inputs[0], inputs[1], targets, inputs[2])
            loss.backward()
            synchronize(device)
            if step:
                times.append((time.perf_counter() - begin) * 1e3)
            grads = [None if x is None else x.grad for x in inputs]
    for x in inputs:
        if x is not None:
            x.grad = None
    stats = {"ms_per_fwd_bwd": round(statistics.median(times), 2), "ms_all": [round(t, 1) for t in times]}
    if device.type == "cuda":
        stats["max_allocated_gb"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 3)
        stats["max_reserved_gb"] = round(torch.cuda.max_memory_reserved(device) / 2**30, 3)
    else:
        stats["peak_rss_above_start_gb"] = round((rss.peak - rss.base) / 2**30, 3)
    # on the host, so that the next method's peak memory on the device does not count these
    return loss.detach().float().cpu(), [None if g is None else g.detach().float().cpu() for g in grads], stats


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--scale", choices=sorted(SCALES), default="ttl")
    parser.add_argument("--items", type=int, help="V (default: the scale's)")
    parser.add_argument("--dim", type=int, help="d (default: the scale's)")
    parser.add_argument("--rows", type=int, help="N, the masked positions (default: the scale's)")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="float32")
    parser.add_argument("--no-bias", action="store_true")
    parser.add_argument("--block-rows", type=int, nargs="+", default=[None], help="default: the device's")
    parser.add_argument("--block-items", type=int, nargs="+", default=[None], help="default: the device's")
    parser.add_argument("--skip-naive", action="store_true", help="only the blocked version (no differences)")
    parser.add_argument("--repeat", type=int, default=5, help="timed passes after one warm-up pass")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads on CPU")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    scale = dict(SCALES[args.scale])
    for key in ("items", "dim", "rows"):
        if getattr(args, key) is not None:
            scale[key] = getattr(args, key)
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = DTYPES[args.dtype]
    generator = torch.Generator().manual_seed(args.seed)
    n_items, dim, n_rows = scale["items"], scale["dim"], scale["rows"]

    def leaf(*shape, scale_by=1.0):
        return (torch.randn(*shape, generator=generator) * scale_by).to(device, dtype).requires_grad_()

    bias = None if args.no_bias else leaf(n_items, scale_by=0.1)
    inputs = [leaf(n_rows, dim), leaf(n_items, dim, scale_by=dim**-0.5), bias]
    targets = torch.randint(0, n_items, (n_rows,), generator=generator).to(device)
    header = {"device": str(device), "name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
              "threads": torch.get_num_threads(), "dtype": args.dtype, "bias": not args.no_bias, **scale}
    print(json.dumps(header))

    # the blocked configurations first: the naive one leaves device segments the caching allocator keeps
    results = []
    for block_rows in args.block_rows:
        for block_items in args.block_items:
            loss, grads, stats = run(make_blocked(block_rows, block_items), inputs, targets, args.repeat, device)
            blocks = item_softmax._default_blocks(device, block_rows, block_items)
            print(json.dumps({"method": "blocked", "block_rows": blocks[0], "block_items": blocks[1], **stats}))
            results.append((blocks, loss, grads))
    if args.skip_naive:
        return
    reference_loss, reference_grads, stats = run(naive_loss, inputs, targets, args.repeat, device)
    print(json.dumps({"method": "naive", **stats}))
    for (block_rows, block_items), loss, grads in results:
        row = {"difference": "blocked - naive", "block_rows": block_rows, "block_items": block_items,
               "loss": float(reference_loss), "loss_abs_diff": float((loss - reference_loss).abs())}
        for name, mine, theirs in zip(("hidden", "item_weight", "bias"), grads, reference_grads):
            if mine is not None:
                row[f"grad_{name}_max_abs_diff"] = float((mine - theirs).abs().max())
                row[f"grad_{name}_max_abs"] = float(theirs.abs().max())
        print(json.dumps(row))


if __name__ == "__main__":
    main()
