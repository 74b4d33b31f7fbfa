"""recbole_adaptssr.evaluation.metrics: Acc and its registration, through RecBole's own Config / Collector / Evaluator.

Every expected value below is computed by hand in a comment, not by the code under test.
"""

import pytest
import torch
from recbole.config import Config
from recbole.data.interaction import Interaction
from recbole.evaluator import Collector, Evaluator
from recbole.evaluator.collector import DataStruct
from recbole.utils import EvaluatorType
from recbole.utils.utils import calculate_valid_score

from recbole_adaptssr.evaluation import metrics as ours
from recbole_adaptssr.evaluation.metrics import Acc, register_metrics

register_metrics()  # the package __init__ may do it too; it is idempotent

EVAL_ARGS = {"split": {"RS": [0.8, 0.1, 0.1]}, "order": "RO", "group_by": None, "mode": "labeled"}
EMPTY = torch.empty(0, dtype=torch.long)


def make_config(metrics, valid_metric, **extra):
    config_dict = {"metrics": metrics, "valid_metric": valid_metric, "eval_args": EVAL_ARGS, "use_gpu": False}
    config_dict.update(extra)
    return Config(model="BPR", dataset="ml-100k", config_dict=config_dict)


def evaluate(config, batches):
    """Run ``(scores, labels)`` batches through RecBole's Collector and Evaluator, as its Trainer does."""
    collector, evaluator = Collector(config), Evaluator(config)
    for scores, labels in batches:
        collector.eval_batch_collect(scores, Interaction({"label": labels}), EMPTY, EMPTY)
    collector.model_collect(torch.nn.Linear(1, 1))
    return evaluator.evaluate(collector.get_data_struct())


def data_struct(scores, labels):
    struct = DataStruct()
    struct.set("rec.score", torch.as_tensor(scores))
    struct.set("data.label", torch.as_tensor(labels))
    return struct


# 3 classes, 7 samples over two batches; "tie" rows resolve to the lowest tied class index.
BATCH_1 = (
    [[0.1, 0.7, 0.2], [0.5, 0.5, 0.0], [0.3, 0.3, 0.3]],
    [1, 0, 2],
)  # predicted 1 (ok), tie 0/1 -> 0 (ok), tie 0/1/2 -> 0 (wrong, label 2)
BATCH_2 = (
    [[0.0, 0.2, 0.8], [0.2, 0.4, 0.4], [0.9, 0.05, 0.05], [-1.0, 2.0, 2.0]],
    [2, 1, 1, 2],
)  # predicted 2 (ok), tie 1/2 -> 1 (ok), 0 (wrong, label 1), tie 1/2 -> 1 (wrong, label 2)
# correct: 4 of 7 -> 4/7 = 0.571428571... -> 0.5714 at RecBole's default 4 decimals, 0.571429 at 6.


@pytest.mark.parametrize("label_dtype", [torch.float32, torch.int64])
def test_acc_multiclass_with_ties_through_recbole_pipeline(label_dtype):
    config = make_config(["Acc"], "Acc")
    assert config["metrics"] == ["Acc"]
    assert config["valid_metric"] == "Acc"
    assert config["eval_type"] == EvaluatorType.VALUE
    assert config["valid_metric_bigger"] is True
    batches = [(torch.tensor(s), torch.tensor(l, dtype=label_dtype)) for s, l in (BATCH_1, BATCH_2)]
    result = evaluate(config, batches)
    assert dict(result) == {"acc": 0.5714}
    assert isinstance(result["acc"], float)
    # the Trainer picks the validation score by config["valid_metric"].lower()
    assert calculate_valid_score(result, config["valid_metric"].lower()) == 0.5714


def test_acc_rounds_to_metric_decimal_place():
    config = make_config(["Acc"], "Acc", metric_decimal_place=6)
    batches = [(torch.tensor(s), torch.tensor(l, dtype=torch.float32)) for s, l in (BATCH_1, BATCH_2)]
    assert dict(evaluate(config, batches)) == {"acc": 0.571429}


def test_acc_names_are_case_insensitive():
    config = make_config(["ACC"], "acc")
    assert config["eval_type"] == EvaluatorType.VALUE and config["valid_metric_bigger"] is True
    result = evaluate(config, [(torch.tensor(BATCH_1[0]), torch.tensor(BATCH_1[1]).float())])
    assert dict(result) == {"acc": 0.6667}  # 2 of 3 correct in batch 1


def test_acc_binary_1d_probabilities():
    # p(class 1): 0.9 -> 1, 0.2 -> 0, 0.5 -> 0 (strictly > 0.5 is class 1), 0.51 -> 1, 0.7 -> 1
    # labels:       1       1        0              0          1
    # correct: yes, no, yes, no, yes -> 3/5 = 0.6
    scores = [0.9, 0.2, 0.5, 0.51, 0.7]
    labels = [1.0, 1.0, 0.0, 0.0, 1.0]
    config = make_config(["Acc"], "Acc")
    batches = [(torch.tensor(scores[:2]), torch.tensor(labels[:2])), (torch.tensor(scores[2:]), torch.tensor(labels[2:]))]
    assert dict(evaluate(config, batches)) == {"acc": 0.6}
    # (N, 1) scores are the same binary case
    assert Acc.metric_info(torch.tensor(scores).unsqueeze(1), torch.tensor(labels)) == pytest.approx(0.6)


def test_acc_rejects_value_and_ranking_metrics_together():
    with pytest.raises(RuntimeError, match="Ranking metrics and value metrics can not be used at the same time"):
        make_config(["Acc", "NDCG"], "Acc")


@pytest.mark.parametrize(
    "scores, labels, message",
    [
        ([[0.1, 0.9], [0.8, 0.2]], [1, 2], r"outside \[0, 2\)"),  # label 2 with 2 classes
        ([[0.1, 0.9, 0.0], [0.8, 0.2, 0.0]], [-1, 0], r"outside \[0, 3\)"),
        ([0.2, 0.9], [0.0, 3.0], r"outside \[0, 2\).*binary"),  # 1-D scores: labels must be 0/1
        ([[0.1, 0.9], [0.8, 0.2]], [0.0, 0.5], "integer class indices"),
        ([[0.1, 0.9], [0.8, 0.2], [0.5, 0.5]], [0, 1], "first dimensions must match"),
        ([[[0.1, 0.9]], [[0.8, 0.2]]], [0, 1], r"shape \(N, C\)"),
        ([[0.1, float("nan")], [0.8, 0.2]], [0, 1], "NaN"),
        (torch.empty(0, 3), torch.empty(0), "no samples"),
    ],
)
def test_acc_errors(scores, labels, message):
    metric = Acc(make_config(["Acc"], "Acc"))
    with pytest.raises(ValueError, match=message):
        metric.calculate_metric(data_struct(scores, labels))


def test_acc_label_out_of_range_through_pipeline():
    config = make_config(["Acc"], "Acc")
    with pytest.raises(ValueError, match=r"outside \[0, 3\)"):
        evaluate(config, [(torch.tensor(BATCH_1[0]), torch.tensor([1.0, 0.0, 3.0]))])


def test_builtin_auc_value_path():
    # positives: 0.9, 0.6, 0.4; negatives: 0.7, 0.4, 0.1 (one positive/negative tie at 0.4).
    # pairs won by the positive (ties count 0.5): 0.9 -> 3; 0.6 -> 2 (beats 0.4, 0.1); 0.4 -> 0.5 + 1 = 1.5
    # AUC = (3 + 2 + 1.5) / (3 * 3) = 6.5 / 9 = 0.7222...
    config = make_config(["AUC"], "AUC", metric_decimal_place=6)
    assert config["eval_type"] == EvaluatorType.VALUE and config["valid_metric_bigger"] is True
    batches = [
        (torch.tensor([0.9, 0.7, 0.6]), torch.tensor([1.0, 0.0, 1.0])),
        (torch.tensor([0.4, 0.4, 0.1]), torch.tensor([1.0, 0.0, 0.0])),
    ]
    assert dict(evaluate(config, batches)) == {"auc": 0.722222}


def test_registration_is_idempotent_and_shared():
    import recbole.config.configurator as configurator
    import recbole.evaluator as evaluator_pkg
    import recbole.evaluator.evaluator as evaluator_mod
    import recbole.evaluator.register as register

    # the names other modules imported by value are the very objects register_metrics() mutates
    assert evaluator_mod.metrics_dict is register.metrics_dict is evaluator_pkg.metrics_dict
    assert configurator.metric_types is register.metric_types
    assert configurator.smaller_metrics is register.smaller_metrics

    sizes = [len(register.metrics_dict), len(register.metric_information), len(register.metric_types)]
    smaller = list(register.smaller_metrics)
    assert register_metrics() is register_metrics() is ours.EXTRA_METRICS
    assert [len(register.metrics_dict), len(register.metric_information), len(register.metric_types)] == sizes
    assert register.smaller_metrics == smaller and "acc" not in register.smaller_metrics
    assert [k for k in register.metrics_dict if k.lower() == "acc"] == ["acc"]
    assert register.metrics_dict["acc"] is Acc
    assert register.metric_information["acc"] == ["rec.score", "data.label"]
    assert register.metric_types["acc"] == EvaluatorType.VALUE
    assert register.metrics_dict["auc"].__module__ == "recbole.evaluator.metrics"  # built-ins untouched


def test_registration_refuses_to_shadow_a_foreign_metric(monkeypatch):
    import recbole.evaluator.register as register

    class Acc:  # noqa: D401 - a stand-in for some other package's metric of the same name
        pass

    monkeypatch.setitem(register.metrics_dict, "acc", Acc)
    with pytest.raises(RuntimeError, match="already has a metric named 'acc'"):
        register_metrics()
