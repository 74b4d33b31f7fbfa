"""RecBole's sequential models as user-model backbones (``user_model``; recbole_adaptssr/encoder/).

* Each backbone: the encoder interface (shapes, valid mask, mask-token row), padding invariance, causality of the
  causal ones (SASRec, GRU4Rec, NextItNet) and bidirectionality of BERT4Rec, the readouts, ``set_dropout`` reaching
  its dropout modules, the length check, RecBole's layers and YAML defaults, every pretext task's loss.
* The default ``transformer`` is the paper's user model, bit for bit as before.
* A GRU4Rec backbone pre-trained (MLM then AdaptSSR) and fine-tuned on profiling tasks through the pipeline; its
  checkpoints record it, and fine-tuning them with another backbone or pooling is an error before anything trains.
"""

from __future__ import annotations

import pytest
import torch
from recbole.model.layers import TransformerEncoder
from recbole.utils import init_seed
from torch import nn

from recbole_adaptssr.checkpoint import load_checkpoint
from recbole_adaptssr.config import Config
from recbole_adaptssr.data.utils import create_dataset
from recbole_adaptssr.encoder.base import SequenceEncoder, builtin_user_models, checkpoint_identity, get_user_model
from recbole_adaptssr.encoder.pooling import build_pooling
from recbole_adaptssr.encoder.user_model import UserModel
from recbole_adaptssr.model.adaptssr import AdaptSSR
from recbole_adaptssr.pretext.base import builtin_pretext_tasks
from recbole_adaptssr.quick_start import run
from task_data import base_config, one_torch_thread, write_task_dataset

N_ITEMS, MAX_LEN, D = 30, 12, 16
RECBOLE_BACKBONES = ("SASRec", "BERT4Rec", "GRU4Rec", "NextItNet")
CAUSAL = ("SASRec", "GRU4Rec", "NextItNet")
SMALL = {"SASRec": dict(n_layers=2, n_heads=2, inner_size=32), "BERT4Rec": dict(n_layers=2, n_heads=2, inner_size=32),
         "GRU4Rec": dict(gru_hidden_size=24), "NextItNet": dict(block_num=2), "transformer": dict(inner_size=32)}


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    with one_torch_thread():
        yield


def backbone(name, seed=0, **kwargs):
    torch.manual_seed(seed)
    return get_user_model(name)(n_items=N_ITEMS, max_seq_length=MAX_LEN, hidden_size=D,
                                **{**SMALL[name], **kwargs}).eval()


def padded(rows, length):
    out = torch.zeros((len(rows), length), dtype=torch.long)
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.tensor(row)
    return out


ROWS = [[3, 4, 5, 6, 7], [9, 2], [11, 12, 13, 14, 15, 16, 17, 18]]


# ------------------------------------------------------------------------------------------- registry and config
def test_every_backbone_is_found_by_name_and_unknown_names_get_a_hint(tiny_config):
    assert builtin_user_models() == ["BERT4Rec", "GRU4Rec", "NextItNet", "SASRec", "transformer"]
    with pytest.raises(ValueError, match=r"unknown user_model 'GRU4rec'; known: .*did you mean GRU4Rec"):
        Config(model="AdaptSSR", dataset="tiny", config_dict={**tiny_config, "user_model": "GRU4rec"})


@pytest.mark.parametrize("extra,message", [
    ({"user_model": "transformer", "user_model_pooling": "last"},
     r"user_model_pooling must be one of \['attention'\] for user_model=transformer, got 'last'"),
    ({"user_model": "GRU4Rec", "user_model_pooling": "max"},
     r"user_model_pooling must be one of \['attention', 'last', 'mean'\] for user_model=GRU4Rec, got 'max'"),
    ({"user_model": "SASRec", "sasrec_hidden_size": 32}, r"sasrec_hidden_size cannot be set: .* shared"),
    ({"user_model": "SASRec", "n_heads": 3}, r"hidden_size must be a multiple of n_heads"),
    ({"user_model": "GRU4Rec", "gru4rec_num_layers": 0}, r"gru4rec_num_layers must be an integer >= 1, got 0"),
    ({"user_model": "NextItNet", "nextitnet_dilations": [1, 0]}, r"nextitnet_dilations must be a non-empty list"),
])
def test_bad_backbone_settings_fail_before_anything_runs(task_data, tmp_path, extra, message):
    with pytest.raises(ValueError, match=message):
        run("AdaptSSR", "tt", config_dict=base_config(task_data, tmp_path, mlm_epochs=1, ssr_epochs=1, **extra))
    assert not (tmp_path / "saved").exists()


class BagOfItems(SequenceEncoder):
    """A backbone defined outside the package: scaled item embeddings, found by name with its own YAML."""

    name = "BagOfItems"

    def __init__(self, n_items, max_seq_length, hidden_size, scale, pooling="attention"):
        super().__init__(n_items, max_seq_length, pooling)
        self.scale = scale
        self.item_embedding = nn.Embedding(n_items + 1, hidden_size, padding_idx=0)
        self.dropout = nn.Dropout(0.1)
        self.pooling = build_pooling(pooling, hidden_size)

    @classmethod
    def from_config(cls, config, n_items, max_seq_length):
        return cls(n_items, max_seq_length, config["hidden_size"], cls.settings(config)["scale"],
                   config["user_model_pooling"])

    def encode(self, item_seq):
        self.check_length(item_seq)
        return self.dropout(self.item_embedding(item_seq)) * self.scale, item_seq != 0


def test_a_backbone_of_ones_own_is_found_by_name_with_its_yaml(tiny_config, tmp_path, monkeypatch):
    (tmp_path / "bag.yaml").write_text("bagofitems_scale: 3.0\n")
    monkeypatch.setattr(BagOfItems, "config_file", str(tmp_path / "bag.yaml"))
    config, _, model = build_adaptssr(tiny_config, user_model="BagOfItems", user_model_pooling="mean")
    assert isinstance(model.user_model, BagOfItems) and model.user_model.scale == 3.0
    assert model.user_model.identity == ("BagOfItems", "mean")
    (tmp_path / "bag.yaml").write_text("bagofitems_scale: 3.0\nhidden_size: 8\n")
    with pytest.raises(ValueError, match=r"bag.yaml: user_model 'BagOfItems' may only define settings prefixed "
                                         r"bagofitems_, found \['hidden_size'\]"):
        Config(model="AdaptSSR", dataset="tiny", config_dict={**tiny_config, "user_model": "BagOfItems"})


def test_backbone_yaml_defaults_are_recbole_s_and_build_recbole_s_layers(tiny_config):
    """GRU4Rec's YAML: RecBole's hidden_size 128 and num_layers 1 (the embedding size is the shared hidden_size);
    NextItNet's: kernel 3, 5 x [1, 4] blocks of RecBole's own ResidualBlock_b; SASRec: RecBole's TransformerEncoder.
    A command-line value beats the YAML."""
    from recbole.model.sequential_recommender.nextitnet import ResidualBlock_b

    config, _, model = build_adaptssr(tiny_config, user_model="GRU4Rec")
    gru = model.user_model.gru_layers
    assert (config["gru4rec_hidden_size"], config["gru4rec_num_layers"]) == (128, 1)
    assert isinstance(gru, nn.GRU) and (gru.input_size, gru.hidden_size, gru.num_layers, gru.bias) == (32, 128, 1, False)
    assert model.user_model.dense.out_features == config["hidden_size"] == 32
    _, _, model = build_adaptssr(tiny_config, user_model="GRU4Rec", gru4rec_hidden_size=48)
    assert model.user_model.gru_layers.hidden_size == 48
    config, _, model = build_adaptssr(tiny_config, user_model="NextItNet")
    blocks = list(model.user_model.residual_blocks)
    assert (config["nextitnet_kernel_size"], config["nextitnet_block_num"], config["nextitnet_dilations"]) == (3, 5, [1, 4])
    assert all(isinstance(b, ResidualBlock_b) for b in blocks) and [b.dilation for b in blocks] == [1, 4] * 5
    _, _, model = build_adaptssr(tiny_config, user_model="SASRec", sasrec_n_layers=1)
    assert isinstance(model.user_model.trm_encoder, TransformerEncoder)
    assert len(model.user_model.trm_encoder.layer) == 1 and model.user_model.bidirectional is False


def build_adaptssr(tiny_config, **extra):
    config = Config(model="AdaptSSR", dataset="tiny", config_dict={**tiny_config, **extra})
    init_seed(config["seed"], config["reproducibility"])
    train_set, _ = create_dataset(config).build()
    return config, train_set, AdaptSSR(config, train_set)


def test_the_default_transformer_is_the_paper_s_user_model_bit_for_bit(tiny_config):
    """user_model unset: the model holds the Eq. 2-4 UserModel built exactly as before (same settings, same random
    draws): identical state dict (no backbone record) and identical outputs."""
    config, train_set, model = build_adaptssr(tiny_config)
    assert config["user_model"] == "transformer" and config["user_model_pooling"] == "attention"
    init_seed(config["seed"], config["reproducibility"])
    reference = UserModel(n_items=train_set.item_num, max_seq_length=config["MAX_ITEM_LIST_LENGTH"],
                          hidden_size=config["hidden_size"], n_layers=config["n_layers"], n_heads=config["n_heads"],
                          inner_size=config["inner_size"], hidden_dropout_prob=config["hidden_dropout_prob"],
                          attn_dropout_prob=config["attn_dropout_prob"], hidden_act=config["hidden_act"],
                          layer_norm_eps=config["layer_norm_eps"], initializer_range=config["initializer_range"])
    ours, theirs = model.user_model.state_dict(), reference.state_dict()
    assert isinstance(model.user_model, UserModel) and list(ours) == list(theirs)
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    seq = train_set.inter_feat[train_set.item_id_list_field][:8]
    model.user_model.eval(), reference.eval()
    assert torch.equal(model.user_model(seq), reference(seq))


# ------------------------------------------------------------------------------------------- the encoder interface
@pytest.mark.parametrize("name", RECBOLE_BACKBONES + ("transformer",))
def test_shapes_valid_mask_and_the_mask_token_row(name):
    model = backbone(name)
    seq = padded(ROWS, 10)
    hidden, valid = model.encode(seq)
    assert hidden.shape == (3, 10, D) and torch.equal(valid, seq != 0)
    assert model(seq).shape == (3, D) and torch.equal(model(seq), model.pooling(hidden, valid))
    assert model.item_embedding.num_embeddings == N_ITEMS + 1 and model.item_embedding.padding_idx == 0
    assert model.mask_token_id == N_ITEMS and model.n_items == N_ITEMS and model.max_seq_length == MAX_LEN
    masked = seq.clone()
    masked[0, 1] = model.mask_token_id
    assert not torch.allclose(model(masked)[0], model(seq)[0])  # the mask token is an input of its own
    model.train()
    model(masked).sum().backward()
    assert model.item_embedding.weight.grad[N_ITEMS].abs().sum() > 0  # its row is learned
    with pytest.raises(ValueError, match=f"exceeds MAX_ITEM_LIST_LENGTH={MAX_LEN}"):
        model.encode(torch.ones((1, MAX_LEN + 1), dtype=torch.long))


@pytest.mark.parametrize("pooling", ["attention", "last", "mean"])
@pytest.mark.parametrize("name", RECBOLE_BACKBONES)
def test_appending_padding_does_not_change_u(name, pooling):
    model = backbone(name, pooling=pooling)
    short, long = model(padded(ROWS, 8)), model(padded(ROWS, MAX_LEN))
    # causal backbones: exactly equal up to float summation order; attention masks padding keys with -1e4
    assert torch.allclose(short, long, atol=1e-5), (short - long).abs().max()


@pytest.mark.parametrize("name", CAUSAL)
def test_causal_backbones_hidden_states_ignore_later_items(name):
    model = backbone(name)
    seq = padded(ROWS, 10)
    changed = seq.clone()
    changed[:, 1] = torch.tensor([20, 21, 22])  # a different item at position 1
    before, _ = model.encode(seq)
    after, _ = model.encode(changed)
    assert torch.allclose(before[:, :1], after[:, :1], atol=1e-6)  # position 0 never sees position 1
    assert not torch.allclose(before[:, 1:2], after[:, 1:2], atol=1e-4)


def test_bert4rec_is_bidirectional():
    model = backbone("BERT4Rec")
    seq = padded(ROWS, 10)
    changed = seq.clone()
    changed[:, 1] = torch.tensor([20, 21, 22])
    assert not torch.allclose(model.encode(seq)[0][:, :1], model.encode(changed)[0][:, :1], atol=1e-4)


def test_last_and_mean_readouts():
    """last = RecBole's gather_indexes(output, item_seq_len - 1); mean = average over valid positions."""
    seq = padded(ROWS, 10)
    lengths = (seq != 0).sum(dim=1)
    for name in ("GRU4Rec", "SASRec"):
        hidden, _ = backbone(name, pooling="last").encode(seq)
        expected = hidden.gather(1, (lengths - 1).view(-1, 1, 1).expand(-1, -1, D)).squeeze(1)
        assert torch.allclose(backbone(name, pooling="last")(seq), expected)
        hidden, _ = backbone(name, pooling="mean").encode(seq)
        expected = torch.stack([hidden[i, :n].mean(dim=0) for i, n in enumerate(lengths)])
        assert torch.allclose(backbone(name, pooling="mean")(seq), expected, atol=1e-6)


@pytest.mark.parametrize("name", RECBOLE_BACKBONES)
def test_set_dropout_reaches_every_dropout_module(name):
    model = backbone(name)
    dropouts = {n: m for n, m in model.named_modules() if isinstance(m, nn.Dropout)}
    assert dropouts  # the implicit augmentation needs at least one
    model.set_dropout(0.37, 0.23)
    assert {n: m.p for n, m in dropouts.items()} == {n: (0.23 if n.endswith("attn_dropout") else 0.37) for n in dropouts}
    if name in ("SASRec", "BERT4Rec"):
        assert any(n.endswith("attn_dropout") for n in dropouts)
    seq = padded(ROWS, 10)
    model.train()
    assert not torch.allclose(model(seq), model(seq))  # two passes, two dropout masks
    model.set_dropout(0.0, 0.0)
    assert torch.equal(model(seq), model(seq))


@pytest.mark.parametrize("name", RECBOLE_BACKBONES)
def test_every_pretext_task_trains_on_the_backbone(tiny_config, name):
    """Each pretext task's loss is finite on the backbone and its gradient reaches the backbone's weights."""
    tasks = builtin_pretext_tasks()
    extra = {"gru4rec_hidden_size": 32} if name == "GRU4Rec" else {"nextitnet_block_num": 1} if name == "NextItNet" else {}
    config, train_set, model = build_adaptssr(tiny_config, user_model=name, pretrain_stages=tasks, **extra)
    assert type(model.user_model).__name__ == name
    seq = train_set.inter_feat[train_set.item_id_list_field][:16]
    lengths = train_set.inter_feat[train_set.item_list_length_field][:16]
    generator = torch.Generator().manual_seed(0)
    for task in tasks:
        model.set_stage(task)
        model.pretext[task].fit_data(train_set)
        model.zero_grad()
        loss = model.pretext[task].loss(model.user_model, seq, lengths, generator=generator)
        loss.backward()
        grads = [p.grad for p in model.user_model.parameters() if p.grad is not None]
        assert torch.isfinite(loss), task
        if task != "ccl":  # CCL trains only its generator during the warm-up epochs
            assert sum(float(g.abs().sum()) for g in grads) > 0, task


# ------------------------------------------------------------------------------------------- the pipeline
@pytest.fixture(scope="module")
def gru_pipeline(tmp_path_factory):
    """GRU4Rec pre-trained with MLM then AdaptSSR, fine-tuned from ssr on a multiclass and a binary profiling
    task; load_pretrained is watched to see which weights each fine-tune starts from."""
    tmp = tmp_path_factory.mktemp("gru")
    data = write_task_dataset(tmp / "data", "tt", tasks=("cls", "bin"), n_users=80)
    config_dict = base_config(data, tmp, user_model="GRU4Rec", gru4rec_hidden_size=24, mlm_epochs=5, ssr_epochs=1,
                              mlm_learning_rate=0.02, mlm_hidden_dropout_prob=0.1, finetune_epochs=2, pretrain_valid_ratio=0.2,
                              downstream_tasks=["cls", "bin"])
    loaded = []
    original = AdaptSSR.load_pretrained

    def watched(self, state_dict):
        original(self, state_dict)
        loaded.append((type(self.user_model).__name__, {k: v.clone() for k, v in self.user_model.state_dict().items()}))

    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp)
        mp.setattr("sys.argv", ["pytest"])
        mp.setattr(AdaptSSR, "load_pretrained", watched)
        out = run("AdaptSSR", "tt", config_dict=config_dict)
    return out, loaded, data, tmp


def test_gru4rec_pre_trains_and_fine_tunes_on_profiling_tasks(gru_pipeline):
    out, loaded, _, _ = gru_pipeline
    mlm = out["pretrain"]["mlm"]
    assert mlm.valid["loss"] < mlm.initial["loss"]  # MLM through the GRU learns something
    assert set(out["pretrain"]) == {"mlm", "ssr"}
    runs = {r.task: r for r in out["runs"]}
    assert set(runs) == {"cls", "bin"} and runs["cls"].valid_metric == "acc" and runs["bin"].valid_metric == "auc"
    for r in runs.values():
        value = r.test[r.valid_metric]
        assert 0.0 <= value <= 1.0 and r.start_point == "ssr"
    # each fine-tune started from the ssr checkpoint's GRU4Rec weights
    ssr = load_checkpoint(out["pretrain"]["ssr"].checkpoint)["state_dict"]
    assert [name for name, _ in loaded] == ["GRU4Rec", "GRU4Rec"]
    for _, weights in loaded:
        assert all(torch.equal(weights[k], ssr[f"user_model.{k}"]) for k in weights)


def test_checkpoints_record_the_backbone(gru_pipeline):
    out, _, _, _ = gru_pipeline
    for stage in ("mlm", "ssr"):
        state = load_checkpoint(out["pretrain"][stage].checkpoint)
        assert checkpoint_identity(state) == ("GRU4Rec", "attention")
        assert state["config"]["user_model"] == "GRU4Rec"
    fine_tuned = torch.load(out["runs"][0].checkpoint, weights_only=True)["state_dict"]
    assert bytes(fine_tuned["user_model._extra_state"].tolist()) == b"GRU4Rec|attention"


@pytest.mark.parametrize("extra,holds", [
    ({"user_model": "SASRec"}, "SASRec with attention"),
    ({}, "transformer with attention"),
    ({"user_model": "GRU4Rec", "user_model_pooling": "last"}, "GRU4Rec with last"),
])
def test_fine_tuning_a_checkpoint_with_another_backbone_is_an_error(gru_pipeline, tmp_path, extra, holds):
    out, _, data, _ = gru_pipeline
    path = out["pretrain"]["ssr"].checkpoint
    config_dict = base_config(data, tmp_path, pretrain_stages=[], finetune_from=[path], downstream_tasks=["cls"],
                              **extra)
    with pytest.raises(ValueError, match=rf"holds user model 'GRU4Rec' with attention pooling, but this run builds "
                                         rf"user_model={holds.replace(' with ', ' with user_model_pooling=')}"):
        run("AdaptSSR", "tt", config_dict=config_dict)
    assert not (tmp_path / "saved").exists()


def test_load_pretrained_refuses_another_backbone(gru_pipeline, tiny_config):
    """The same check in the model itself (a caller that skips the pipeline's validation)."""
    out, _, _, _ = gru_pipeline
    state = load_checkpoint(out["pretrain"]["ssr"].checkpoint)["state_dict"]
    _, _, model = build_adaptssr(tiny_config)  # the transformer
    with pytest.raises(ValueError, match=r"holds user model 'GRU4Rec' with attention pooling, but this run builds "
                                         r"user_model=transformer"):
        model.load_pretrained(state)
    _, _, sasrec = build_adaptssr(tiny_config, user_model="SASRec")
    transformer_state = {f"user_model.{k}": v for k, v in model.user_model.state_dict().items()}
    with pytest.raises(ValueError, match=r"holds user model 'transformer' .* builds user_model=SASRec"):
        sasrec.load_pretrained(transformer_state)
