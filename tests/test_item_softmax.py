"""The blocked full-softmax item cross-entropy and ranking statistics (recbole_adaptssr.item_softmax)."""

from __future__ import annotations

import ast
import math
import statistics
from pathlib import Path

import psutil
import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from recbole_adaptssr.item_softmax import item_cross_entropy, item_ranking_statistics

MODULE = Path(__file__).resolve().parents[1] / "recbole_adaptssr" / "item_softmax.py"

# (N, V): N not a multiple of the 8-row blocks and V not one of the 16-item blocks; N below one block; both exact
# multiples; V below one item block
SHAPES = [(37, 53), (5, 53), (32, 48), (37, 10)]


def make_inputs(n_rows, n_items, dim=6, dtype=torch.float64, bias=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(n_rows, dim, generator=g, dtype=torch.float64).to(dtype).requires_grad_()
    weight = torch.randn(n_items, dim, generator=g, dtype=torch.float64).to(dtype).requires_grad_()
    b = torch.randn(n_items, generator=g, dtype=torch.float64).to(dtype).requires_grad_() if bias else None
    targets = torch.randint(0, n_items, (n_rows,), generator=g)
    return hidden, weight, b, targets


def leaves(hidden, weight, bias):
    return [x for x in (hidden, weight, bias) if x is not None]


def reference(hidden, weight, bias, targets, reduction, upstream):
    """Loss and gradients of F.cross_entropy on the full logits, in float64 from the same (rounded) values."""
    xs = [x.detach().double().requires_grad_() for x in leaves(hidden, weight, bias)]
    logits = xs[0] @ xs[1].t() + (xs[2] if bias is not None else 0)
    loss = F.cross_entropy(logits, targets, reduction=reduction)
    return loss.detach(), torch.autograd.grad(loss, xs, upstream.double())


def blocked(hidden, weight, bias, targets, reduction, upstream=None, **blocks):
    loss = item_cross_entropy(hidden, weight, targets, bias, reduction=reduction, **blocks)
    if upstream is None:
        upstream = torch.randn(loss.shape, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    grads = torch.autograd.grad(loss, leaves(hidden, weight, bias), upstream.to(loss.dtype))
    return loss.detach(), grads, upstream


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", SHAPES)
def test_float64_matches_full_cross_entropy(shape, bias, reduction):
    hidden, weight, b, targets = make_inputs(*shape, bias=bias)
    loss, grads, upstream = blocked(hidden, weight, b, targets, reduction, block_rows=8, block_items=16)
    want_loss, want_grads = reference(hidden, weight, b, targets, reduction, upstream)
    assert loss.dtype == torch.float64 and loss.shape == want_loss.shape
    torch.testing.assert_close(loss, want_loss, rtol=1e-12, atol=1e-12)
    for got, want in zip(grads, want_grads):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("bias", [True, False])
def test_float32_matches_full_cross_entropy(bias, reduction):
    hidden, weight, b, targets = make_inputs(37, 53, dim=16, dtype=torch.float32, bias=bias, seed=1)
    loss, grads, upstream = blocked(hidden, weight, b, targets, reduction, block_rows=8, block_items=16)
    logits = hidden @ weight.t() + (b if b is not None else 0)
    want_loss = F.cross_entropy(logits, targets, reduction=reduction)
    want_grads = torch.autograd.grad(want_loss, leaves(hidden, weight, b), upstream.float())
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, want_loss.detach(), rtol=1e-5, atol=1e-5)
    for got, want in zip(grads, want_grads):
        assert got.dtype == torch.float32
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_close_to_float64(dtype):
    n_items = 53
    hidden, weight, b, targets = make_inputs(37, n_items, dim=16, dtype=dtype, seed=2)
    loss, grads, upstream = blocked(hidden, weight, b, targets, "mean", block_rows=8, block_items=16)
    want_loss, want_grads = reference(hidden, weight, b, targets, "mean", upstream)
    assert loss.dtype == dtype and all(g.dtype == dtype for g in grads)
    assert abs(float(loss) - float(want_loss)) < 2e-2 * float(want_loss)
    others = torch.ones(n_items, dtype=torch.bool)
    others[targets] = False  # items no row targets: their gradient is the softmax part alone
    for got, want in zip(grads, want_grads):
        assert float((got.double() - want).abs().max()) < 2e-2 * float(want.abs().max())
    for got, want in zip(grads[1:], want_grads[1:]):
        got, want = got[others].double(), want[others]
        assert float((got - want).abs().max()) < 2e-2 * float(want.abs().max())


def test_gradcheck_float64():
    hidden, weight, b, targets = make_inputs(5, 7, dim=3, seed=3)
    for reduction in ("mean", "sum", "none"):
        assert torch.autograd.gradcheck(
            lambda h, w, bb: item_cross_entropy(h, w, targets, bb, block_rows=2, block_items=3, reduction=reduction),
            (hidden, weight, b),
        )


def test_gradient_only_for_inputs_that_need_it():
    hidden, weight, b, targets = make_inputs(37, 53, seed=4)
    frozen = weight.detach()
    loss = item_cross_entropy(hidden, frozen, targets, b, block_rows=8, block_items=16)
    got_h, got_b = torch.autograd.grad(loss, [hidden, b])
    _, (want_h, _, want_b) = reference(hidden, weight, b, targets, "mean", torch.tensor(1.0))
    torch.testing.assert_close(got_h, want_h)
    torch.testing.assert_close(got_b, want_b)


def test_default_block_sizes_give_the_same_loss():
    hidden, weight, b, targets = make_inputs(300, 9000, dim=8, dtype=torch.float32, seed=5)
    loss = item_cross_entropy(hidden, weight, targets, b)
    want = F.cross_entropy(hidden @ weight.t() + b, targets)
    torch.testing.assert_close(loss, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda h, w, b, t: (h[:0], w, b, t[:0]), "N == 0"),
        (lambda h, w, b, t: (h, w, b, torch.where(t == t[0], -1, t)), r"\[0, V\)"),
        (lambda h, w, b, t: (h, w, b, torch.full_like(t, w.size(0))), r"\[0, V\)"),
        (lambda h, w, b, t: (h, w[:, :-1], b, t), "d differ"),
        (lambda h, w, b, t: (h, w, b[:-1], t), "bias must be"),
        (lambda h, w, b, t: (h, w, b, t[:-1]), "targets must be a 1-D"),
        (lambda h, w, b, t: (h, w, b, t.int()), "torch.long"),
        (lambda h, w, b, t: (h[0], w, b, t), "hidden must be a 2-D"),
        (lambda h, w, b, t: (h, w.float(), b, t), "dtype"),
    ],
)
def test_invalid_inputs_raise_value_error(change, message):
    args = change(*make_inputs(6, 9))
    with pytest.raises(ValueError, match=message):
        item_cross_entropy(args[0], args[1], args[3], args[2])
    with pytest.raises(ValueError, match=message):
        item_ranking_statistics(args[0], args[1], args[3], args[2])


def test_invalid_options_raise_value_error():
    hidden, weight, b, targets = make_inputs(6, 9)
    with pytest.raises(ValueError, match="reduction"):
        item_cross_entropy(hidden, weight, targets, b, reduction="avg")
    with pytest.raises(ValueError, match="block_rows"):
        item_cross_entropy(hidden, weight, targets, b, block_rows=0)
    with pytest.raises(ValueError, match="block_items"):
        item_ranking_statistics(hidden, weight, targets, b, block_items=2.5)
    with pytest.raises(ValueError, match="k must"):
        item_ranking_statistics(hidden, weight, targets, b, k=0)


# ---------------------------------------------------------------- ranking statistics
def brute_force_statistics(hidden, weight, bias, targets, k):
    logits = hidden.double() @ weight.double().t() + (bias.double() if bias is not None else 0)
    target = logits.gather(1, targets.unsqueeze(1))
    rank = (logits > target).sum(dim=1)  # strictly higher: ties in the target's favour
    ndcg = torch.where(rank < k, 1.0 / torch.log2(rank.double() + 2), torch.zeros((), dtype=torch.float64))
    return rank, {"accuracy": (rank == 0).double().mean(), f"hit@{k}": (rank < k).double().mean(),
                  f"ndcg@{k}": ndcg.mean()}


def assert_statistics(got, rank, want):
    assert torch.equal(got["rank"], rank)
    for key, value in want.items():
        assert float(got[key]) == pytest.approx(float(value), abs=1e-6), key


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", SHAPES)
def test_ranking_statistics_match_brute_force(shape, bias):
    hidden, weight, b, targets = make_inputs(*shape, bias=bias, seed=6)
    # make some targets the best item, so that the accuracy and the hits are not all zero
    with torch.no_grad():
        weight[targets[::3]] = hidden[::3] * 3
    got = item_ranking_statistics(hidden, weight, targets, b, k=5, block_rows=8, block_items=16)
    rank, want = brute_force_statistics(hidden, weight, b, targets, k=5)
    assert 0 < float(want["accuracy"]) < 1
    assert_statistics(got, rank, want)


def test_ranking_ties_count_in_the_targets_favour():
    # integer-valued scores are exact in any order of summation, so the ties are exact
    g = torch.Generator().manual_seed(8)
    hidden = torch.randint(-2, 3, (29, 4), generator=g).float()
    weight = torch.randint(-2, 3, (41, 4), generator=g).float()
    weight[20:30] = weight[0]  # ten duplicates of item 0
    bias = torch.randint(-1, 2, (41,), generator=g).float()
    bias[20:30] = bias[0]
    targets = torch.randint(0, 41, (29,), generator=g)
    targets[:6] = 0
    got = item_ranking_statistics(hidden, weight, targets, bias, k=3, block_rows=8, block_items=16)
    rank, want = brute_force_statistics(hidden, weight, bias, targets, k=3)
    assert_statistics(got, rank, want)
    logits = hidden @ weight.t() + bias
    target = logits.gather(1, targets.unsqueeze(1))
    ties = ((logits == target).sum(dim=1) - 1)[:6]
    assert (ties >= 10).all()  # the duplicates tie with target 0 ...
    assert torch.equal(got["rank"][:6], (logits[:6] > target[:6]).sum(dim=1))  # ... and do not count against it


def test_ranking_statistics_low_precision_inputs():
    hidden, weight, b, targets = make_inputs(37, 53, dim=16, dtype=torch.bfloat16, seed=9)
    got = item_ranking_statistics(hidden, weight, targets, b, k=10, block_rows=8, block_items=16)
    rank, want = brute_force_statistics(hidden, weight, b, targets, k=10)  # float64 scores of the same values
    assert_statistics(got, rank, want)


# ---------------------------------------------------------------- shapes of the intermediates
class ShapeRecorder(TorchDispatchMode):
    """Shapes of the tensors the operators create: neither views nor in-place / out= results, which alias a
    tensor created (and recorded) before."""

    def __init__(self):
        super().__init__()
        self.shapes = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if not func.is_view and not func._schema.is_mutable:
            for value in out if isinstance(out, (tuple, list)) else (out,):
                if isinstance(value, torch.Tensor):
                    self.shapes.append(tuple(value.shape))
        return out


def recorded_shapes(n_rows, n_items, dim, block_rows, block_items, ranking=False):
    hidden, weight, b, targets = make_inputs(n_rows, n_items, dim=dim, dtype=torch.float32, seed=n_rows)
    with ShapeRecorder() as recorder:
        if ranking:
            item_ranking_statistics(hidden, weight, targets, b, block_rows=block_rows, block_items=block_items)
        else:
            item_cross_entropy(hidden, weight, targets, b, block_rows=block_rows, block_items=block_items).backward()
    return recorder.shapes


@pytest.mark.parametrize("ranking", [False, True])
def test_no_intermediate_depends_on_n_beyond_a_block(ranking):
    n_items, dim, block_rows, block_items = 500, 12, 32, 64  # 8 item blocks, the last 52 wide
    n_item_blocks = math.ceil(n_items / block_items)
    per_row = {}
    for n_rows in (300, 517):
        shapes = recorded_shapes(n_rows, n_items, dim, block_rows, block_items, ranking)
        assert shapes, "the recorder saw no operator"
        # nothing of the size of the full logits, nor anything larger than a block besides O(N d + V d) tensors
        assert max(math.prod(s) for s in shapes) <= max(block_rows * block_items, n_items * dim, n_rows * dim)
        # a shape that mentions N is a per-row vector, hidden's gradient or the per-row block logsumexps
        assert {s for s in shapes if n_rows in s} <= {(n_rows,), (n_rows, dim), (n_rows, n_item_blocks)}
        per_row[n_rows] = {s for s in shapes if len(s) == 2 and n_rows not in s and math.prod(s) >= block_rows}
    # the 2-D intermediates are the same whatever N, and the largest are the (block_rows x block_items) blocks
    assert per_row[300] == per_row[517]
    assert (block_rows, block_items) in per_row[300] and (block_rows, n_items % block_items) in per_row[300]
    assert (300, n_items) not in per_row[300]


# ---------------------------------------------------------------- resident memory in a training-like loop
def test_resident_memory_stays_flat_when_the_number_of_rows_varies():
    """A varying number of predicted rows each step must not grow the process's resident memory.

    Growth is the median of the last 5 readings (one after each step) minus the median of the first 5, so that
    a block buffer the allocator happens to keep for a step does not count, while a steady growth of 1 MiB a step
    or more does. Measured on a loaded 2-core machine (1 torch thread), 5 runs each: the blocked loss grew by -0.2
    to +1.4 MiB (single readings within 8 MiB); the direct full-logits loss by -12 to +64 MiB, above this bound in
    2 runs of 4, with readings swinging by up to 110 MiB (in a long run it grew 0.3 to 0.65 GB per epoch)."""
    n_items, dim = 4000, 64
    torch.manual_seed(0)
    embedding = torch.nn.Embedding(n_items, dim)
    transform = torch.nn.Linear(dim, dim)
    bias = torch.nn.Parameter(torch.zeros(n_items))
    optimizer = torch.optim.Adam([*embedding.parameters(), *transform.parameters(), bias], lr=1e-3)
    g = torch.Generator().manual_seed(1)

    def step():
        n_rows = int(torch.randint(200, 3001, (1,), generator=g))
        hidden = transform(embedding(torch.randint(0, n_items, (n_rows,), generator=g)))
        targets = torch.randint(0, n_items, (n_rows,), generator=g)
        loss = item_cross_entropy(hidden, embedding.weight, targets, bias, block_rows=256)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    process = psutil.Process()
    for _ in range(6):  # warm-up: Adam's state, the block buffers' first allocations
        step()
    readings = []
    for _ in range(20):
        assert math.isfinite(step())
        readings.append(process.memory_info().rss / 2**20)
    growth = statistics.median(readings[-5:]) - statistics.median(readings[:5])
    trace = [round(x - readings[0], 1) for x in readings]
    print(f"resident memory growth {growth:.1f} MiB; readings after the first, MiB: {trace}")
    assert growth < 16, f"resident memory grew by {growth:.1f} MiB: readings after the first, MiB: {trace}"


# ---------------------------------------------------------------- the module stands alone
@pytest.mark.parametrize("module,allowed", [
    (MODULE, {"__future__", "math", "typing", "torch", "recbole_adaptssr.item_scores"}),
    # Triton only inside the function that first launches a kernel
    (MODULE.with_name("item_softmax_fused.py"),
     {"__future__", "functools", "importlib", "os", "torch", "recbole_adaptssr.item_scores"}),
    (MODULE.with_name("item_scores.py"), {"__future__", "torch"}),
])
def test_module_imports_torch_alone(module, allowed):
    """It must be importable (and testable) without RecBole or Triton: torch and the standard library only."""
    tree = ast.parse(module.read_text())
    imported = set()
    for node in tree.body:  # module level
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module if (node.module or "").startswith("recbole_adaptssr") else
                         (node.module or "").split(".")[0])
    assert imported <= allowed
