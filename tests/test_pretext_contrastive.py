"""The baseline pretext tasks (cl4srec, clue, duorec, barlow, ptum): found by name with their YAML, each lowers its
own validation loss on the tiny planted data, settings errors name the key, DuoRec's positives share the last
behaviour, PTUM's inputs and targets, and the collapse warnings."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from recbole_adaptssr.config import Config
from recbole_adaptssr.data.utils import create_dataset
from recbole_adaptssr.experiment import pretrain
from recbole_adaptssr.experiment.validation import check_pretraining
from recbole_adaptssr.pretext.base import StageSettings, get_pretext_task
from recbole_adaptssr.pretext.duorec import drop_last, last_behaviours

TASKS = ("cl4srec", "clue", "duorec", "barlow", "ptum")


def make_config(tiny_config, name, **extra):
    return Config(model="AdaptSSR", dataset="tiny", config_dict={**tiny_config, "pretrain_stages": [name], **extra})


def build_task(config, name):
    return get_pretext_task(name)(StageSettings(config, name), 61, config["hidden_size"])


class StubEncoder(nn.Module):
    """u = mean of the behaviours' embeddings (or one constant vector: a collapsed model); records its inputs."""

    def __init__(self, n_items=61, dim=8, collapsed=False):
        super().__init__()
        self.mask_token_id = n_items
        self.item_embedding = nn.Embedding(n_items + 1, dim, padding_idx=0)
        self.collapsed = collapsed
        self.inputs = []

    def forward(self, item_seq):
        self.inputs.append(item_seq.clone())
        if self.collapsed:
            return self.item_embedding.weight[1].expand(item_seq.size(0), -1) + 0.0
        valid = (item_seq != 0).float()[..., None]
        return (self.item_embedding(item_seq) * valid).sum(1) / valid.sum(1).clamp(min=1)


# ------------------------------------------------------------------------------------------- found and learning
@pytest.mark.parametrize("name", TASKS)
def test_task_is_found_by_name_and_lowers_its_own_validation_loss(tiny_config, tmp_path, name):
    task_class = get_pretext_task(name)
    assert task_class.name == name
    config = make_config(tiny_config, name, **{f"{name}_epochs": 3})
    assert config[f"{name}_valid_metric"] == "loss"  # its YAML was loaded
    result = pretrain(config, str(tmp_path / "run"))[name]
    assert len(result.history) >= 1 and result.valid_metric == "loss"
    assert result.valid["loss"] < result.initial["loss"]
    assert set(task_class.valid_metrics(StageSettings(config, name))) <= set(result.valid)


def test_a_baseline_is_fine_tuned_like_adaptssr(tmp_path):
    """barlow's checkpoint (with its projector) starts a downstream run: only the user model is transferred."""
    from recbole_adaptssr.quick_start import run
    from task_data import base_config, write_task_dataset

    data = write_task_dataset(tmp_path / "data", "tt", tasks=("cls",), n_users=40, n_targets=8)
    out = run("AdaptSSR", "tt", config_dict=base_config(
        data, tmp_path, pretrain_stages=["barlow"], barlow_epochs=1, barlow_projector=[16, 16], finetune_from=["barlow"],
        finetune_epochs=1, repeat=1, downstream_tasks=["cls"], pretrain_valid_ratio=0.2))
    assert list(out["pretrain"]) == ["barlow"]
    assert [(r.task, r.start_point) for r in out["runs"]] == [("cls", "barlow")]


# ------------------------------------------------------------------------------------------- settings
@pytest.mark.parametrize("extra,message", [
    ({"cl4srec_temperature": -0.5}, r"cl4srec_temperature must be a number > 0, got -0.5"),
    ({"clue_similarity": "l2"}, r"clue_similarity must be one of \['dot', 'cos'\], got 'l2'"),
    ({"cl4srec_mask_ratio": 1.5}, r"cl4srec_mask_ratio must be in \(0, 1\], got 1.5"),
    ({"barlow_augmentations": ["crop", "shuffle"]}, r"unknown augmentation operator 'shuffle'"),
    ({"duorec_same_target": "drop"}, r"duorec_same_target must be one of \['keep', 'mask', 'positive'\]"),
    ({"duorec_drop_last": "yes"}, r"duorec_drop_last must be True or False, got 'yes'"),
    ({"barlow_lambda_offdiag": -1.0}, r"barlow_lambda_offdiag must be a number >= 0, got -1.0"),
    ({"barlow_projector": [64, 0]}, r"barlow_projector must be a list of layer widths"),
    ({"ptum_next_k": 0}, r"ptum_next_k must be an integer >= 1, got 0"),
    ({"ptum_negatives": 2.5}, r"ptum_negatives must be an integer >= 0, got 2.5"),
    ({"ptum_valid_metric": "acc_top1"}, r"ptum_valid_metric='acc_top1' is not a validation statistic of pretext task"),
])
def test_bad_settings_are_rejected_naming_the_key(tiny_config, extra, message):
    name = next(iter(extra)).split("_")[0]
    with pytest.raises(ValueError, match=message):
        check_pretraining(make_config(tiny_config, name, **extra))


# ------------------------------------------------------------------------------------------- DuoRec
def test_duorec_positive_is_another_training_sequence_with_the_same_last_behaviour(tiny_config):
    config = make_config(tiny_config, "duorec")
    train, valid = create_dataset(config).build()
    task = build_task(config, "duorec")
    task.fit_data(train)
    field = config["ITEM_ID_FIELD"] + config["LIST_SUFFIX"]
    corpus = train.inter_feat[field]
    corpus_len = train.inter_feat[config["ITEM_LIST_LENGTH_FIELD"]]
    corpus_last = last_behaviours(corpus, corpus_len)
    generator = torch.Generator().manual_seed(0)
    for split in (train, valid):
        seq, length = split.inter_feat[field], split.inter_feat[config["ITEM_LIST_LENGTH_FIELD"]]
        positives, target = task.sample_positives(seq, length, generator)
        assert torch.equal(target, last_behaviours(seq, length))
        pos_len = (positives != 0).sum(dim=1)
        assert torch.equal(last_behaviours(positives, pos_len), target)  # the same last behaviour, every row
        in_corpus = (positives[:, None, :] == corpus[None, :, :]).all(-1).any(1)
        others = (corpus_last[None, :] == target[:, None]).sum(1) - (seq[:, None, :] == corpus[None]).all(-1).sum(1)
        itself = (positives == seq).all(dim=1)
        assert bool(in_corpus[others > 0].all()) and not bool(itself[others > 0].any())  # another sequence
        assert bool(itself[others == 0].all())  # none shares it: the sequence itself (DuoRec's fallback)
        assert int((others > 0).sum()) > len(seq) // 2  # the tiny data exercises the interesting case


def test_duorec_views_exclude_the_shared_last_behaviour():
    seq = torch.tensor([[3, 4, 5, 0], [7, 0, 0, 0]])
    assert drop_last(seq, torch.tensor([3, 1])).tolist() == [[3, 4, 0, 0], [7, 0, 0, 0]]


# ------------------------------------------------------------------------------------------- PTUM
def test_ptum_masks_one_behaviour_and_predicts_the_last_k_from_the_prefix(tiny_config):
    config = make_config(tiny_config, "ptum", ptum_next_k=2)
    task, encoder = build_task(config, "ptum"), StubEncoder()
    seq = torch.tensor([[5, 6, 7, 8, 0], [9, 10, 0, 0, 0], [11, 0, 0, 0, 0]])
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        stats = task.validation_step(encoder, seq, torch.tensor([4, 2, 1]), generator=generator)
    masked, prefix = encoder.inputs[0].chunk(2)
    is_mask = masked == encoder.mask_token_id
    assert (is_mask.sum(1) == 1).all() and (seq[is_mask] != 0).all()  # one valid behaviour masked per sequence
    assert torch.equal(torch.where(is_mask, seq, masked), seq)  # the others untouched
    assert prefix.tolist() == [[5, 6, 0, 0, 0], [9, 0, 0, 0, 0], [11, 0, 0, 0, 0]]  # n > K: last K; else last n-1
    assert {"loss", "mbp_loss", "nbp_loss", "mbp_acc", "nbp_acc", "mean_cosine"} <= set(stats)


def test_ptum_negatives_follow_the_training_behaviours(tiny_config):
    config = make_config(tiny_config, "ptum", ptum_negatives=50)
    train, _ = create_dataset(config).build()
    task = build_task(config, "ptum")
    assert task.n_items == train.item_num  # 60 items and padding
    task.fit_data(train)
    seen = torch.zeros(train.item_num + 1, dtype=torch.bool)
    seen[train.inter_feat[config["ITEM_ID_FIELD"] + config["LIST_SUFFIX"]].reshape(-1)] = True
    drawn = task._negatives(torch.ones(200, dtype=torch.long), torch.Generator().manual_seed(0))
    assert drawn.shape == (200, 50) and bool(seen[drawn].all())  # never padding, the mask token or unseen items


# ------------------------------------------------------------------------------------------- collapse
@pytest.mark.parametrize("name", TASKS)
def test_collapsed_representations_are_reported_and_healthy_ones_are_not(tiny_config, name):
    config = make_config(tiny_config, name, **{f"{name}_projector": []} if name == "barlow" else {})
    task = build_task(config, name)
    if name == "duorec":
        task.build_index(torch.tensor([[1, 2, 3], [4, 2, 3], [5, 6, 0]]), torch.tensor([3, 3, 2]))
    seq, length = torch.tensor([[1, 2, 3], [4, 2, 3], [5, 6, 0], [7, 0, 0]]), torch.tensor([3, 3, 2, 1])
    torch.manual_seed(0)
    with torch.no_grad():
        healthy = task.validation_step(StubEncoder(), seq, length, generator=torch.Generator().manual_seed(0))
        collapsed = task.validation_step(StubEncoder(collapsed=True), seq, length,
                                         generator=torch.Generator().manual_seed(0))
    assert collapsed["mean_cosine"] > 0.99 and healthy["mean_cosine"] < 0.95
    assert task.check_start(healthy) is None and task.check_end(healthy) is None
    assert "mean cosine" in task.check_start(collapsed) and "ended collapsed" in task.check_end(collapsed)


def test_barlow_reports_unrelated_views(tiny_config):
    task = build_task(make_config(tiny_config, "barlow"), "barlow")
    assert "on-diagonal cross-correlation" in task.check_start({"mean_cosine": 0.2, "on_diag": 0.01})
    assert task.check_start({"mean_cosine": 0.2, "on_diag": 0.4}) is None


def test_ptum_full_softmax_matches_the_direct_computation(tiny_config):
    """ptum_negatives: 0 scores every item but padding and the mask token (blockwise, exact)."""
    task, encoder = build_task(make_config(tiny_config, "ptum", ptum_negatives=0), "ptum"), StubEncoder()
    query, targets = torch.randn(5, 8), torch.tensor([1, 7, 60, 3, 3])
    ce, hits = task._predictions(encoder, query, targets, None, hits=True)
    logits = query @ encoder.item_embedding.weight.T
    logits[:, [0, encoder.mask_token_id]] = float("-inf")
    torch.testing.assert_close(ce, torch.nn.functional.cross_entropy(logits, targets, reduction="none"))
    assert torch.equal(hits, logits.argmax(1) == targets)
