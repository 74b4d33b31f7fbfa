"""The fused Transformer layers (encoder_kernel, recbole_adaptssr/encoder/fused_transformer.py) against RecBole's
layers, which stay the reference: the same function and gradients up to float32 rounding without dropout, the same
parameters, and ``auto`` = RecBole's layers on the CPU. Plus the bf16 layers of ``precision: bf16``."""

import pytest
import torch

from recbole_adaptssr.encoder.base import check_user_model
from recbole_adaptssr.encoder.bert4rec import BERT4Rec
from recbole_adaptssr.encoder.sasrec import SASRec
from recbole_adaptssr.encoder.user_model import UserModel
from recbole_adaptssr.precision import training_precision

SETTINGS = dict(n_items=300, max_seq_length=20, hidden_size=32, n_layers=2, n_heads=2, inner_size=64)
ENCODERS = [UserModel, SASRec, BERT4Rec]


def batch(seed=1):
    g = torch.Generator().manual_seed(seed)
    seq = torch.randint(1, 300, (12, 20), generator=g)
    lengths = torch.randint(1, 21, (12,), generator=g)
    lengths[0], lengths[1] = 1, 20
    return seq * (torch.arange(20)[None, :] < lengths[:, None])


def encode_and_grads(model, kernel, seq, dtype=torch.float32):
    model.encoder_kernel = kernel
    model.zero_grad(set_to_none=True)
    hidden, valid = model.encode(seq)
    (hidden.square() * torch.linspace(0.5, 1.5, hidden.size(-1), dtype=dtype)).sum().backward()
    return hidden.detach(), [p.grad.detach().clone() for p in model.parameters() if p.grad is not None]


@pytest.mark.parametrize("encoder_class", ENCODERS)
def test_fused_layers_compute_recbole_layers_up_to_rounding(encoder_class):
    torch.manual_seed(0)
    model = encoder_class(**SETTINGS).eval()  # no dropout: both compute the same function
    seq = batch()
    eager, eager_grads = encode_and_grads(model, "eager", seq)
    fused, fused_grads = encode_and_grads(model, "fused", seq)
    assert (fused - eager).norm() / eager.norm() < 1e-6
    assert len(fused_grads) == len(eager_grads) > 10
    scale = torch.cat([g.flatten() for g in eager_grads]).norm()
    for mine, theirs in zip(fused_grads, eager_grads):
        # relative to all gradients: the key bias's gradient is zero in exact arithmetic (rounding noise in both)
        assert (mine - theirs).norm() <= 1e-6 * scale
    # in float64 the two agree to float64 rounding: the same function, not an approximation of it
    model = model.double()
    eager64, grads64 = encode_and_grads(model, "eager", seq, torch.float64)
    fused64, fused_grads64 = encode_and_grads(model, "fused", seq, torch.float64)
    assert (fused64 - eager64).abs().max() < 1e-12
    assert max(float((a - b).abs().max()) for a, b in zip(fused_grads64, grads64)) < 1e-11
    # not vacuous: another input gives another output
    assert not torch.allclose(model.encode(batch(seed=2))[0], eager64)


@pytest.mark.parametrize("encoder_class", ENCODERS)
def test_auto_runs_recbole_layers_on_the_cpu_bitwise_with_their_dropout(encoder_class):
    torch.manual_seed(0)
    model = encoder_class(**SETTINGS).train()
    seq = batch()
    outputs = {}
    for kernel in ("eager", "auto", "fused"):
        torch.manual_seed(5)
        outputs[kernel] = encode_and_grads(model, kernel, seq)
    assert torch.equal(outputs["auto"][0], outputs["eager"][0])
    assert all(torch.equal(a, b) for a, b in zip(outputs["auto"][1], outputs["eager"][1]))
    # not vacuous: dropout is on, another seed gives other numbers
    torch.manual_seed(6)
    assert not torch.allclose(encode_and_grads(model, "eager", seq)[0], outputs["eager"][0])


def test_the_kernel_does_not_change_the_parameters_or_the_state_dict():
    torch.manual_seed(0)
    eager = UserModel(**SETTINGS, encoder_kernel="eager")
    torch.manual_seed(0)
    fused = UserModel(**SETTINGS, encoder_kernel="fused")
    a, b = eager.state_dict(), fused.state_dict()
    assert list(a) == list(b)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_an_unknown_encoder_kernel_is_an_error_naming_the_key(tiny_config):
    from recbole_adaptssr.config import Config

    with pytest.raises(ValueError, match=r"encoder_kernel must be one of \['auto', 'eager', 'fused'\], got 'triton'"):
        UserModel(**SETTINGS, encoder_kernel="triton")
    for key in ("encoder_kernel", "transformer_encoder_kernel"):
        config = Config(model="AdaptSSR", dataset="tiny", config_dict={**tiny_config, key: "flash"})
        with pytest.raises(ValueError, match=rf"^{key} must be one of"):
            check_user_model(config)
    config = Config(model="AdaptSSR", dataset="tiny",
                    config_dict={**tiny_config, "user_model": "SASRec", "sasrec_encoder_kernel": "flash"})
    with pytest.raises(ValueError, match=r"^sasrec_encoder_kernel must be one of"):
        check_user_model(config)


@pytest.mark.parametrize("kernel", ["eager", "fused"])
def test_bf16_precision_runs_the_layers_in_bfloat16_and_returns_float32(kernel):
    torch.manual_seed(0)
    model = UserModel(**SETTINGS, encoder_kernel=kernel).eval()
    seq = batch()
    with torch.no_grad():
        reference = model.encode(seq)[0]
        with training_precision("cpu", "bf16"):
            low = model.encode(seq)[0]
        again = model.encode(seq)[0]  # outside the step: float32 again
    assert low.dtype == torch.float32
    relative = float((low - reference).norm() / reference.norm())
    assert 1e-6 < relative < 5e-2  # bfloat16's rounding: visible, small
    assert torch.equal(again, reference)
