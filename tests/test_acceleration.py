"""Exactness of the pre-training accelerations (recbole_adaptssr/acceleration.py) on the CPU: device batches equal
RecBole's loader batches (same order, same generator afterwards), the device loss sum equals the Python-float sum,
a pre-training run with the accelerations gives bitwise the eager run's numbers, fused and foreach Adam agree
with the for-loop Adam within float32 rounding, and the settings are read per stage. The CUDA-only parts (graph
replay, fused CUDA Adam, TF32) are checked on the GPU by ``scripts/bench_pretrain.py --e2e --check``; the graph
test below runs where CUDA is available."""

import copy

import numpy as np
import pytest
import torch
from recbole.data.dataloader import TrainDataLoader
from recbole.utils import init_seed

from recbole_adaptssr import acceleration
from recbole_adaptssr.acceleration import DeviceBatches, accumulate_losses, loader_index_batches, losses_to_float
from recbole_adaptssr.config import Config
from recbole_adaptssr.data.utils import create_dataset
from recbole_adaptssr.encoder.user_model import UserModel
from recbole_adaptssr.experiment import pretrain


def _loaders(tiny_config, n=2, **extra):
    config = Config(model="AdaptSSR", dataset="tiny", config_dict={**tiny_config, **extra})
    init_seed(config["seed"], config["reproducibility"])
    train_set, _ = create_dataset(config).build()
    return config, train_set, [TrainDataLoader(config, train_set, None, shuffle=True) for _ in range(n)]


def _same_batches(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert set(x.interaction) == set(y.interaction)
        for key in x.interaction:
            assert x[key].dtype == y[key].dtype, key
            assert torch.equal(x[key], y[key]), key


# ------------------------------------------------------------------------------------------------ device batches
def test_device_batches_are_the_loaders_batches_in_the_same_order_over_epochs(tiny_config):
    _, _, (recbole_loader, device_loader) = _loaders(tiny_config, train_batch_size=16)
    gathered = DeviceBatches("cpu")
    for epoch in range(3):
        expected = list(recbole_loader)
        got = gathered.epoch(device_loader)
        _same_batches(expected, got)
        assert len(expected) > 2 and expected[-1]["item_id_list"].size(0) < 16  # shuffled, a partial last batch
        assert torch.equal(recbole_loader.generator.get_state(), device_loader.generator.get_state())
    # the shuffle differs from epoch to epoch (the test would pass trivially on an unshuffled loader otherwise)
    first = [b["user_id"] for b in list(recbole_loader)]
    second = [b["user_id"] for b in list(recbole_loader)]
    assert not all(torch.equal(a, b) for a, b in zip(first, second))


def test_loader_index_batches_restores_the_collate_and_advances_the_generator_as_an_epoch(tiny_config):
    _, train_set, (a, b) = _loaders(tiny_config, train_batch_size=16)
    collate = b.collate_fn
    indices = loader_index_batches(b)
    assert b.collate_fn == collate
    assert all(isinstance(i, np.ndarray) and i.dtype == np.int64 for i in indices)
    batches = list(a)
    for index, batch in zip(indices, batches):
        assert torch.equal(train_set.inter_feat["user_id"][torch.from_numpy(index)], batch["user_id"])
    # the next epoch of both loaders is the same again
    _same_batches(list(a), list(b))


def test_device_batches_refuse_loaders_whose_collate_is_not_the_identity(tiny_config):
    config, train_set, (loader, _) = _loaders(tiny_config)
    assert DeviceBatches.supports(loader)
    loader.neg_sample_args = dict(loader.neg_sample_args, distribution="uniform")
    assert not DeviceBatches.supports(loader)


# ------------------------------------------------------------------------------------------------ loss sums
def test_device_loss_sum_equals_the_python_float_sum_bitwise():
    generator = torch.Generator().manual_seed(0)
    losses = (torch.rand(500, generator=generator, dtype=torch.float32) * 7).unbind()
    total, python = None, None
    for loss in losses:
        total = accumulate_losses(total, loss)
        python = float(loss) if python is None else python + float(loss)
    assert losses_to_float(total) == python
    parts, python_parts = None, None
    for a, b in zip(losses[::2], losses[1::2]):
        parts = accumulate_losses(parts, (a, b))
        values = (float(a), float(b))
        python_parts = values if python_parts is None else tuple(map(sum, zip(python_parts, values)))
    assert losses_to_float(parts) == python_parts
    assert losses_to_float(None) is None


# ------------------------------------------------------------------------------------------------ whole runs
def _run(tiny_config, tmp_path, tag, **settings):
    config = Config(model="AdaptSSR", dataset="tiny", config_dict={**tiny_config, "checkpoint_dir": str(tmp_path / tag),
                                                                   "mlm_epochs": 1, "ssr_epochs": 2, **settings})
    results = pretrain(config, str(tmp_path / tag))
    states = {stage: torch.load(r.checkpoint, weights_only=False)["state_dict"] for stage, r in results.items()}
    return results, states


def test_pretraining_with_the_exact_accelerations_is_bitwise_the_eager_run(tiny_config, tmp_path):
    eager, eager_states = _run(tiny_config, tmp_path, "eager", device_batches=False, cuda_graphs=False)
    fast, fast_states = _run(tiny_config, tmp_path, "fast")  # the defaults (cuda_graphs is a no-op on the CPU)
    for stage in ("mlm", "ssr"):
        assert eager[stage].history == fast[stage].history
        assert eager[stage].initial == fast[stage].initial
        assert all(torch.equal(eager_states[stage][k], fast_states[stage][k]) for k in eager_states[stage])
    # not vacuous: a different seed gives other numbers
    other, _ = _run(tiny_config, tmp_path, "other", seed=7)
    assert other["ssr"].history != fast["ssr"].history


def test_fused_optimizer_setting_builds_a_fused_adam_per_stage(tiny_config, tmp_path):
    from recbole_adaptssr.trainer import AdaptSSRTrainer

    built = []
    original = AdaptSSRTrainer._train_epoch

    def spy(self, *args, **kwargs):
        built.append((self.model.train_stage, bool(self.optimizer.defaults.get("fused"))))
        return original(self, *args, **kwargs)

    AdaptSSRTrainer._train_epoch = spy
    try:
        results, _ = _run(tiny_config, tmp_path, "fused", ssr_fused_optimizer=True, ssr_epochs=1)
    finally:
        AdaptSSRTrainer._train_epoch = original
    assert built == [("mlm", False), ("ssr", True)]
    assert np.isfinite(results["ssr"].history[-1]["train_loss"])


def test_a_setting_that_is_not_a_bool_is_an_error_naming_the_key(tiny_config, tmp_path):
    with pytest.raises(ValueError, match="ssr_device_batches must be True or False"):
        _run(tiny_config, tmp_path, "bad", ssr_device_batches="yes")


# ------------------------------------------------------------------------------------------------ optimizers
def _one_model_and_grads(seed=0):
    torch.manual_seed(seed)
    model = UserModel(n_items=300, max_seq_length=12, hidden_size=16, n_layers=1, n_heads=2, inner_size=32)
    seq = torch.randint(1, 300, (8, 12))
    seq[:, 9:] = 0
    return model, seq


@pytest.mark.parametrize("variant", ["foreach", "fused"])
def test_foreach_and_fused_adam_agree_with_the_for_loop_adam_within_float32_rounding(variant):
    """From the same parameters and the same gradients (three steps of fixed gradients: the moments and the bias
    corrections move), the updates agree to float32 rounding; not necessarily bitwise."""
    model, seq = _one_model_and_grads()
    model.train(False)
    model(seq).square().sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    initial = [p.detach().clone() for p in model.parameters()]
    lr = 1e-2
    params = {}
    for name in ("loop", variant):
        tensors = [torch.nn.Parameter(p.clone()) for p in initial]
        if name == "fused":
            optimizer = acceleration.build_fused_optimizer(tensors, "adam", lr, 0.0)
            assert optimizer.defaults["fused"]
        else:
            optimizer = torch.optim.Adam(tensors, lr=lr, foreach=name == "foreach")
        for step in range(3):
            for p, g in zip(tensors, grads):
                p.grad = g * (step + 1)
            optimizer.step()
        params[name] = [p.detach() for p in tensors]
    for a, b, start in zip(params["loop"], params[variant], initial):
        # each step moves a parameter by at most about lr; rounding of that update is far below lr * 1e-5
        torch.testing.assert_close(b, a, rtol=0, atol=lr * 1e-5)
    assert sum(int((a != s).sum()) for a, s in zip(params["loop"], initial)) > 100  # the steps moved the parameters


def test_build_fused_optimizer_leaves_other_learners_to_recbole():
    params = [torch.nn.Parameter(torch.zeros(3))]
    assert acceleration.build_fused_optimizer(params, "sgd", 0.1, 0.0) is None
    assert isinstance(acceleration.build_fused_optimizer(params, "AdamW", 0.1, 0.0), torch.optim.AdamW)


# ------------------------------------------------------------------------------------------------ CUDA graphs
@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU (bench_pretrain.py --check)")
def test_graph_replay_is_bitwise_the_eager_step():
    from recbole.data.interaction import Interaction

    from recbole_adaptssr.acceleration import GraphedStep

    device = torch.device("cuda")
    torch.manual_seed(0)
    model, _ = _one_model_and_grads()
    model = model.to(device)

    def loss_func(batch):
        return model(batch["seq"]).square().mean()

    batches = [Interaction({"seq": torch.randint(1, 300, (8, 12), device=device)}) for _ in range(3)]
    initial = copy.deepcopy(model.state_dict())
    results = []
    for graphed in (False, True):
        model.load_state_dict(initial)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
        torch.manual_seed(5)
        step = GraphedStep(model, loss_func, batches[0], device) if graphed else None
        if step is not None:
            step.capture()
        losses = []
        for batch in batches:
            if step is None:
                optimizer.zero_grad()
                loss = loss_func(batch)
                loss.backward()
            else:
                loss = step.run(batch)
            losses.append(float(loss.detach()))
            optimizer.step()
        results.append((losses, copy.deepcopy(model.state_dict())))
        # the eager pass's last loss keeps its autograd graph, and with it the parameters' AccumulateGrad nodes
        # recorded on the default stream, alive: a capture must not see it (GraphedStep.capture's docstring)
        del loss
    assert results[0][0] == results[1][0]
    assert all(torch.equal(results[0][1][k], results[1][1][k]) for k in initial)


# ------------------------------------------------------------------------------------------------ issue 23 settings
def test_sparse_item_update_builds_row_sparse_adam_for_its_stage_only(tiny_config, tmp_path):
    from recbole_adaptssr.row_sparse_adam import RowSparseAdam
    from recbole_adaptssr.trainer import AdaptSSRTrainer

    built = []
    original = AdaptSSRTrainer._train_epoch

    def spy(self, *args, **kwargs):
        built.append((self.model.train_stage, type(self.optimizer)))
        return original(self, *args, **kwargs)

    AdaptSSRTrainer._train_epoch = spy
    try:
        results, states = _run(tiny_config, tmp_path, "sparse", ssr_sparse_item_update=True, ssr_epochs=1)
        _, dense_states = _run(tiny_config, tmp_path, "dense", ssr_epochs=1)
    finally:
        AdaptSSRTrainer._train_epoch = original
    assert [(stage, kind is RowSparseAdam) for stage, kind in built] == [("mlm", False), ("ssr", True),
                                                                         ("mlm", False), ("ssr", False)]
    assert np.isfinite(results["ssr"].history[-1]["train_loss"])
    table = "user_model.item_embedding.weight"
    assert torch.equal(states["mlm"][table], dense_states["mlm"][table])
    assert not torch.equal(states["ssr"][table], dense_states["ssr"][table])  # lazy Adam: other numbers


def test_precision_settings_reach_the_steps_and_bad_values_name_the_key(tiny_config, tmp_path):
    from recbole_adaptssr.trainer import TaskTrainer

    seen = []
    original = TaskTrainer._train_step

    def spy(self, *args, **kwargs):
        seen.append((getattr(self.model, "train_stage", None), self.precision))
        return original(self, *args, **kwargs)

    TaskTrainer._train_step = spy
    try:
        results, states = _run(tiny_config, tmp_path, "bf16", ssr_precision="bf16", mlm_epochs=1, ssr_epochs=1,
                               device_batches=False)
        _, float32_states = _run(tiny_config, tmp_path, "f32", mlm_epochs=1, ssr_epochs=1, device_batches=False)
    finally:
        TaskTrainer._train_step = original
    assert sorted(set(seen)) == [("mlm", "float32"), ("ssr", "bf16"), ("ssr", "float32")]
    assert np.isfinite(results["ssr"].history[-1]["train_loss"])
    key = "user_model.encoder.layer.0.feed_forward.dense_1.weight"
    assert torch.equal(states["mlm"][key], float32_states["mlm"][key])
    assert not torch.equal(states["ssr"][key], float32_states["ssr"][key])
    with pytest.raises(ValueError, match=r"mlm_precision must be one of \['float32', 'tf32', 'bf16'\], got 'fp16'"):
        _run(tiny_config, tmp_path, "bad", mlm_precision="fp16")


def test_item_softmax_precision_follows_the_stage_precision_unless_set(tiny_config):
    from recbole_adaptssr.model.adaptssr import AdaptSSR

    config, train_set, _ = _loaders(tiny_config, n=0, mlm_precision="bf16")
    assert AdaptSSR(config, train_set).pretext["mlm"].item_softmax_options["precision"] == "bf16"
    config, train_set, _ = _loaders(tiny_config, n=0)
    assert AdaptSSR(config, train_set).pretext["mlm"].item_softmax_options["precision"] == "tf32x3"
    config, train_set, _ = _loaders(tiny_config, n=0, precision="tf32", item_softmax_precision="tf32x3")
    assert AdaptSSR(config, train_set).pretext["mlm"].item_softmax_options["precision"] == "tf32x3"


def test_finetune_precision_is_the_task_trainers(tiny_config):
    from recbole_adaptssr.model.adaptssr import AdaptSSR
    from recbole_adaptssr.trainer import TaskTrainer

    for extra, expected in (({}, "float32"), ({"precision": "tf32"}, "tf32"),
                            ({"precision": "tf32", "finetune_precision": "bf16"}, "bf16")):
        config, train_set, _ = _loaders(tiny_config, n=0, **extra)
        assert TaskTrainer(config, AdaptSSR(config, train_set)).precision == expected


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the lagged check copies to pinned memory (CUDA)")
def test_lagged_nan_check_raises_one_step_later():
    check = acceleration.LaggedNanCheck(torch.device("cuda"))
    check.push(torch.tensor(1.0, device="cuda"))
    check.push(torch.tensor(float("nan"), device="cuda"))  # read at the next push
    with pytest.raises(ValueError, match="Training loss is nan"):
        check.push(torch.tensor(1.0, device="cuda"))
    check.push(torch.tensor(float("nan"), device="cuda"))
    with pytest.raises(ValueError, match="Training loss is nan"):
        check.flush()
