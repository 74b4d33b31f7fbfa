"""Adam that updates only the rows of the item table a batch touched (setting ``sparse_item_update``).

A ranking step's gradient of the item embedding table (645,973 x 64 at the TTL scale) is zero except in the rows of
the batch's items (at most B x L of them); dense Adam still reads and writes the whole table and both moments
(about 1.2 GB a step). :class:`RowSparseAdam` is ``torch.optim.Adam`` for every parameter except the item tables,
whose rows are updated only where their gradient has a nonzero element:

* a row with a nonzero gradient gets exactly dense Adam's update (the same formula: ``exp_avg.lerp_``,
  ``exp_avg_sq`` moving average, bias corrections with the parameter's global step count, coupled weight decay);
* a row whose gradient is zero keeps its parameter and both moments unchanged. Dense Adam instead decays the
  moments (``m <- beta1 m``, ``v <- beta2 v``) and keeps moving the row by ``lr * m_hat / (sqrt(v_hat) + eps)``,
  its momentum from earlier steps. This is the "lazy" Adam of ``torch.optim.SparseAdam`` and TensorFlow's
  LazyAdam: an item's embedding moves only in steps that see the item, and its moments describe only those steps.

So the results differ from dense Adam's wherever an item is absent from some batches after it was seen; the
difference is a choice of semantics, not rounding (docs/performance.md). Where every row's gradient is nonzero
(a full-softmax stage: MLM's output layer is tied to the table) it is dense Adam. The step count is global (one per
``step()``), as in ``SparseAdam``. On CUDA one Triton kernel does the update without host synchronisation (graph
and pipeline friendly; its arithmetic equals ``torch.optim.Adam``'s to float32 rounding, not bitwise); elsewhere,
and without Triton, tensor operations on the selected rows (bitwise dense Adam's on the touched rows).
"""

from __future__ import annotations

import torch

from recbole_adaptssr.item_softmax_fused import triton_installed

BLOCK_ROWS = 32


class RowSparseAdam(torch.optim.Adam):
    """``torch.optim.Adam`` whose ``row_sparse_params`` (2-D tables) are updated row by row, where their gradient is
    nonzero (module docstring). ``params``: every other parameter, updated by Adam (``foreach``/``fused`` as
    given). The state of each parameter has Adam's layout (``step``, ``exp_avg``, ``exp_avg_sq``), so
    ``state_dict``/``load_state_dict`` and checkpoints work as for Adam."""

    def __init__(self, params, row_sparse_params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 fused=None):
        tables = list(row_sparse_params)
        for table in tables:
            if table.dim() != 2:
                raise ValueError(f"row-sparse Adam updates 2-D tables, got a parameter of shape {tuple(table.shape)}")
        ids = {id(t) for t in tables}
        dense = [p for p in params if id(p) not in ids]
        groups = [{"params": dense}, {"params": tables, "row_sparse": True}]
        super().__init__([g for g in groups if g["params"]], lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         fused=fused)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        hidden = []
        for group in self.param_groups:
            if group.get("row_sparse"):
                for p in group["params"]:
                    if p.grad is not None:
                        self._update_rows(p, group)
                        hidden.append((p, p.grad))
                        p.grad = None  # Adam's step below skips it
        try:
            super().step()
        finally:
            for p, grad in hidden:
                p.grad = grad
        return loss

    def _update_rows(self, p, group):
        if p.grad.is_sparse:
            raise ValueError("row-sparse Adam takes dense gradients (the rows to update are found in them)")
        state = self.state[p]
        if not state:
            state["step"] = torch.tensor(0.0, dtype=torch.float32)
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["step"] += 1
        beta1, beta2 = group["betas"]
        step = float(state["step"])
        lr_over_bias1 = group["lr"] / (1 - beta1 ** step)
        bias2_sqrt = (1 - beta2 ** step) ** 0.5
        args = (p, p.grad, state["exp_avg"], state["exp_avg_sq"], lr_over_bias1, bias2_sqrt, beta1, beta2,
                group["eps"], group["weight_decay"])
        if p.device.type == "cuda" and triton_installed():
            _kernel_update(*args)
        else:
            _tensor_update(*args)


def _tensor_update(p, grad, exp_avg, exp_avg_sq, lr_over_bias1, bias2_sqrt, beta1, beta2, eps, weight_decay):
    """The rows with a nonzero gradient element, updated as ``torch.optim.Adam``'s single-tensor step does."""
    rows = (grad != 0).any(dim=1).nonzero().squeeze(1)
    if rows.numel() == 0:
        return
    g, param = grad.index_select(0, rows), p.index_select(0, rows)
    m, v = exp_avg.index_select(0, rows), exp_avg_sq.index_select(0, rows)
    if weight_decay:
        g = g.add(param, alpha=weight_decay)
    m.lerp_(g, 1 - beta1)
    v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
    denom = (v.sqrt() / bias2_sqrt).add_(eps)
    param.addcdiv_(m, denom, value=-lr_over_bias1)
    for full, part in ((p, param), (exp_avg, m), (exp_avg_sq, v)):
        full.index_copy_(0, rows, part)


def _kernel_update(p, grad, exp_avg, exp_avg_sq, lr_over_bias1, bias2_sqrt, beta1, beta2, eps, weight_decay):
    from recbole_adaptssr.row_sparse_adam_triton import row_sparse_adam

    for t in (p, grad, exp_avg, exp_avg_sq):
        if not t.is_contiguous():
            raise ValueError("row-sparse Adam's kernel takes contiguous tables")
    n_rows, dim = p.shape
    block_d = max(16, 1 << (dim - 1).bit_length())
    row_sparse_adam[(-(-n_rows // BLOCK_ROWS),)](
        p, grad, exp_avg, exp_avg_sq, n_rows, dim, lr_over_bias1, bias2_sqrt, beta1, beta2, eps,
        float(weight_decay), HAS_WEIGHT_DECAY=bool(weight_decay), BLOCK_R=BLOCK_ROWS, BLOCK_D=block_d)


def build_row_sparse_adam(model, learner: str, learning_rate: float, weight_decay: float, fused: bool,
                          key: str = "sparse_item_update") -> RowSparseAdam:
    """A :class:`RowSparseAdam` over ``model``'s parameters with its user model's item table row-sparse."""
    if str(learner).lower() != "adam":
        raise ValueError(f"{key} needs learner: adam (the update is Adam's, row by row), got learner {learner!r}")
    table = model.user_model.item_embedding.weight
    return RowSparseAdam(model.parameters(), [table], lr=learning_rate, weight_decay=weight_decay,
                         fused=True if fused else None)
