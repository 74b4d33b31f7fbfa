"""Downstream task data (recbole_adaptssr.data.task_dataset): vocabulary alignment with a pre-training checkpoint,
behaviour sequences, label encoding, error messages and the seeded 6:2:2 split.

Expectations are computed from the tokens the builder wrote (tests/task_data.py), not by the code under test.
"""

from __future__ import annotations

import torch
import pytest
from recbole.utils import init_seed

from recbole_adaptssr import quick_start as qs
from recbole_adaptssr.data.task_dataset import TaskData as SharedTaskData
from recbole_adaptssr.downstream import get_task_kind
from recbole_adaptssr.experiment.finetuning import run_overrides
from recbole_adaptssr.checkpoint import load_checkpoint, save_checkpoint
from recbole_adaptssr.config import Config
from recbole_adaptssr.data.task_dataset import AdaptSSRTaskDataset, vocabulary_from_log
from recbole_adaptssr.data.utils import create_dataset
from recbole_adaptssr.model.adaptssr import AdaptSSR

from task_data import CLS_LABELS, base_config, one_torch_thread, write_atomic, write_task_dataset


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    with one_torch_thread():
        yield


MAX_LEN = 10
LIST = "target_id_list"  # <ITEM_ID_FIELD>_list with ITEM_ID_FIELD = target_id on every task
LENGTH = "item_length"


def task_config(data, tmp_path, task, kind, seed=2023, model="AdaptSSR", **extra):
    """The Config of one downstream run, exactly as experiment.finetune builds it."""
    config_dict = base_config(data, tmp_path, **extra)
    base = Config(model=model, dataset=data.name, config_dict=config_dict)
    shared = SharedTaskData(base["data_path"], data.name)
    return base.derive(**run_overrides(base, task, get_task_kind(kind), seed, shared, str(tmp_path / "run")))


def build_task(data, tmp_path, task="cls", kind="multiclass", vocabulary=None, seed=2023, model="AdaptSSR", **extra):
    """(dataset, [train, valid, test]) of one task, seeded as finetune_task does."""
    config = task_config(data, tmp_path, task, kind, seed, model, **extra)
    init_seed(seed, config["reproducibility"])
    dataset = create_dataset(config, vocabulary)
    return dataset, dataset.build()


def sequence_of(dataset, user):
    """(ids, length) of ``user``'s behaviour row in the task dataset's user feature."""
    uid = dataset.field2token_id["user_id"][user]
    return dataset.user_feat[LIST][uid].tolist(), int(dataset.user_feat[LENGTH][uid])


def expected_recent(data, user, max_len=MAX_LEN):
    return data.tokens_in_time_order(user)[-max_len:]


# ------------------------------------------------------------------------------------------- vocabulary alignment
def test_fine_tune_reuses_checkpoint_ids_and_pretrained_rows_land_on_the_right_tokens(tmp_path):
    # data set A: pre-training corpus, rows grouped by user in time order
    a = write_task_dataset(tmp_path / "data", "A", tasks=("cls",), max_len=14, row_order="time")
    config_a = Config(model="AdaptSSR", dataset="A", config_dict=base_config(a, tmp_path))
    init_seed(2023, True)
    pretrain_data = create_dataset(config_a)
    train_a, _ = pretrain_data.build()
    model_a = AdaptSSR(config_a, train_a)
    a_token2id = {t: int(i) for t, i in pretrain_data.field2token_id["item_id"].items()}
    ckpt_path = save_checkpoint(tmp_path / "ckpt" / "A-ssr.pth", model_a, "ssr", config_a,
                                pretrain_data.item_vocabulary())
    state = load_checkpoint(ckpt_path)
    ckpt_rows = state["state_dict"]["user_model.item_embedding.weight"]
    vocab = state["item_vocabulary"]
    assert {t: vocab[t] for t in a_token2id} == a_token2id  # the checkpoint stores A's token -> id

    # data set B: the same users and tokens, the file reversed (so first appearance differs), plus one
    # behaviour never seen in A as the most recent behaviour of u5
    seqs_b = {u: list(s) for u, s in a.sequences.items()}
    seqs_b["u5"].append(("i_unseen", 99999))
    b = write_task_dataset(tmp_path / "data", "B", tasks=("cls",), sequences=seqs_b, clusters=a.clusters,
                           row_order="reversed")
    b_file_vocab = vocabulary_from_log([item for _, item, _ in b.inter_rows])
    assert any(b_file_vocab[t] != vocab[t] for t in a_token2id), "B must list the tokens in another order"

    dataset, (train, _, _) = build_task(b, tmp_path, vocabulary=vocab)
    oov = len(vocab)
    assert dataset.behaviour_vocabulary_size() == oov
    assert dataset.oov_behaviours == 1
    for user in ("u1", "u2", "u5", "u17", "u48"):
        ids, length = sequence_of(dataset, user)
        tokens = expected_recent(b, user)
        assert length == len(tokens)
        assert ids[:length] == [a_token2id.get(t, oov) for t in tokens], user
        assert ids[length:] == [0] * (MAX_LEN - length)
    ids, length = sequence_of(dataset, "u5")
    assert ids[length - 1] == oov == model_a.mask_token_id  # the unseen behaviour is the mask token

    # the fine-tune model's rows after load_pretrained are the checkpoint's rows of the same tokens
    model_b = AdaptSSR(dataset.config, train)
    table = model_b.user_model.item_embedding.weight
    assert table.shape == ckpt_rows.shape
    token = expected_recent(b, "u2")[0]
    assert not torch.equal(table[a_token2id[token]], ckpt_rows[a_token2id[token]])  # fresh init differs
    model_b.load_pretrained(state["state_dict"])
    table = model_b.user_model.item_embedding.weight.detach()
    for user in ("u1", "u2", "u5", "u17", "u48"):
        ids, length = sequence_of(dataset, user)
        for position, token in enumerate(expected_recent(b, user)):
            a_row = ckpt_rows[a_token2id[token]] if token in a_token2id else ckpt_rows[model_a.mask_token_id]
            assert torch.equal(table[ids[position]], a_row), (user, position, token)


def test_load_pretrained_rejects_a_checkpoint_of_another_vocabulary_size(tmp_path):
    a = write_task_dataset(tmp_path / "data", "A", tasks=("cls",))
    config_a = Config(model="AdaptSSR", dataset="A", config_dict=base_config(a, tmp_path))
    pretrain_data = create_dataset(config_a)
    model_a = AdaptSSR(config_a, pretrain_data.build()[0])
    # without the checkpoint's vocabulary, the task vocabulary (log tokens of the task users) is smaller
    seqs = {u: s for u, s in list(a.sequences.items())[:8]}
    b = write_task_dataset(tmp_path / "data", "B", tasks=("cls",), sequences=seqs,
                           clusters={u: a.clusters[u] for u in seqs})
    dataset, (train, _, _) = build_task(b, tmp_path)
    assert dataset.behaviour_vocabulary_size() < len(pretrain_data.item_vocabulary())
    with pytest.raises(ValueError, match="does not fit this configuration"):
        AdaptSSR(dataset.config, train).load_pretrained(model_a.state_dict())


def test_without_checkpoint_vocabulary_is_the_log_in_first_appearance_order(tmp_path):
    data = write_task_dataset(tmp_path / "data", "tt", tasks=("cls",), row_order="time")
    dataset, _ = build_task(data, tmp_path)
    tokens = list(dict.fromkeys(item for _, item, _ in data.inter_rows))
    assert dataset.item_vocabulary == {"[PAD]": 0, **{t: i + 1 for i, t in enumerate(tokens)}}
    assert dataset.oov_behaviours == 0
    for user in data.users:
        ids, length = sequence_of(dataset, user)
        assert ids[:length] == [dataset.item_vocabulary[t] for t in expected_recent(data, user)]


def test_behaviour_vocabulary_targets_shares_the_target_ids(tmp_path):
    """RecBole's models (behaviour_vocabulary: targets): behaviours take the target table's ids; behaviours
    that are never targets are appended to it."""
    data = write_task_dataset(tmp_path / "data", "tt", tasks=("rec",))
    # a same-domain recommendation task (as ml-100k): targets are behaviour tokens
    rec = [(u, f"i{(int(u[1:]) * 3 + k) % 32 + 1}") for u in data.users for k in range(2)]
    write_atomic(data.folder / "tt.rec", ["user_id:token", "target_id:token"], rec)
    dataset, (train, _, _) = build_task(data, tmp_path, "rec", "recommendation", model="SASRec")
    assert dataset.config["behaviour_vocabulary"] == "targets"
    id2token = list(dataset.field2id_token["target_id"])
    targets = set(t for _, t in rec)
    behaviours = {item for _, item, _ in data.inter_rows}
    assert dataset.num_targets() == 1 + len(targets | behaviours)
    assert set(id2token[1 : 1 + len(targets)]) == targets  # RecBole's target ids come first
    assert {t: dataset.item_vocabulary[t] for t in targets} == {t: id2token.index(t) for t in targets}
    for user in data.users[:10]:
        ids, length = sequence_of(dataset, user)
        assert [id2token[i] for i in ids[:length]] == expected_recent(data, user)
    assert train.item_num == dataset.num_targets()  # SASRec scores behaviours and targets in one table


# ------------------------------------------------------------------------------------------- sequences and labels
def test_sequences_keep_the_most_recent_behaviours_in_time_order_whatever_the_file_order(tmp_path):
    data = write_task_dataset(tmp_path / "data", "tt", tasks=("cls",), min_len=3, max_len=16, row_order="shuffled")
    lengths = [len(s) for s in data.sequences.values()]
    assert min(lengths) < MAX_LEN < max(lengths)  # both padding and truncation happen
    dataset, _ = build_task(data, tmp_path)
    inverse = {i: t for t, i in dataset.item_vocabulary.items()}
    for user in data.users:
        ids, length = sequence_of(dataset, user)
        assert length == min(len(data.sequences[user]), MAX_LEN)
        assert [inverse[i] for i in ids[:length]] == expected_recent(data, user), user
        assert ids[length:] == [0] * (MAX_LEN - length)


def test_class_labels_are_indexed_in_numeric_then_string_order(tmp_path):
    data = write_task_dataset(tmp_path / "data", "tt", tasks=("cls", "bin"))
    dataset, _ = build_task(data, tmp_path)
    assert sorted(set(CLS_LABELS), key=str) != ["1", "2", "7", "10"]  # string order would differ
    assert dataset.label_tokens == ["1", "2", "7", "10"]
    assert dataset.num_classes() == 4
    index = {"1": 0, "2": 1, "7": 2, "10": 3}
    uid2token = dataset.field2id_token["user_id"]
    got = {uid2token[u]: int(l) for u, l in zip(dataset.inter_feat["user_id"].tolist(),
                                                  dataset.inter_feat["label"].tolist())}
    assert got == {u: index[label] for u, label in data.labels["cls"].items()}

    binary, _ = build_task(data, tmp_path, "bin", "binary")
    assert binary.label_tokens == ["F", "M"]  # "M" is the positive class (index 1)
    got = {uid2token[u]: int(l) for u, l in zip(binary.inter_feat["user_id"].tolist(),
                                                 binary.inter_feat["label"].tolist())}
    assert got == {u: int(label == "M") for u, label in data.labels["bin"].items()}


def test_binary_task_needs_exactly_two_labels(tmp_path):
    data = write_task_dataset(tmp_path / "data", "tt", tasks=("bin",))
    rows = [(u, ["F", "M", "X"][i % 3]) for i, u in enumerate(data.users)]
    write_atomic(data.folder / "tt.bin", ["user_id:token", "label:token"], rows)
    with pytest.raises(ValueError, match=r"a binary task needs exactly 2 label values, found \['F', 'M', 'X'\]"):
        build_task(data, tmp_path, "bin", "binary")
    write_atomic(data.folder / "tt.bin", ["user_id:token", "label:token"], [(u, "M") for u in data.users])
    with pytest.raises(ValueError, match=r"exactly 2 label values, found \['M'\]"):
        build_task(data, tmp_path, "bin", "binary")


def test_unknown_task_names_the_available_tasks(tmp_path):
    data = write_task_dataset(tmp_path / "data", "tt", tasks=("cls", "rec"))
    config = Config(model="AdaptSSR", dataset="tt",
                    config_dict=base_config(data, tmp_path, downstream_task="gender", train_stage="finetune"))
    with pytest.raises(ValueError, match=r"unknown downstream task 'gender'; tt.tasks.json has \['cls', 'rec'\]"):
        create_dataset(config)
    # the pipeline checks the names before any fine-tuning (no pre-training configured here)
    with pytest.raises(ValueError, match=r"unknown downstream task 'gender'; tt.tasks.json has \['cls', 'rec'\]"):
        qs.run("AdaptSSR", "tt", config_dict=base_config(data, tmp_path, pretrain_stages=[], finetune_from=["none"],
                                                          downstream_tasks=["cls", "gender"]))
    assert not (tmp_path / "saved").exists()  # rejected before any run folder was made


def test_missing_manifest_is_a_file_not_found_error(tmp_path):
    data = write_task_dataset(tmp_path / "data", "tt", tasks=("cls",))
    config = task_config(data, tmp_path, "cls", "multiclass")
    (data.folder / "tt.tasks.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"tt\.tasks\.json not found"):
        AdaptSSRTaskDataset(config)


def test_task_user_without_behaviour_is_an_error(tmp_path):
    data = write_task_dataset(tmp_path / "data", "tt", tasks=("cls",))
    rows = list(data.labels["cls"].items()) + [("u999", "7")]
    write_atomic(data.folder / "tt.cls", ["user_id:token", "label:token"], rows)
    with pytest.raises(ValueError, match=r"1 user\(s\) of task 'cls' have no behaviour in tt.inter \(e.g. \[") as error:
        build_task(data, tmp_path)
    assert "u999" in str(error.value)


def test_task_user_without_behaviour_message_names_plain_tokens(tmp_path):
    data = write_task_dataset(tmp_path / "data", "tt", tasks=("cls",))
    rows = list(data.labels["cls"].items()) + [("u999", "7")]
    write_atomic(data.folder / "tt.cls", ["user_id:token", "label:token"], rows)
    with pytest.raises(ValueError, match=r"\(e.g. \['u999'\]\)"):
        build_task(data, tmp_path)


# ------------------------------------------------------------------------------------------- split
def _samples(split, task):
    users = split.field2id_token["user_id"][split.inter_feat["user_id"].numpy()]
    if task == "rec":
        targets = split.field2id_token["target_id"][split.inter_feat["target_id"].numpy()]
        return [(str(u), str(t)) for u, t in zip(users, targets)]
    return [(str(u), int(label)) for u, label in zip(users, split.inter_feat["label"].tolist())]


@pytest.mark.parametrize("task,kind,n_users,sizes", [("cls", "multiclass", 50, (30, 10, 10)),
                                                      ("rec", "recommendation", 25, (45, 15, 15))])
def test_split_is_6_2_2_disjoint_complete_and_seeded(tmp_path, task, kind, n_users, sizes):
    data = write_task_dataset(tmp_path / "data", "tt", tasks=(task,), n_users=n_users)
    config = task_config(data, tmp_path, task, kind)
    assert config["eval_args"]["split"] == {"RS": [0.6, 0.2, 0.2]}
    assert config["eval_args"]["order"] == "RO"
    mode = "full" if kind == "recommendation" else "labeled"
    assert config["eval_args"]["mode"] == {"valid": mode, "test": mode}
    index = {"1": 0, "2": 1, "7": 2, "10": 3}
    if task == "rec":
        everything = sorted(data.rec)
    else:
        everything = sorted((u, index[label]) for u, label in data.labels["cls"].items())

    def split_with(seed):  # the row split (the paper's for profiling and CVR; an option for recommendation)
        _, parts = build_task(data, tmp_path, task, kind, seed=seed, recommendation_split_by="row")
        return [_samples(p, task) for p in parts]

    first = split_with(1)
    assert tuple(len(p) for p in first) == sizes
    assert sorted(first[0] + first[1] + first[2]) == everything  # complete, no sample twice, labels kept
    assert split_with(1) == first  # same seed, same split (same order)
    second = split_with(2)
    assert sorted(second[0] + second[1] + second[2]) == everything
    assert set(second[2]) != set(first[2]) and set(second[1]) != set(first[1])


def test_recommendation_split_is_over_users_and_a_cold_test_user_has_nothing_masked(tmp_path):
    """The paper's split for cold recommendation: 6:2:2 of the USERS, every target of a user in one split; the
    full-sort evaluation then masks no item of a test user (its history is empty)."""
    data = write_task_dataset(tmp_path / "data", "tt", tasks=("rec",), n_users=50)
    dataset, parts = build_task(data, tmp_path, "rec", "recommendation")
    assert dataset.config["task_split_by"] == "user"
    users = [set(tokens) for tokens in (_users(p) for p in parts)]
    assert [len(u) for u in users] == [30, 10, 10]
    assert not (users[0] & users[1]) and not (users[0] & users[2]) and not (users[1] & users[2])
    assert sorted(_samples(parts[0], "rec") + _samples(parts[1], "rec") + _samples(parts[2], "rec")) == sorted(
        (u, t) for u, t in data.rec)  # every (user, target) sample in exactly one split
    _, again = build_task(data, tmp_path, "rec", "recommendation")
    assert [set(_users(p)) for p in again] == users  # seeded
    _, other = build_task(data, tmp_path, "rec", "recommendation", seed=7)
    assert set(_users(other[2])) != users[2]

    from recbole.data import data_preparation

    config = dataset.config
    _, _, test_loader = data_preparation(config, create_dataset(config))
    history = test_loader.uid2history_item
    test_uids = set(test_loader.dataset.inter_feat["user_id"].tolist())
    assert test_uids and all(history[uid] is None or len(history[uid]) == 0 for uid in test_uids)


def test_low_label_regime_keeps_a_share_of_the_training_users_only(tmp_path):
    data = write_task_dataset(tmp_path / "data", "tt", tasks=("cls",), n_users=50)
    _, full = build_task(data, tmp_path, "cls", "multiclass")
    _, low = build_task(data, tmp_path, "cls", "multiclass", task_train_share=0.2)
    assert len(set(_users(low[0]))) == 6 and set(_users(low[0])) <= set(_users(full[0]))  # ceil(0.2 * 30)
    assert [_samples(p, "cls") for p in low[1:]] == [_samples(p, "cls") for p in full[1:]]  # valid, test unchanged


def _users(split):
    return [str(u) for u in split.field2id_token["user_id"][split.inter_feat["user_id"].numpy()]]
