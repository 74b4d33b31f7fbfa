"""Throughput and peak memory of AdaptSSR pre-training (MLM and ranking) at a chosen scale.

Model-step mode (default): times full training steps (augmentation on the device, one forward of the stacked
views, loss, backward, Adam step) of the eager model on random behaviour sequences; the default scale is the TTL
release (645,972 behaviours, L = 100, B = 128).

    python scripts/bench_pretrain.py --device cuda --steps 50
    python scripts/bench_pretrain.py --device cpu --items 1700 --steps 5 --batch 128

End-to-end mode (``--e2e``): writes a TTL-scale atomic data set (645,972 behaviour items, every one used, lengths
uniform in 10..100, ``--users`` users), then runs ``pretrain()`` (RecBole data set, TrainDataLoader, AdaptSSRTrainer,
validation after every epoch, checkpoints) once per ``--variants`` entry (settings of
recbole_adaptssr/acceleration.py) and reports per stage (scripts/stage_timing.py): the steady-state ms/step and
sequences/s of the first epoch after its warm-up steps (the first step, with kernel compilation and graph capture,
is reported apart), the time from the start of pretrain() to the end of the stage's first step, and the stage's
peak GPU memory, allocated and reserved, validation included. Variants with the same numbers by design are
compared: their histories (train loss, every validation statistic) and final parameters. The entry point itself
at the users' scale: scripts/bench_entrypoint.py.

    python scripts/bench_pretrain.py --e2e --check --users 30000 --json out.json

``--check`` (CUDA): the one-step (and several-step) exactness checks on the GPU at the chosen scale: the CUDA
graph replay against eager steps (losses and parameters, bitwise), fused against foreach Adam, TF32 against
float32 MLM, and device batches against RecBole's loader batches.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # stage_timing

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
        "ssr_infonce_similarity": "cos",
        "head_hidden_size": 64, "head_dropout_prob": 0.1, "item_softmax_kernel": "auto",
        "item_softmax_precision": "tf32x3", "encoder_kernel": "auto", "precision": "float32",
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
        reserved = torch.cuda.max_memory_reserved(device) / 2**20
        print(f"    cuda max reserved: {reserved:.0f} MiB", flush=True)
        peak_kind = "cuda max allocated"
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        peak_kind = "process peak RSS"
    return {"stage": stage, "device": str(device), "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else "",
            "items": args.items, "max_len": args.max_len, "batch": args.batch, "ms_per_step": 1000 * seconds,
            "sequences_per_s": args.batch / seconds, "peak_mib": peak, "peak_kind": peak_kind,
            "torch": torch.__version__}


# ----------------------------------------------------------------------------------------------- end to end
TTL_ITEMS = 645_972
VARIANTS = {
    # the step before acceleration.py: loader batches, no graphs, RecBole's Transformer layers
    "eager": {"device_batches": False, "cuda_graphs": False, "encoder_kernel": "eager"},
    "default": {},  # the package's defaults (float32)
    "eager_encoder": {"encoder_kernel": "eager"},  # the defaults with RecBole's layers instead of the fused ones
    "fused": {"fused_optimizer": True},
    "sparse": {"sparse_item_update": True},
    "fused_sparse": {"fused_optimizer": True, "sparse_item_update": True},
    "fused_tf32": {"fused_optimizer": True, "pretrain_tf32": True},
    "eager2": {"device_batches": False, "cuda_graphs": False, "encoder_kernel": "eager"},  # run-to-run
    # the full-softmax cross-entropy (MLM): the blocked kernel (the default before the fused one)
    "blocked": {"item_softmax_kernel": "blocked"},
    "eager_blocked": {"device_batches": False, "cuda_graphs": False, "item_softmax_kernel": "blocked",
                      "encoder_kernel": "eager"},
    "mlm_ungraphed": {"mlm_cuda_graphs": False},
    # precision (recbole_adaptssr/precision.py)
    "tf32": {"precision": "tf32"},
    "bf16": {"precision": "bf16"},
    "bf16_fast": {"precision": "bf16", "fused_optimizer": True, "sparse_item_update": True},
    # every float32 option that changes the numbers (Adam's rounding, lazy Adam)
    "fast": {"fused_optimizer": True, "sparse_item_update": True},
}
# variants whose numbers must equal the eager ones (every optimisation in them claims exactness)
EXACT_VARIANTS = ("default",)


def write_ttl_like(folder: Path, users: int, items: int, min_len: int, max_len: int, seed: int) -> Path:
    """``folder/ttlbench/ttlbench.inter``: ``users`` users with uniform lengths in [min_len, max_len], behaviours
    uniform over ``items`` items, every item used at least once (so the vocabulary is the TTL one)."""
    import numpy as np
    import pandas as pd

    target = folder / "ttlbench" / "ttlbench.inter"
    marker = target.with_suffix(".args")
    args = f"{users} {items} {min_len} {max_len} {seed}"
    if target.exists() and marker.exists() and marker.read_text() == args:
        return folder
    target.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    lengths = rng.integers(min_len, max_len + 1, users)
    total = int(lengths.sum())
    if total < items:
        raise SystemExit(f"{users} users x mean length hold {total} behaviours < {items} items: use more users")
    item = rng.integers(1, items + 1, total)
    item[rng.permutation(total)[:items]] = rng.permutation(items) + 1  # every item once at a random place
    user = np.repeat(np.arange(1, users + 1), lengths)
    starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
    time_ = np.arange(total) - starts
    frame = pd.DataFrame({"user_id:token": user, "item_id:token": item, "timestamp:float": time_})
    frame.to_csv(target, sep="\t", index=False)
    marker.write_text(args)
    return folder


def _sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def run_e2e(args, variant: str, overrides: dict, data_root: Path, work: Path) -> dict:
    """``pretrain()`` on the data set with ``overrides``; per-stage timings and memory (scripts/stage_timing.py)."""
    from stage_timing import StageTimer

    from recbole_adaptssr.config import Config
    from recbole_adaptssr.experiment import pretrain

    cuda = args.device.startswith("cuda")
    config_dict = {
        "data_path": str(data_root), "checkpoint_dir": str(work / "saved"), "device": args.device,
        "use_gpu": cuda, "show_progress": False, "state": "INFO" if args.verbose else "WARNING",
        "MAX_ITEM_LIST_LENGTH": args.max_len, "train_batch_size": args.batch, "seed": args.seed,
        "pretrain_stages": args.stages.split(","), "mlm_epochs": args.mlm_epochs, "ssr_epochs": args.ssr_epochs,
        "mlm_mask_ratio": args.mlm_mask_ratio, "mlm_stopping_step": 100, "stopping_step": 100,
        "downstream_tasks": [], **overrides,
    }
    config = Config(model="AdaptSSR", dataset="ttlbench", config_dict=config_dict)
    with StageTimer(cuda) as timer:  # its clock starts here: time to first step counts from pretrain()'s call
        results = pretrain(config, str(work / f"run-{variant}"))
    state = {}
    for stage, result in results.items():
        rec = timer.records[stage]
        # the steady state of the first epoch (after the warm-up steps), not an epoch average that includes the
        # first step's compilation and capture
        first = rec["epochs"][0]
        rec.update(ms_per_step=first.get("steady_ms_per_step", float("nan")),
                   sequences_per_s=first.get("steady_sequences_per_s", float("nan")),
                   history=result.history, initial=result.initial, checkpoint=result.checkpoint)
        state[stage] = torch.load(result.checkpoint, map_location="cpu", weights_only=False)["state_dict"]
    return {"variant": variant, "overrides": overrides, "stages": timer.records, "_state": state}


def compare_runs(reference: dict, other: dict) -> dict:
    """Per stage: whether the histories are equal, and how many parameters differ (and by how much)."""
    out = {}
    for stage, rec in reference["stages"].items():
        a, b = reference["_state"][stage], other["_state"][stage]
        diff = max((float((a[k].double() - b[k].double()).abs().max()) for k in a if a[k].is_floating_point()),
                   default=0.0)
        out[stage] = {"history_equal": rec["history"] == other["stages"][stage]["history"],
                      "parameters_bitwise_equal": all(torch.equal(a[k], b[k]) for k in a),
                      "max_abs_parameter_difference": diff}
    return out


def check_device_batches(args, data_root: Path) -> dict:
    """One shuffled epoch of RecBole's TrainDataLoader (collate, .to(device)) against DeviceBatches."""
    from recbole.data.dataloader import TrainDataLoader

    from recbole_adaptssr.acceleration import DeviceBatches
    from recbole_adaptssr.config import Config
    from recbole_adaptssr.data.utils import create_dataset

    config = Config(model="AdaptSSR", dataset="ttlbench", config_dict={
        "data_path": str(data_root), "device": args.device, "MAX_ITEM_LIST_LENGTH": args.max_len,
        "train_batch_size": args.batch, "seed": args.seed, "state": "WARNING", "show_progress": False})
    train_set, _ = create_dataset(config).build()
    loaders = [TrainDataLoader(config, train_set, None, shuffle=True) for _ in range(2)]
    device = torch.device(args.device)
    start = time.perf_counter()
    reference = [batch.to(device) for batch in loaders[0]]
    _sync()
    recbole_s = time.perf_counter() - start
    start = time.perf_counter()
    gathered = DeviceBatches(device).epoch(loaders[1])
    _sync()
    device_s = time.perf_counter() - start
    equal = len(reference) == len(gathered) and all(
        set(a.interaction) == set(b.interaction) and all(torch.equal(a[k], b[k]) and a[k].dtype == b[k].dtype
                                                         for k in a.interaction)
        for a, b in zip(reference, gathered))
    return {"batches": len(reference), "equal": bool(equal), "recbole_epoch_s": recbole_s,
            "device_epoch_s_first_including_copy": device_s,
            "generators_equal": torch.equal(loaders[0].generator.get_state(), loaders[1].generator.get_state())}


def profile_steps(model, batches, args, device) -> dict:
    """Kernels per ranking step and their GPU time (eager step; and the graphed step's replay), top kernels."""
    from torch.profiler import ProfilerActivity, profile

    from recbole_adaptssr.acceleration import GraphedStep

    optimizer = torch.optim.Adam(model.parameters(), lr=2e-4)
    full = batches[0]
    step = GraphedStep(model, model.calculate_loss, full, device)
    step.capture()
    out = {}
    for mode in ("eager", "graphed"):
        def one():
            if mode == "graphed":
                step.run(full)
            else:
                optimizer.zero_grad()
                model.calculate_loss(full).backward()
            optimizer.step()
        for _ in range(3):
            one()
        _sync()
        n = 10
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            for _ in range(n):
                one()
            _sync()
        events = [e for e in prof.key_averages() if e.device_type == torch.autograd.DeviceType.CUDA]
        kernels = sum(e.count for e in events) / n
        gpu_ms = sum(e.self_device_time_total for e in events) / n / 1000
        top = sorted(events, key=lambda e: -e.self_device_time_total)[:12]
        out[mode] = {"kernels_per_step": kernels, "gpu_busy_ms_per_step": gpu_ms,
                     "top": [(e.key[:80], e.count // n, round(e.self_device_time_total / n / 1000, 4)) for e in top]}
        _sync()
        start = time.perf_counter()
        for _ in range(50):
            one()
        _sync()
        out[mode]["wall_ms_per_step"] = (time.perf_counter() - start) / 50 * 1000
    step.close()
    return out


def check_steps(args) -> dict:
    """On the GPU at the chosen scale: graph replay vs eager steps (ranking and MLM, bitwise), fused vs foreach
    Adam, the fused encoder vs RecBole's layers (no dropout), TF32 and bf16 vs float32 MLM."""
    import copy

    from recbole.data.interaction import Interaction

    from recbole_adaptssr.acceleration import GraphedStep
    from recbole_adaptssr.precision import training_precision

    device = torch.device(args.device)
    out = {}

    def batch(model, size, seed):
        g = torch.Generator(device="cpu").manual_seed(seed)
        lengths = torch.randint(10, args.max_len + 1, (size,), generator=g)
        seq = torch.randint(1, args.items, (size, args.max_len), generator=g)
        seq = seq * (torch.arange(args.max_len)[None, :] < lengths[:, None])
        return Interaction({model.ITEM_SEQ: seq.to(device), model.ITEM_SEQ_LEN: lengths.to(device)})

    def diff(a, b):
        return {"bitwise_equal": all(torch.equal(a[k], b[k]) for k in a),
                "differing_elements": int(sum(int((a[k] != b[k]).sum()) for k in a)),
                "max_abs_difference": max(float((a[k].double() - b[k].double()).abs().max()) for k in a)}

    def steps(model, initial, batches, graphed, fused=False, precision="float32"):
        model.load_state_dict(initial)
        optimizer = torch.optim.Adam(model.parameters(), lr=2e-4, fused=fused or None)
        torch.manual_seed(7)
        step, losses = None, []
        for b in batches:
            if graphed and b[model.ITEM_SEQ].size(0) == args.batch:
                if step is None:
                    step = GraphedStep(model, model.calculate_loss, b, device,
                                       context=lambda: training_precision(device, precision))
                    step.capture()
                loss = step.run(b)
            else:
                optimizer.zero_grad()
                with training_precision(device, precision):
                    loss = model.calculate_loss(b)
                loss.backward()
            losses.append(float(loss.detach()))
            optimizer.step()
        _sync()
        if step is not None:
            step.close()
        return losses, {k: v.detach().clone() for k, v in model.state_dict().items()}

    def graph_check(stage, precision="float32"):
        torch.manual_seed(0)
        model = build_model(args.items, args.max_len, device, stage)
        initial = copy.deepcopy(model.state_dict())
        batches = [batch(model, args.batch, 1), batch(model, args.batch, 2), batch(model, args.batch // 2 + 3, 3),
                   batch(model, args.batch, 4), batch(model, args.batch, 5)]
        eager_losses, eager_state = steps(model, initial, batches, False, precision=precision)
        _, eager2_state = steps(model, initial, batches, False, precision=precision)
        graph_losses, graph_state = steps(model, initial, batches, True, precision=precision)
        result = {"steps": len(batches), "partial_batch_at": 2, "precision": precision,
                  "eager_losses": eager_losses, "graph_losses": graph_losses,
                  "losses_equal": eager_losses == graph_losses, **diff(eager_state, graph_state),
                  "eager_rerun_bitwise_equal": diff(eager_state, eager2_state)["bitwise_equal"]}
        return model, initial, batches, (eager_losses, eager_state), result

    model, initial, batches, (eager_losses, eager_state), out["cuda_graph_vs_eager"] = graph_check("ssr")
    print(json.dumps({"cuda_graph_vs_eager": out["cuda_graph_vs_eager"]}), flush=True)
    fused_losses, fused_state = steps(model, initial, batches, False, fused=True)
    out["fused_vs_foreach_adam"] = {"losses": [fused_losses, eager_losses], **diff(eager_state, fused_state),
                                    "max_relative_difference_of_update": max(
                                        float(((eager_state[k] - fused_state[k]).abs()
                                               / (eager_state[k] - initial[k]).abs().clamp(min=1e-30)).max())
                                        for k in eager_state if eager_state[k].is_floating_point()
                                        and not torch.equal(eager_state[k], initial[k]))}
    out["profile"] = profile_steps(model, batches, args, device)
    print(json.dumps({"profile": out["profile"]}), flush=True)
    # the fused encoder against RecBole's layers, no dropout: forward and the gradients of a scalar of it
    model.load_state_dict(initial)
    model.eval()
    encoder, seq = model.user_model, batches[0][model.ITEM_SEQ]
    outputs = {}
    for kernel in ("eager", "fused"):
        encoder.encoder_kernel = kernel
        model.zero_grad(set_to_none=True)
        u = encoder(seq)
        u.square().sum().backward()
        outputs[kernel] = (u.detach(), torch.cat([p.grad.flatten() for p in encoder.parameters() if p.grad is not None]))
    encoder.encoder_kernel = "auto"
    model.train()
    out["fused_vs_eager_encoder"] = {
        "output_relative_norm_difference": float((outputs["fused"][0] - outputs["eager"][0]).norm()
                                                 / outputs["eager"][0].norm()),
        "gradient_relative_norm_difference": float((outputs["fused"][1] - outputs["eager"][1]).norm()
                                                   / outputs["eager"][1].norm())}
    del model, encoder
    torch.cuda.empty_cache()
    _, _, _, _, out["mlm_cuda_graph_vs_eager"] = graph_check("mlm")
    print(json.dumps({"mlm_cuda_graph_vs_eager": out["mlm_cuda_graph_vs_eager"]}), flush=True)
    _, _, _, _, out["mlm_bf16_cuda_graph_vs_eager"] = graph_check("mlm", precision="bf16")
    torch.cuda.empty_cache()
    # TF32 and bf16 against float32: one MLM loss and its gradients (the same dropout and masks: seeded)
    torch.manual_seed(0)
    model = build_model(args.items, args.max_len, device, "mlm")
    mlm_batch = batch(model, args.batch, 1)
    grads = {}
    for precision in ("float32", "tf32", "bf16"):
        task = model.pretext_task
        task.item_softmax_options["precision"] = {"float32": "tf32x3", "tf32": "tf32", "bf16": "bf16"}[precision]
        model.zero_grad(set_to_none=True)
        torch.manual_seed(3)
        with training_precision(device, precision):
            loss = model.calculate_loss(mlm_batch)
        loss.backward()
        grads[precision] = (float(loss), torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    loss32, grad32 = grads["float32"]
    for precision in ("tf32", "bf16"):
        loss, grad = grads[precision]
        out[f"{precision}_vs_float32_mlm"] = {
            "loss_float32": loss32, f"loss_{precision}": loss, "loss_relative_difference": abs(loss - loss32) / loss32,
            "gradient_relative_norm_difference": float((grad - grad32).norm() / grad32.norm())}
    return out


def e2e(args):
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    data_root = write_ttl_like(work / "data", args.users, args.items, 10, args.max_len, args.seed)
    report = {"device": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu",
              "torch": torch.__version__, "users": args.users, "items": args.items, "L": args.max_len,
              "B": args.batch, "mlm_mask_ratio": args.mlm_mask_ratio,
              "data_written_s": time.perf_counter() - start, "runs": [], "checks": {}}
    if args.check:
        report["checks"]["device_batches"] = check_device_batches(args, data_root)
        print(json.dumps(report["checks"], indent=1), flush=True)
        if args.device.startswith("cuda"):
            report["checks"].update(check_steps(args))
            torch.cuda.empty_cache()
        print(json.dumps(report["checks"], indent=1), flush=True)
    runs = {}
    for entry in filter(None, args.variants.split(",")):  # --variants "" with --check: the checks alone
        variant, _, stages = entry.partition(":")  # eager:ssr runs only the ssr stage
        run_args = argparse.Namespace(**{**vars(args), "stages": stages.replace("+", ",") or args.stages})
        runs[entry] = run_e2e(run_args, entry, VARIANTS[variant], data_root, work)
        if args.device.startswith("cuda"):
            torch.cuda.empty_cache()
        for stage, rec in runs[entry]["stages"].items():
            print(f"{entry:>10} {stage:>4}: {rec['sequences_per_s']:.0f} sequences/s, {rec['ms_per_step']:.2f} ms/step, "
                  f"first step {rec['first_step_s']:.2f} s (graphed: {rec.get('graphed')}), time to first step "
                  f"{rec['time_to_first_step_s']:.1f} s, peak allocated {rec.get('peak_allocated_mib', 0):.0f} MiB, "
                  f"reserved {rec.get('peak_reserved_mib', 0):.0f} MiB, {rec['optimizer']}", flush=True)
    for entry in runs:  # each run against the first eager run of the same stages
        variant, _, stages = entry.partition(":")
        reference = next((e for e in runs if e.partition(":")[0] == "eager" and e.partition(":")[2] == stages), None)
        if reference is not None and reference != entry:
            runs[entry]["same_as_eager"] = compare_runs(runs[reference], runs[entry])
            print(entry, "vs", reference, json.dumps(runs[entry]["same_as_eager"]), flush=True)
    report["runs"] = [{k: v for k, v in run.items() if k != "_state"} for run in runs.values()]
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1, default=str))
    return report


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--items", type=int, default=645_972, help="behaviour vocabulary size (TTL: 645,972)")
    parser.add_argument("--max-len", type=int, default=100)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--stages", default=None, help="default: ssr,mlm (model steps); mlm,ssr (--e2e)")
    parser.add_argument("--json", default=None, help="also write the results here")
    parser.add_argument("--e2e", action="store_true", help="end to end through pretrain() on a written data set")
    parser.add_argument("--check", action="store_true", help="with --e2e: the exactness checks first")
    parser.add_argument("--users", type=int, default=30_000, help="--e2e: users of the written data set")
    parser.add_argument("--variants", default="eager_blocked,blocked,eager,default,fast", help=f"--e2e: of {list(VARIANTS)}")
    parser.add_argument("--mlm-epochs", type=int, default=1)
    parser.add_argument("--ssr-epochs", type=int, default=2)
    parser.add_argument("--mlm-mask-ratio", type=float, default=0.3)
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--work", default="/tmp/bench-pretrain", help="--e2e: data set and run folders")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    if args.stages is None:
        args.stages = "mlm,ssr" if args.e2e else "ssr,mlm"
    if args.e2e:
        recbole_adaptssr.setup()
        return e2e(args)
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
