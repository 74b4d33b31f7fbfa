"""Row-sparse Adam (sparse_item_update, recbole_adaptssr/row_sparse_adam.py): dense Adam's update on the rows
with a nonzero gradient, nothing on the others (lazy Adam), Adam's state layout; its Triton kernel (run by
Triton's interpreter on the CPU) against the tensor version."""

import os
import sys

import pytest
import torch

from recbole_adaptssr.row_sparse_adam import RowSparseAdam, _kernel_update, _tensor_update, build_row_sparse_adam

if "triton" not in sys.modules:  # Triton reads it when imported and when it decorates a kernel
    os.environ["TRITON_INTERPRET"] = "1"

V, D = 40, 8


def run(kind, grads, weight_decay=0.01, initial=None):
    torch.manual_seed(0)
    table = torch.nn.Parameter(torch.randn(V, D) if initial is None else initial.clone())
    other = torch.nn.Parameter(torch.randn(5))
    if kind == "sparse":
        optimizer = RowSparseAdam([table, other], [table], lr=0.1, weight_decay=weight_decay)
    else:
        optimizer = torch.optim.Adam([table, other], lr=0.1, weight_decay=weight_decay, foreach=False)
    for g_table, g_other in grads:
        table.grad, other.grad = g_table.clone(), g_other.clone()
        optimizer.step()
    return table.detach(), other.detach(), optimizer


def gradients(steps, zero_rows=(), seed=1):
    g = torch.Generator().manual_seed(seed)
    out = []
    for step in range(steps):
        table = torch.randn(V, D, generator=g)
        table[list(zero_rows[step] if zero_rows else [])] = 0
        out.append((table, torch.randn(5, generator=g)))
    return out


@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_every_row_touched_is_dense_adam_bitwise(weight_decay):
    grads = gradients(3)
    sparse, sparse_other, _ = run("sparse", grads, weight_decay)
    dense, dense_other, _ = run("dense", grads, weight_decay)
    assert torch.equal(sparse, dense) and torch.equal(sparse_other, dense_other)


def test_untouched_rows_keep_parameters_and_moments_where_dense_adam_moves_them():
    # rows 0-9 are seen in every step, rows 10-19 only in the first, rows 20-39 never
    zero_rows = [list(range(20, V)), list(range(10, V)), list(range(10, V))]
    grads = gradients(3, zero_rows)
    sparse, _, optimizer = run("sparse", grads)
    dense, _, _ = run("dense", grads)
    torch.manual_seed(0)
    initial = torch.randn(V, D)
    assert torch.equal(sparse[:10], dense[:10])  # touched in every step: dense Adam's update
    assert torch.equal(sparse[20:], initial[20:])  # never touched: unchanged (dense Adam's weight decay moves them)
    assert not torch.equal(dense[20:], initial[20:])
    one_step = run("sparse", grads[:1])[0]
    assert torch.equal(sparse[10:20], one_step[10:20])  # seen once: only that step's update, no momentum after
    assert not torch.equal(dense[10:20], one_step[10:20])  # dense Adam keeps moving them by their momentum
    state = optimizer.state[optimizer.param_groups[1]["params"][0]]
    assert set(state) == {"step", "exp_avg", "exp_avg_sq"} and float(state["step"]) == 3
    assert torch.equal(state["exp_avg"][20:], torch.zeros(V - 20, D))


def test_state_dict_resumes_as_if_uninterrupted():
    grads = gradients(4, [list(range(20, V))] * 4)
    straight, _, _ = run("sparse", grads)
    first, _, optimizer = run("sparse", grads[:2])
    table = torch.nn.Parameter(first.clone())
    torch.manual_seed(0)
    torch.randn(V, D)
    other = torch.nn.Parameter(run("sparse", grads[:2])[1].clone())
    resumed = RowSparseAdam([table, other], [table], lr=0.1, weight_decay=0.01)
    resumed.load_state_dict(optimizer.state_dict())
    for g_table, g_other in grads[2:]:
        table.grad, other.grad = g_table.clone(), g_other.clone()
        resumed.step()
    assert torch.equal(table.detach(), straight)


def test_the_kernel_computes_the_tensor_update():
    pytest.importorskip("triton", reason="Triton's interpreter runs the kernel on the CPU (test extra)")
    if os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("Triton was imported before this module without TRITON_INTERPRET=1")
    g = torch.Generator().manual_seed(4)
    p, m, v = torch.randn(70, 24, generator=g), torch.randn(70, 24, generator=g), torch.rand(70, 24, generator=g)
    grad = torch.randn(70, 24, generator=g)
    grad[5:40] = 0
    grad[41, 3] = 0  # a row with one zero element is touched
    args = (0.05, 0.97, 0.9, 0.999, 1e-8, 0.01)
    tensors = [t.clone() for t in (p, grad, m, v)]
    kernel = [t.clone() for t in (p, grad, m, v)]
    _tensor_update(*tensors, *args)
    _kernel_update(*kernel, *args)
    for mine, theirs, before in zip(kernel, tensors, (p, grad, m, v)):
        torch.testing.assert_close(mine, theirs, rtol=1e-6, atol=1e-7)
        assert torch.equal(mine[5:40], before[5:40])  # untouched rows: not written


def test_build_needs_adam_and_names_the_key():
    from recbole_adaptssr.encoder.user_model import UserModel

    model = torch.nn.Module()
    model.user_model = UserModel(n_items=30, max_seq_length=8, hidden_size=8, n_layers=1, n_heads=2, inner_size=16)
    optimizer = build_row_sparse_adam(model, "adam", 0.01, 0.0, fused=False)
    assert optimizer.param_groups[1]["params"] == [model.user_model.item_embedding.weight]
    with pytest.raises(ValueError, match=r"ssr_sparse_item_update needs learner: adam .* got learner 'sgd'"):
        build_row_sparse_adam(model, "sgd", 0.01, 0.0, fused=False, key="ssr_sparse_item_update")
