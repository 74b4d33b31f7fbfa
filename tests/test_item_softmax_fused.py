"""The fused (Triton) full-softmax item cross-entropy, run on the CPU by Triton's interpreter.

The kernels are the ones a GPU runs (same tiles, masks, splits of the item range and reductions); the interpreter
executes them with numpy, so these tests check their arithmetic and indexing, not their speed. The GPU figures
come from ``scripts/bench_item_softmax.py --methods fused:...`` (docs/performance.md).
"""

from __future__ import annotations

import importlib
import os
import sys

import pytest
import torch
import torch.nn.functional as F

from recbole_adaptssr import item_softmax_fused
from recbole_adaptssr.item_softmax import item_cross_entropy

if "triton" not in sys.modules:  # Triton reads it when imported and when it decorates a kernel
    os.environ["TRITON_INTERPRET"] = "1"
triton = pytest.importorskip("triton", reason="Triton's interpreter runs the kernels on the CPU (test extra)")


@pytest.fixture(scope="module", autouse=True)
def interpreted_kernels(request):
    """The kernels' module imported under TRITON_INTERPRET=1."""
    if os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("Triton was imported before this module without TRITON_INTERPRET=1")
    sys.modules.pop("recbole_adaptssr.item_softmax_triton", None)
    importlib.import_module("recbole_adaptssr.item_softmax_triton")
    yield
    sys.modules.pop("recbole_adaptssr.item_softmax_triton", None)


def make_inputs(n_rows, n_items, dim, bias=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(n_rows, dim, generator=g, dtype=torch.float64)
    weight = torch.randn(n_items, dim, generator=g, dtype=torch.float64) * dim ** -0.5
    b = torch.randn(n_items, generator=g, dtype=torch.float64) * 0.5 if bias else None
    targets = torch.randint(0, n_items, (n_rows,), generator=g)
    return hidden, weight, b, targets


def loss_and_grads(fn, hidden, weight, bias, targets, reduction, upstream, dtype):
    xs = [x.detach().to(dtype).requires_grad_() for x in (hidden, weight, bias) if x is not None]
    loss = fn(xs[0], xs[1], targets, xs[2] if bias is not None else None, reduction)
    grads = torch.autograd.grad(loss, xs, upstream.to(dtype))
    return loss.detach().double(), [g.double() for g in grads]


def reference(hidden, weight, targets, bias, reduction):
    logits = hidden @ weight.t() + (0 if bias is None else bias)
    return F.cross_entropy(logits, targets, reduction=reduction)


# (N, V, d): rows below / above one tile's rows and not a multiple of them; items not a multiple of a tile's items
# and split into several ranges; d padded to the 16 / 64 the kernels use
SHAPES = [(37, 300, 24), (70, 1100, 64), (5, 1000, 64), (130, 129, 16)]


@pytest.mark.parametrize("precision", ["ieee", "tf32x3"])  # their own tile shapes (the interpreter's arithmetic is
@pytest.mark.parametrize("n_rows,n_items,dim", SHAPES)      # float32 for both: tf32x3's accuracy is a GPU figure)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("bias", [True, False])
def test_fused_loss_and_gradients_match_float64_reference(n_rows, n_items, dim, reduction, bias, precision):
    hidden, weight, b, targets = make_inputs(n_rows, n_items, dim, bias=bias)
    upstream = torch.randn(n_rows, dtype=torch.float64) if reduction == "none" else torch.tensor(1.7, dtype=torch.float64)

    def fused(h, w, t, bb, red):
        return item_cross_entropy(h, w, t, bb, reduction=red, kernel="fused", precision=precision)

    def blocked(h, w, t, bb, red):
        return item_cross_entropy(h, w, t, bb, reduction=red, kernel="blocked", block_rows=16, block_items=64)

    exact_loss, exact_grads = loss_and_grads(reference, hidden, weight, b, targets, reduction, upstream, torch.float64)
    fused_loss, fused_grads = loss_and_grads(fused, hidden, weight, b, targets, reduction, upstream, torch.float32)
    blocked_loss, blocked_grads = loss_and_grads(blocked, hidden, weight, b, targets, reduction, upstream,
                                                 torch.float32)
    assert fused_loss.shape == exact_loss.shape
    torch.testing.assert_close(fused_loss, exact_loss, rtol=1e-5, atol=1e-5)
    for mine, exact, theirs in zip(fused_grads, exact_grads, blocked_grads):
        assert mine.shape == exact.shape
        torch.testing.assert_close(mine, exact, rtol=1e-4, atol=1e-6)
        # float32 accuracy: no worse than the blocked float32 kernel's, up to a small factor
        assert (mine - exact).abs().max() <= 4 * (theirs - exact).abs().max() + 1e-7


@pytest.mark.parametrize("block_rows,block_items", [(64, 128), (32, 64)])
def test_item_range_is_split_into_nonempty_tile_aligned_ranges(block_rows, block_items):
    for n_rows in (1, 63, 64, 65, 2112, 20000):
        for n_items in (1, 127, 128, 129, 1100, 645_972):
            splits, per_split = item_softmax_fused._splits(n_rows, n_items, torch.device("cpu"), block_rows,
                                                           block_items)
            assert per_split % block_items == 0
            assert (splits - 1) * per_split < n_items <= splits * per_split  # every range holds an item
    # the CPU's 2 "multiprocessors" x 4 programs: one row block gets its items in several ranges
    assert item_softmax_fused._splits(37, 1100, torch.device("cpu"), block_rows, block_items)[0] > 1


def test_auto_is_blocked_off_cuda_even_where_the_interpreter_could_run_the_kernels(monkeypatch):
    hidden, weight, b, targets = make_inputs(37, 300, 24)
    calls = []
    original = item_softmax_fused._FusedItemCrossEntropy.apply
    monkeypatch.setattr(item_softmax_fused._FusedItemCrossEntropy, "apply",
                        lambda *a: calls.append(a) or original(*a))
    args = (hidden.float(), weight.float(), targets, b.float())
    blocked = item_cross_entropy(*args, kernel="auto")
    assert calls == []  # the CPU's default stays the blocked kernel (so the CPU suite's numbers do not change)
    fused = item_cross_entropy(*args, kernel="fused")
    assert len(calls) == 1
    torch.testing.assert_close(fused, blocked, rtol=1e-6, atol=1e-6)


def test_fused_refuses_what_it_cannot_run(monkeypatch):
    hidden, weight, b, targets = make_inputs(5, 40, 8)
    with pytest.raises(ValueError, match=r"fused item cross-entropy unavailable: the fused kernels take float32 "
                                         r"inputs, got torch.float64"):
        item_cross_entropy(hidden, weight, targets, b, kernel="fused")
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(ValueError, match=r"run on CUDA devices \(or under TRITON_INTERPRET=1\), got cpu"):
        item_cross_entropy(hidden.float(), weight.float(), targets, b.float(), kernel="fused")
    with pytest.raises(ValueError, match=r"kernel must be one of \['blocked', 'fused', 'auto'\], got 'triton'"):
        item_cross_entropy(hidden, weight, targets, b, kernel="triton")
    with pytest.raises(ValueError, match=r"precision must be one of \['tf32x3', 'ieee', 'tf32', 'bf16'\], got 'fp32'"):
        item_cross_entropy(hidden, weight, targets, b, precision="fp32")


class _Launches:
    """Wraps a Triton kernel: records each launch (``kernel[grid](...)``) and runs it."""

    def __init__(self, kernel, log, name):
        self.kernel, self.log, self.name = kernel, log, name

    def __getitem__(self, grid):
        self.log.append(self.name)
        return self.kernel[grid]


@pytest.mark.parametrize("frozen,expected", [
    ("table", ["lse_partials", "grad_hidden_partials"]),  # only hidden requires a gradient
    ("hidden", ["lse_partials", "grad_items"]),  # only the table and the bias do
])
def test_fused_backward_computes_only_the_gradients_asked_for(monkeypatch, frozen, expected):
    from recbole_adaptssr import item_softmax_triton

    launched = []
    for name in ("lse_partials", "grad_hidden_partials", "grad_items"):
        monkeypatch.setattr(item_softmax_triton, name, _Launches(getattr(item_softmax_triton, name), launched, name))
    hidden, weight, b, targets = make_inputs(37, 300, 24)
    h, w, bias = hidden.float(), weight.float(), b.float()
    trained = [h] if frozen == "table" else [w, bias]
    for x in trained:
        x.requires_grad_()
    grads = torch.autograd.grad(item_cross_entropy(h, w, targets, bias, kernel="fused"), trained)
    assert launched == expected
    exact_inputs = [hidden.clone().requires_grad_(), weight.clone().requires_grad_(), b.clone().requires_grad_()]
    exact = torch.autograd.grad(reference(*exact_inputs[:2], targets, exact_inputs[2], "mean"), exact_inputs)
    exact = [exact[0]] if frozen == "table" else list(exact[1:])
    for mine, theirs in zip(grads, exact):
        torch.testing.assert_close(mine.double(), theirs, rtol=1e-4, atol=1e-6)


# ------------------------------------------------------------------------------------------------ padded rows
@pytest.mark.parametrize("kernel", ["fused", "blocked"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_padded_rows_with_a_device_count_give_the_unpadded_loss_and_gradients(kernel, reduction):
    """Rows past ``valid_rows`` are padding: the loss and the gradients of the valid rows are those of the valid
    rows alone, the padding gets zero loss and zero gradient, whatever its contents (here repeated targets)."""
    hidden, weight, b, targets = make_inputs(70, 1100, 64)
    n = 45
    targets[n:] = 3  # a long run of one repeated target among the padding
    h, w, bias = (x.float().requires_grad_() for x in (hidden, weight, b))
    options = dict(kernel=kernel, precision="tf32x3", reduction=reduction, block_rows=16, block_items=64)
    padded = item_cross_entropy(h, w, targets, bias, valid_rows=torch.tensor([n]), expected_rows=40, **options)
    alone = item_cross_entropy(h[:n], w, targets[:n], bias, **options)
    upstream = torch.rand(padded.shape) if reduction == "none" else torch.tensor(1.3)
    grads = torch.autograd.grad(padded, (h, w, bias), upstream)
    alone_grads = torch.autograd.grad(alone, (h, w, bias), upstream[:n] if reduction == "none" else upstream)
    if reduction == "none":
        torch.testing.assert_close(padded[:n], alone, rtol=1e-6, atol=1e-6)
        assert torch.equal(padded[n:], torch.zeros(70 - n))
    else:
        torch.testing.assert_close(padded, alone, rtol=1e-6, atol=1e-6)
    assert torch.equal(grads[0][n:], torch.zeros(70 - n, 64))
    for mine, theirs in zip(grads, alone_grads):
        torch.testing.assert_close(mine, theirs, rtol=1e-4, atol=1e-7)


def test_valid_rows_must_be_one_integer_on_the_inputs_device():
    hidden, weight, b, targets = make_inputs(5, 40, 8)
    for bad in (3, torch.tensor([1.0]), torch.tensor([1, 2])):
        with pytest.raises(ValueError, match="valid_rows must be an integer tensor of one element on cpu"):
            item_cross_entropy(hidden, weight, targets, b, valid_rows=bad)


def test_mlm_loss_through_padded_rows_is_the_masked_rows_loss():
    """MLM's graph-capturable loss (every position's row, the masked ones first, their count on the device) selects
    exactly the masked rows of the eager selection, and gives its loss and gradients up to rounding."""
    import recbole_adaptssr

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "scripts"))
    from bench_pretrain import build_model

    recbole_adaptssr.setup()
    torch.manual_seed(0)
    model = build_model(500, 20, "cpu", "mlm").eval()
    task, encoder = model.pretext_task, model.user_model
    seq = torch.randint(1, 500, (8, 20))
    seq[:, 15:] = 0
    seq[2, 3:] = 0
    hidden, targets = task._predict_masked(encoder, seq, torch.Generator().manual_seed(1))
    rows, padded_targets, count = task._predict_masked_padded(encoder, seq, torch.Generator().manual_seed(1))
    n = int(count)
    assert rows.shape == (8 * 20, 64) and n == len(targets) > 8
    assert torch.equal(rows[:n], hidden) and torch.equal(padded_targets[:n], targets)
    params = [p for p in model.parameters() if p.requires_grad]
    losses = {}
    for kernel in ("fused", "blocked"):  # fused: the padded path; blocked: the masked rows alone
        task.item_softmax_options = {"kernel": kernel, "precision": "tf32x3"}
        loss = task.loss(encoder, seq, (seq != 0).sum(1), torch.Generator().manual_seed(1))
        losses[kernel] = (loss.detach(), torch.autograd.grad(loss, params, allow_unused=True))
    torch.testing.assert_close(losses["fused"][0], losses["blocked"][0], rtol=1e-6, atol=1e-6)
    for mine, theirs in zip(losses["fused"][1], losses["blocked"][1]):
        assert (mine is None) == (theirs is None)
        if mine is not None:
            torch.testing.assert_close(mine, theirs, rtol=1e-4, atol=1e-7)
    assert not task.cuda_graph_safe  # blocked: the masked rows' number is read on the host
    task.item_softmax_options = {"kernel": "auto"}
    assert task.cuda_graph_safe  # on CUDA the fused kernels take the loss: the trainer may capture the step


def test_mlm_masked_positions_are_the_one_hot_selection():
    """The masked positions, chosen without F.one_hot (a host synchronisation on a GPU), are the same booleans."""
    from recbole_adaptssr.pretext.mlm import MLM

    task = MLM.__new__(MLM)
    task.mask_ratio = 0.3
    seq = torch.randint(1, 50, (16, 12))
    seq[:, 7:] = 0
    chosen = MLM._masked_positions(task, seq, torch.Generator().manual_seed(3))
    noise = torch.rand(seq.shape, generator=torch.Generator().manual_seed(3)).masked_fill(seq == 0, 2.0)
    expected = (noise < 0.3) | F.one_hot(noise.argmin(dim=1), 12).bool()
    assert torch.equal(chosen, expected)
    assert chosen.any(dim=1).all() and not chosen[:, 7:].any()
