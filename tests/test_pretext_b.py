"""The pretext tasks coserec, ccl and idicl, and AdaptSSR's ranking task with CoSeRec's augmentations (Fig. 3), on the
tiny planted data set: lookup by name, YAML defaults, learning, their own invariants and bad settings."""

import math

import pytest
import torch
import yaml
from recbole.utils import init_seed

from recbole_adaptssr.config import Config
from recbole_adaptssr.data.utils import create_dataset
from recbole_adaptssr.experiment import pretrain
from recbole_adaptssr.model.adaptssr import AdaptSSR
from recbole_adaptssr.pretext.base import StageSettings, builtin_pretext_tasks, get_pretext_task
from recbole_adaptssr.pretext.ccl import sample_items
from recbole_adaptssr.pretext.idicl import InterestDictionary, split_periods
from recbole_adaptssr.plugins import properties_file

TASKS = ["coserec", "ccl", "idicl"]
COSEREC_OPERATORS = ["substitute", "insert", "crop", "mask", "reorder"]


def build(tiny_config, stage, **settings):
    """Config, training split and model of a run whose only stage is ``stage``."""
    config = Config(model="AdaptSSR", dataset="tiny",
                    config_dict={**tiny_config, "pretrain_stages": [stage], "train_stage": stage, **settings})
    init_seed(config["seed"], config["reproducibility"])
    train_set, _ = create_dataset(config).build()
    return config, train_set, AdaptSSR(config, train_set)


def batch(train_set, rows=8):
    feat = train_set.inter_feat[torch.arange(rows)]
    return feat[train_set.item_id_list_field], feat[train_set.item_list_length_field]


# ------------------------------------------------------------------------------------------- lookup and defaults
@pytest.mark.parametrize("name", TASKS)
def test_task_found_by_name_with_its_yaml(name, tiny_config):
    task_class = get_pretext_task(name)
    assert task_class.name == name and name in builtin_pretext_tasks()
    assert task_class.min_batch_size == 2  # in-batch negatives
    with open(properties_file("pretext", f"{name}.yaml")) as f:
        defaults = yaml.safe_load(f)
    assert defaults and all(key.startswith(f"{name}_") for key in defaults)
    config = Config(model="AdaptSSR", dataset="tiny", config_dict={**tiny_config, "pretrain_stages": [name]})
    assert {key: config[key] for key in defaults} == defaults
    metrics = task_class.valid_metrics(StageSettings(config, name))
    assert metrics == {"loss": False, "acc_top1": True}


def test_coserec_defaults_are_coserecs(tiny_config):
    _, train_set, model = build(tiny_config, "coserec")
    aug = model.pretext["coserec"].augmenter
    assert aug.operators == ("crop", "mask", "reorder", "substitute", "insert")
    assert aug.ratios == {"mask": 0.7, "crop": 0.2, "reorder": 0.2, "substitute": 0.1, "insert": 0.4}
    assert (aug.short_seq_threshold, aug.short_seq_operators) == (4, ("insert", "substitute", "mask"))
    assert (aug.correlation_measure, aug.correlation_topk) == ("itemcf_iuf", 1)
    seq, lens = batch(train_set)
    task = model.pretext["coserec"]
    with pytest.raises(RuntimeError, match="need the item correlations"):
        task.loss(model.user_model, seq, lens)
    task.fit_data(train_set)
    assert aug.correlation.items.shape == (model.n_items + 1, 1)
    assert torch.isfinite(task.loss(model.user_model, seq, lens))


# ------------------------------------------------------------------------------------------- learning
# lr 0.001 (tiny_config), 3 epochs: the kept epoch's validation loss is below the one before training on seed 2023
# (measured: coserec 3.66 -> 2.19, ccl 6.98 -> 6.68 with the first epoch training only its generator, idicl 2.26 -> 1.56).
@pytest.mark.parametrize("name, extra", [("coserec", ["acc_top1"]), ("ccl", ["generator_loss", "fill_match"]),
                                         ("idicl", ["interest_usage"])])
def test_pretraining_lowers_the_tasks_validation_loss(name, extra, tiny_config, tmp_path):
    config = Config(model="AdaptSSR", dataset="tiny",
                    config_dict={**tiny_config, "pretrain_stages": [name], f"{name}_epochs": 3})
    result = pretrain(config, str(tmp_path / "run"))[name]
    assert len(result.history) == 3
    assert result.valid["loss"] < result.initial["loss"], (result.initial, result.valid)
    assert {"loss", "acc_top1", "mean_cosine", *extra} <= set(result.valid)
    assert all(math.isfinite(value) for value in result.valid.values())


def test_ranking_with_coserecs_augmentations(tiny_config, tmp_path):
    """Fig. 3: AdaptSSR's ranking objective on CoSeRec's views is a setting: the ssr stage fits its augmenter's
    correlations from the training split and trains."""
    settings = {"pretrain_stages": ["mlm", "ssr"], "ssr_augmentations": COSEREC_OPERATORS, "mlm_epochs": 1,
                "ssr_epochs": 1}
    result = pretrain(Config(model="AdaptSSR", dataset="tiny", config_dict={**tiny_config, **settings}),
                      str(tmp_path / "run"))
    assert list(result) == ["mlm", "ssr"]
    ssr = result["ssr"]
    assert len(ssr.history) == 1 and math.isfinite(ssr.history[0]["train_loss"])
    assert {"acc_implicit", "acc_explicit", "lambda"} <= set(ssr.valid)
    # the views it trained on: substitute and insert draw correlated items of the training split
    _, train_set, model = build(tiny_config, "ssr", ssr_augmentations=COSEREC_OPERATORS)
    task = model.pretext["ssr"]
    task.fit_data(train_set)
    table = task.augmenter.correlation.items
    seq, lens = batch(train_set, rows=64)
    pair = task.augmenter(seq, lens, generator=torch.Generator().manual_seed(0))
    substituted = 0
    for row in range(64):
        if task.augmenter.operators[pair.op_a[row]] == "substitute":
            for before, after in zip(seq[row].tolist(), pair.seq_a[row].tolist()):
                if before != after:
                    assert after in table[before].tolist()
                    substituted += 1
    assert substituted > 0


# ------------------------------------------------------------------------------------------- ccl
def test_ccl_curriculum_and_warmup(tiny_config):
    _, train_set, model = build(tiny_config, "ccl", ccl_generator_warmup_epochs=1, ccl_curriculum_epochs=4,
                                ccl_mask_ratio_start=0.1, ccl_mask_ratio_end=0.5)
    task = model.pretext["ccl"]
    task.fit_data(train_set)
    assert task.steps_per_epoch == math.ceil(108 / 32)
    ratios = {}
    for step in (0, 4, 8, 12, 20, 40):
        task.curriculum_step.fill_(step)
        ratios[step / 4] = task.mask_ratio()
    assert ratios == pytest.approx({0.0: 0.1, 1.0: 0.1, 2.0: 0.2, 3.0: 0.3, 5.0: 0.5, 10.0: 0.5})
    seq, lens = batch(train_set)
    # warm-up step: only the generator learns
    task.curriculum_step.zero_()
    model.zero_grad()
    task.loss(model.user_model, seq, lens).backward()
    assert task.curriculum_step.item() == 1
    assert all(p.grad is None or not p.grad.any() for p in model.user_model.parameters())
    assert task.generator_bias.grad.abs().sum() > 0
    # after it: the encoder learns too
    task.curriculum_step.fill_(task.steps_per_epoch)
    model.zero_grad()
    task.loss(model.user_model, seq, lens).backward()
    assert model.user_model.item_embedding.weight.grad.abs().sum() > 0
    # validation scores the views of the final share, whatever the step
    with torch.no_grad():
        stats = task.validation_step(model.user_model, seq, lens, generator=torch.Generator().manual_seed(0))
    assert stats["loss"] == pytest.approx(stats["cl_loss"] + stats["generator_loss"])
    # the kept epoch is reported when the generator is no better than a uniform guess over the n_items - 1 items
    uniform = math.log(model.n_items - 1)
    assert "generator learnt nothing" in task.check_end({"generator_loss": uniform + 0.01, "mean_cosine": 0.2})
    assert task.check_end({"generator_loss": uniform - 0.5, "mean_cosine": 0.2}) is None


def test_ccl_mask_and_fill_views(tiny_config):
    _, train_set, model = build(tiny_config, "ccl")
    task = model.pretext["ccl"]
    seq, lens = batch(train_set, rows=32)
    seq[0, 1:] = 0
    lens[0] = 1
    torch.manual_seed(0)  # the generator's dropout
    filled, loss, match = task.mask_and_fill(seq, lens, 0.5, generator=torch.Generator().manual_seed(1))
    assert filled.shape == (64, seq.shape[1]) and loss.requires_grad and 0 <= match <= 1
    for view in filled.chunk(2):
        assert torch.equal(view != 0, seq != 0)  # lengths and padding kept
        assert ((view > 0) & (view < model.n_items) | (view == 0)).all()  # items only: no mask token, no padding
        changed = (view != seq).sum(dim=1)
        budget = torch.minimum(torch.ceil(lens * 0.5 - 1e-6).long().clamp(min=1), lens - 1)
        assert (changed <= budget).all() and changed[0] == 0
    torch.manual_seed(0)
    again, _, _ = task.mask_and_fill(seq, lens, 0.5, generator=torch.Generator().manual_seed(1))
    assert torch.equal(filled, again)


def test_sample_items_follows_the_softmax():
    hidden = torch.tensor([[1.0, 0.0]]).repeat(20_000, 1)
    weight = torch.tensor([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0], [-1.0, 0.0], [0.5, 0.0]])
    bias = torch.tensor([0.0, 0.0, 0.0, 0.0, 0.3])
    expected = torch.softmax(hidden[0] @ weight.T + bias, dim=0)
    for block in (2, 5):
        drawn = sample_items(hidden, weight, bias, torch.Generator().manual_seed(block), block_items=block)
        freq = torch.bincount(drawn, minlength=5).double() / len(drawn)
        assert torch.allclose(freq, expected.double(), atol=0.015), (block, freq, expected)


# ------------------------------------------------------------------------------------------- idicl
def test_idicl_periods():
    seq = torch.tensor([[1, 2, 3, 4, 5], [6, 7, 8, 0, 0], [9, 0, 0, 0, 0], [4, 5, 0, 0, 0]])
    lens = torch.tensor([5, 3, 1, 2])
    early, early_len, late, late_len = split_periods(seq, lens, 0.5)
    assert early.tolist() == [[1, 2, 3, 0, 0], [6, 7, 0, 0, 0], [9, 0, 0, 0, 0], [4, 0, 0, 0, 0]]
    assert late.tolist() == [[4, 5, 0, 0, 0], [8, 0, 0, 0, 0], [9, 0, 0, 0, 0], [5, 0, 0, 0, 0]]
    assert early_len.tolist() == [3, 2, 1, 1] and late_len.tolist() == [2, 1, 1, 1]
    _, early_len, _, late_len = split_periods(seq, lens, 0.9)
    assert early_len.tolist() == [4, 2, 1, 1] and late_len.tolist() == [1, 1, 1, 1]  # never an empty period


def test_interest_dictionary_representation():
    torch.manual_seed(0)
    dictionary = InterestDictionary(n_interests=6, hidden_size=8, top=2, initializer_range=1.0)
    hidden = torch.randn(5, 4, 8, requires_grad=True)
    valid = torch.tensor([[True] * 4, [True, True, False, False], [True] + [False] * 3, [True] * 4, [True] * 4])
    u = torch.randn(5, 8)
    z, principal = dictionary(hidden, valid, u)
    assert z.shape == (5, 6 * 8) and torch.allclose(z.norm(dim=1), torch.ones(5))
    assert principal.sum(dim=1).tolist() == [2] * 5
    per_interest = z.view(5, 6, 8).norm(dim=2)
    assert ((per_interest > 0) == principal).all()  # only the principal interests carry weight
    assert torch.equal(principal, torch.zeros_like(principal).scatter_(
        1, (u @ dictionary.interests.T).topk(2, dim=1).indices, True))
    (z[:, :-1].sum() + z.pow(3).sum()).backward()
    assert torch.isfinite(hidden.grad).all() and torch.isfinite(dictionary.interests.grad).all()
    assert hidden.grad[1, 2:].abs().sum() == 0  # padding positions receive no attention


def test_idicl_reports_a_collapsed_dictionary(tiny_config):
    _, train_set, model = build(tiny_config, "idicl")  # K = 8 interests, 4 principal ones per view
    task = model.pretext["idicl"]
    assert "interest dictionary collapsed" in task.check_end({"interest_usage": 0.5, "mean_cosine": 0.2})
    assert task.check_end({"interest_usage": 0.75, "mean_cosine": 0.2}) is None
    both = task.check_end({"interest_usage": 0.5, "mean_cosine": 0.99})
    assert "ended collapsed" in both and "interest dictionary collapsed" in both
    seq, lens = batch(train_set)
    with torch.no_grad():
        stats = task.validation_step(model.user_model, seq, lens, generator=torch.Generator().manual_seed(0))
    assert 4 / 8 <= stats["interest_usage"] <= 1


# ------------------------------------------------------------------------------------------- bad settings
@pytest.mark.parametrize("stage, settings, message", [
    ("coserec", {"coserec_substitute_ratio": 1.5}, r"coserec_substitute_ratio must be in \(0, 1\], got 1.5"),
    ("coserec", {"coserec_augmentations": ["mask", "shuffle"]},
     "coserec_augmentations: unknown augmentation operator 'shuffle'"),
    ("coserec", {"coserec_correlation_measure": "jaccard"}, "coserec_correlation_measure must be one of"),
    ("coserec", {"coserec_augmentations": ["crop"]},
     r"coserec_short_seq_augmentations=\['insert', 'substitute', 'mask'\] shares no operator with "
     r"coserec_augmentations=\['crop'\]"),
    ("coserec", {"coserec_temperature": 0}, "coserec_temperature must be a number > 0"),
    ("ccl", {"ccl_mask_ratio_start": 0.6}, "ccl_mask_ratio_start=0.6 must not exceed ccl_mask_ratio_end=0.5"),
    ("ccl", {"ccl_mask_ratio_end": 1.5}, r"ccl_mask_ratio_end must be in \(0, 1\], got 1.5"),
    ("ccl", {"ccl_curriculum_epochs": -1}, "ccl_curriculum_epochs must be an integer >= 0"),
    ("ccl", {"ccl_generator_hidden_size": 30, "ccl_generator_heads": 4},
     "ccl_generator_hidden_size=30 must be a multiple of ccl_generator_heads=4"),
    ("ccl", {"ccl_generator_weight": 0}, "ccl_generator_weight must be a number > 0"),
    ("idicl", {"idicl_top_interests": 9}, "idicl_top_interests=9 must not exceed idicl_n_interests=8"),
    ("idicl", {"idicl_split_ratio": 1.0}, r"idicl_split_ratio must be a number in \(0, 1\), got 1.0"),
    ("idicl", {"idicl_n_interests": 0}, "idicl_n_interests must be an integer >= 1"),
    ("idicl", {"idicl_valid_metric": "interest_usage"}, "idicl_valid_metric='interest_usage' is not a validation"),
])
def test_bad_settings_name_the_key(stage, settings, message, tiny_config):
    config = Config(model="AdaptSSR", dataset="tiny", config_dict={**tiny_config, "pretrain_stages": [stage], **settings})
    with pytest.raises(ValueError, match=message):
        get_pretext_task(stage).check_settings(StageSettings(config, stage))
