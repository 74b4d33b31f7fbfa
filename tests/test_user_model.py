"""The user model M (Eq. 2-4), gradient flow of the ranking stage, name registration and config wiring."""

import pytest
import torch
from recbole.trainer import Trainer as RecBoleTrainer
from recbole.utils import ModelType, init_seed

from recbole_adaptssr import utils
from recbole_adaptssr.losses import adaptssr_loss
from recbole_adaptssr.config import Config
from recbole_adaptssr.data.utils import create_dataset
from recbole_adaptssr.model.adaptssr import AdaptSSR
from recbole_adaptssr.encoder.user_model import AttentionPooling, UserModel
from recbole_adaptssr.trainer import AdaptSSRTrainer

N_ITEMS, MAX_LEN, D = 30, 12, 16


def small_user_model(seed=0, **kwargs):
    torch.manual_seed(seed)
    settings = dict(n_items=N_ITEMS, max_seq_length=MAX_LEN, hidden_size=D, n_layers=2, n_heads=2, inner_size=32)
    settings.update(kwargs)
    return UserModel(**settings).eval()


def padded(rows, length):
    out = torch.zeros((len(rows), length), dtype=torch.long)
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.tensor(row)
    return out


def build_adaptssr(tiny_config, **extra):
    """Config -> create_dataset -> split -> model, as quick_start.run_adaptssr does."""
    config = Config(model="AdaptSSR", dataset="tiny", config_dict={**tiny_config, **extra})
    init_seed(config["seed"], config["reproducibility"])
    train_set, _ = create_dataset(config).build()
    return config, train_set, AdaptSSR(config, train_set)


# ------------------------------------------------------------------------------------------- padding and shapes
def test_padding_gets_no_weight_and_length_does_not_matter():
    model = small_user_model()
    rows = [[5, 3, 7], [1, 2, 3, 4, 5, 6, 7, 8, 9], [29]]
    with torch.no_grad():
        alone = [model(torch.tensor([row])) for row in rows]  # no padding at all
        for length in (9, 10, MAX_LEN):
            batch = model(padded(rows, length))
            for i, u in enumerate(alone):
                torch.testing.assert_close(batch[i : i + 1], u, rtol=1e-5, atol=1e-6)
    # a different prefix does change u (the comparison above is not vacuous)
    with torch.no_grad():
        assert not torch.allclose(model(torch.tensor([[5, 3, 8]])), alone[0], atol=1e-4)


def test_attention_pooling_ignores_padded_hidden_states():
    pool = AttentionPooling(4)
    with torch.no_grad():
        pool.query.copy_(torch.tensor([1.0, -1.0, 0.5, 0.0]))
    hidden = torch.randn(2, 5, 4)
    valid = torch.tensor([[True, True, False, False, False], [True, True, True, True, True]])
    out = pool(hidden, valid)
    hidden2 = hidden.clone()
    hidden2[0, 2:] = 1e6  # garbage at padding
    torch.testing.assert_close(pool(hidden2, valid), out)
    alpha = torch.softmax(hidden[0, :2] @ pool.query, dim=0)
    torch.testing.assert_close(out[0], alpha @ hidden[0, :2])


def test_output_shapes_and_mask_token():
    model = small_user_model()
    assert model.mask_token_id == N_ITEMS
    assert model.item_embedding.num_embeddings == N_ITEMS + 1
    assert model.item_embedding.padding_idx == 0
    seq = padded([[1, 2, 3], [N_ITEMS, 4]], 7)  # the mask token is a valid input id
    hidden, valid = model.encode(seq)
    assert hidden.shape == (2, 7, D)
    assert valid.dtype == torch.bool and valid.tolist()[1] == [True, True] + [False] * 5
    assert model(seq).shape == (2, D)


def test_too_long_sequence_raises():
    model = small_user_model()
    model(torch.ones((1, MAX_LEN), dtype=torch.long))  # exactly the maximum is fine
    with pytest.raises(ValueError, match=f"sequence length {MAX_LEN + 1} exceeds MAX_ITEM_LIST_LENGTH={MAX_LEN}"):
        model(torch.ones((1, MAX_LEN + 1), dtype=torch.long))


def test_train_mode_dropout_makes_two_passes_differ():
    """Dropout is the implicit augmentation: two passes differ in train mode, not in eval mode."""
    model = small_user_model(hidden_dropout_prob=0.3, attn_dropout_prob=0.3)
    seq = padded([[1, 2, 3, 4]], 6)
    with torch.no_grad():
        torch.testing.assert_close(model(seq), model(seq))
        model.train()
        assert not torch.allclose(model(seq), model(seq))


# ------------------------------------------------------------------------------------------- gradients
def test_ssr_loss_gradients_reach_encoder_mask_token_and_query(tiny_config):
    config, train_set, model = build_adaptssr(tiny_config, train_stage="ssr", augmentations=["mask"])
    model.train()
    seq = train_set.inter_feat[model.ITEM_SEQ][:16]
    seq_len = train_set.inter_feat[model.ITEM_SEQ_LEN][:16]
    task = model.pretext["ssr"]
    views = task.views(model.user_model, seq, seq_len)
    loss = adaptssr_loss(*views, **task.loss_options)
    assert loss.dim() == 0 and torch.isfinite(loss)
    assert all(v.shape == (16, config["hidden_size"]) for v in views)
    loss.backward()
    user_model = model.user_model
    for name, param in user_model.named_parameters():
        if name == "item_embedding.weight":
            continue
        assert param.grad is not None and param.grad.abs().sum() > 0, name
    emb_grad = user_model.item_embedding.weight.grad
    assert emb_grad[user_model.mask_token_id].abs().sum() > 0  # the learned mask token
    assert emb_grad[0].abs().sum() == 0  # padding row
    used = torch.unique(seq[seq != 0])
    assert (emb_grad[used].abs().sum(dim=1) > 0).any()
    assert user_model.pooling.query.grad.abs().sum() > 0
    # the MLM head takes no part in the ranking stage
    assert all(p.grad is None for p in model.pretext["mlm"].head.parameters())


def test_mlm_loss_gradients_reach_mask_token_and_head(tiny_config):
    _, train_set, model = build_adaptssr(tiny_config, train_stage="mlm")
    model.train()
    interaction = train_set.inter_feat[torch.arange(8)]
    loss = model.calculate_loss(interaction)
    loss.backward()
    assert model.user_model.item_embedding.weight.grad[model.mask_token_id].abs().sum() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.pretext["mlm"].head.parameters())
    assert model.user_model.pooling.query.grad is None  # MLM predicts from hidden states, not u


# ------------------------------------------------------------------------------------------- registration
def test_get_model_resolves_ours_then_recbole():
    from recbole.model.sequential_recommender import SASRec

    assert utils.get_model("AdaptSSR") is AdaptSSR
    assert utils.get_model("SASRec") is SASRec


def test_get_model_unknown_name_is_value_error():
    with pytest.raises(ValueError, match="unknown model 'NoSuchModel': neither ours"):
        utils.get_model("NoSuchModel")


def test_get_trainer_resolves_ours_then_recbole():
    assert utils.get_trainer(ModelType.SEQUENTIAL, "AdaptSSR") is AdaptSSRTrainer
    assert issubclass(AdaptSSRTrainer, RecBoleTrainer)
    assert utils.get_trainer(ModelType.SEQUENTIAL, "SASRec") is RecBoleTrainer
    from recbole.trainer import KGATTrainer

    assert utils.get_trainer(ModelType.KNOWLEDGE, "KGAT") is KGATTrainer


def test_config_knows_adaptssr_and_its_yaml_defaults(tiny_config):
    config = Config(model="AdaptSSR", dataset="tiny", config_dict=tiny_config)
    assert config["model"] == "AdaptSSR"
    assert config["MODEL_TYPE"] == ModelType.SEQUENTIAL
    # from properties/model/AdaptSSR.yaml
    assert config["n_layers"] == 2 and config["n_heads"] == 2
    assert config["augmentations"] == ["mask", "crop", "reorder"]
    # from properties/pretext/ssr.yaml and mlm.yaml (pretrain_stages: [mlm, ssr])
    assert config["ssr_lambda_mode"] == "adaptive" and config["ssr_lambda_estimate"] == "sample"
    assert config["mlm_mask_ratio"] == 0.3 and config["mlm_head"] == "tied"  # the release's warm-up
    assert config["train_neg_sample_args"]["distribution"] == "none"
    # config_dict beats the model YAML
    assert config["hidden_size"] == tiny_config["hidden_size"] and config["MAX_ITEM_LIST_LENGTH"] == 20


# ------------------------------------------------------------------------------------------- config wiring
def test_config_options_reach_model(tiny_config):
    _, _, model = build_adaptssr(
        tiny_config,
        ssr_lambda_estimate="batch",
        ssr_hard_negative=False,
        ssr_ranking=False,
        ssr_lambda_mode="fixed",
        ssr_fixed_lambda=0.3,
        ssr_infonce_temperature=0.5,
        ssr_infonce_similarity="dot",
        augmentations=["crop", "reorder"],
        mask_ratio=0.2,
        crop_ratio=0.7,
        reorder_ratio=0.3,
        mlm_mask_ratio=0.5,
        train_stage="ssr",
        n_layers=1,
        hidden_size=8,
        inner_size=16,
    )
    ssr = model.pretext["ssr"]
    assert ssr.loss_options == dict(
        lambda_mode="fixed", fixed_lambda=0.3, lambda_estimate="batch", hard_negative=False, ranking=False,
        infonce_temperature=0.5, infonce_similarity="dot",
    )
    aug = ssr.augmenter
    assert aug.operators == ("crop", "reorder")
    assert (aug.mask_ratio, aug.crop_ratio, aug.reorder_ratio) == (0.2, 0.7, 0.3)
    assert aug.mask_token_id == model.n_items == model.user_model.mask_token_id
    assert model.pretext["mlm"].mask_ratio == 0.5
    assert model.train_stage == "ssr"
    assert len(model.user_model.encoder.layer) == 1
    assert model.user_model.pooling.query.shape == (8,)
    # ranking=False: two views only, no implicit pair
    seq = torch.tensor([[1, 2, 3, 0], [4, 5, 6, 7]])
    views = ssr.views(model.user_model, seq, torch.tensor([3, 4]))
    assert views[1] is None and views[3] is None and views[0].shape == (2, 8)


def test_defaults_reach_model(tiny_config):
    _, _, model = build_adaptssr(tiny_config)
    ssr = model.pretext["ssr"]
    assert ssr.loss_options == dict(
        lambda_mode="adaptive", fixed_lambda=0.5, lambda_estimate="sample", hard_negative=True, ranking=True,
        infonce_temperature=1.0, infonce_similarity="cos",
    )
    assert ssr.augmenter.operators == ("mask", "crop", "reorder")
    assert (ssr.augmenter.mask_ratio, ssr.augmenter.crop_ratio, ssr.augmenter.reorder_ratio) == (0.6, 0.4, 0.6)
    assert model.train_stage == "mlm"


def test_invalid_train_stage(tiny_config):
    with pytest.raises(ValueError, match=r"train_stage 'warmup' is neither finetune nor a pretext task of this model \['mlm', 'ssr'\]"):
        build_adaptssr(tiny_config, train_stage="warmup")


def test_set_stage_switches_task(tiny_config):
    _, train_set, model = build_adaptssr(tiny_config)
    model.set_stage("ssr")
    assert model.train_stage == "ssr"
    with pytest.raises(ValueError, match="train_stage"):
        model.set_stage("SSR")
    assert model.train_stage == "ssr"
    with pytest.raises(ValueError, match="scores behaviour items: predict needs them in field .item_id."):
        model.predict(train_set.inter_feat[torch.arange(2)])
