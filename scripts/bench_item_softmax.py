"""Full-softmax item cross-entropy: the direct full-logits computation against the blocked one.

Times one forward + backward of the MLM loss over all items, ``F.cross_entropy(hidden @ W.T + b, targets)``
("naive") and :func:`recbole_adaptssr.item_softmax.item_cross_entropy` (``--methods``: the blocked kernel, the fused
Triton kernels at each precision), on random data, and reports ms per forward+backward, peak memory and the
differences of the loss and the gradients from the naive float32 and (``--float64-reference``) float64 ones.

    python scripts/bench_item_softmax.py --device cuda --scale ttl
    python scripts/bench_item_softmax.py --device cuda --methods blocked,fused:ieee,fused:tf32x3,fused:tf32 --float64-reference
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
import copy
import json
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from recbole_adaptssr import item_softmax  # noqa: E402  (torch only: no RecBole import)
from recbole_adaptssr import item_softmax_fused as fused  # noqa: E402

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
    return F.cross_entropy(logits if logits.dtype == torch.float64 else logits.float(), targets)


def make_method(kernel, precision, block_rows, block_items, capacity=None, expected_rows=None):
    """The method's loss; with ``capacity``, the rows padded to ``capacity`` and their count passed as a device
    tensor (``valid_rows``, as MLM's graph-capturable step does)."""
    def loss(hidden, weight, targets, bias):
        options = dict(block_rows=block_rows, block_items=block_items, kernel=kernel, precision=precision)
        if capacity:
            n = hidden.size(0)
            hidden = torch.cat([hidden, hidden.new_zeros(capacity - n, hidden.size(1))])
            targets = torch.cat([targets, targets.new_zeros(capacity - n)])
            options.update(valid_rows=torch.full((1,), n, device=hidden.device), expected_rows=expected_rows)
        return item_softmax.item_cross_entropy(hidden, weight, targets, bias, **options)

    return loss


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run(method, inputs, targets, repeat, device, profile=False):
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
    if profile and device.type == "cuda":  # GPU time per kernel of one more forward+backward
        from torch.profiler import ProfilerActivity
        from torch.profiler import profile as profiler

        with profiler(activities=[ProfilerActivity.CUDA]) as prof:
            method(inputs[0], inputs[1], targets, inputs[2]).backward()
            synchronize(device)
        for x in inputs:
            if x is not None:
                x.grad = None
        events = [e for e in prof.key_averages() if e.self_device_time_total > 0]
        stats["kernels_ms"] = {e.key[:60]: round(e.self_device_time_total / 1e3, 2)
                               for e in sorted(events, key=lambda e: -e.self_device_time_total)[:8]}
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
    parser.add_argument("--methods", default="blocked",
                        help="comma-separated: blocked, fused:ieee, fused:tf32x3, fused:tf32, fused:bf16 (fused: float32 "
                             "inputs on CUDA)")
    parser.add_argument("--capacity", type=int, help="pad the rows to this many and pass their count (valid_rows)")
    parser.add_argument("--expected-rows", type=int, help="with --capacity: expected_rows (default: --rows)")
    parser.add_argument("--fused-tiles", nargs="+", default=[None],
                        help="fused kernels' ROWSxITEMSxWARPSxSTAGES, e.g. 64x128x4x2 (default: the module's)")
    parser.add_argument("--profile", action="store_true", help="CUDA: GPU time of the top kernels of one pass")
    parser.add_argument("--skip-naive", action="store_true", help="no float32 F.cross_entropy run (nor its differences)")
    parser.add_argument("--float64-reference", action="store_true",
                        help="also each method's difference from the float64 naive computation (memory: ~3 (N x V) doubles)")
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
              "threads": torch.get_num_threads(), "dtype": args.dtype, "bias": not args.no_bias, **scale,
              "capacity": args.capacity, "torch": torch.__version__}
    print(json.dumps(header))

    # the blocked / fused configurations first: the naive one leaves device segments the caching allocator keeps
    results = []
    defaults = copy.deepcopy(fused.TILES)
    model = fused._device_model(device)
    for method in args.methods.split(","):
        kernel, _, precision = method.partition(":")
        configs = ([(None, None, tiles) for tiles in args.fused_tiles] if kernel == "fused"
                   else [(r, i, None) for r in args.block_rows for i in args.block_items])
        for block_rows, block_items, tiles in configs:
            label = {"method": method}
            if tiles:  # rows x items per tile, warps, pipeline stages
                fused.TILES[model][precision or "tf32x3"] = tuple(int(v) for v in tiles.split("x"))
                label["tiles"] = tiles
            elif kernel != "fused":
                label["block_rows"], label["block_items"] = item_softmax._default_blocks(device, block_rows,
                                                                                         block_items)
            try:
                method_fn = make_method(kernel, precision or "tf32x3", block_rows, block_items, args.capacity,
                                        args.expected_rows or n_rows)
                loss, grads, stats = run(method_fn, inputs, targets, args.repeat, device, args.profile)
            except Exception as error:  # a tile shape the device cannot hold (Triton's OutOfResources): next one
                print(json.dumps({**label, "error": f"{type(error).__name__}: {error}"}), flush=True)
                continue
            finally:
                fused.TILES.update(copy.deepcopy(defaults))
            print(json.dumps({**label, **stats}), flush=True)
            results.append((label, loss, grads))
    references = []
    if not args.skip_naive:
        references.append(("naive", run(naive_loss, inputs, targets, args.repeat, device)))
        print(json.dumps({"method": "naive", **references[-1][1][2]}), flush=True)
    if args.float64_reference:  # the exact values: the naive computation in float64, once, untimed
        wide = [None if x is None else x.detach().double().requires_grad_() for x in inputs]
        loss = naive_loss(wide[0], wide[1], targets, wide[2]).double()
        loss.backward()
        references.append(("float64", (loss.detach().cpu(), [None if x is None else x.grad.cpu() for x in wide], {})))
        del wide, loss
    for name, (reference_loss, reference_grads, _) in references:
        for label, loss, grads in results:
            row = {"difference": f"{label['method']} - {name}", **label, "loss": float(reference_loss),
                   "loss_abs_diff": float((loss.double() - reference_loss.double()).abs())}
            for key, mine, theirs in zip(("hidden", "item_weight", "bias"), grads, reference_grads):
                if mine is not None:
                    theirs = theirs.double()
                    row[f"grad_{key}_max_abs_diff"] = float((mine.double() - theirs).abs().max())
                    row[f"grad_{key}_relative_norm_diff"] = float((mine.double() - theirs).norm() / theirs.norm())
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
