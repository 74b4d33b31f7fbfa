"""Inputs are never silently wrong (issue 22, items 1 and 2): one check of every data file before anything trains,
each error naming the file and the line and leaving no run folder; one exact time order in pre-training and
fine-tuning; duplicate rows reported, dropped or refused; a data fingerprint in run folders and checkpoints, and a
resume or a fine-tune on changed data refused with what changed."""

from __future__ import annotations

import gzip
import json
import logging
import shutil
from pathlib import Path

import pytest
import torch

from recbole_adaptssr.checkpoint import load_checkpoint
from recbole_adaptssr.config import Config
from recbole_adaptssr.data import fingerprint, sequence_cache, validation
from recbole_adaptssr.data.task_dataset import TaskData
from recbole_adaptssr.data.utils import create_dataset
from recbole_adaptssr.data.validation import DataError, validate_data
from recbole_adaptssr.downstream import get_task_kind
from recbole_adaptssr.experiment.finetuning import run_overrides
from recbole_adaptssr.quick_start import run
from task_data import base_config, one_torch_thread, stage_checkpoint, write_task_dataset


@pytest.fixture(autouse=True)
def _fresh():
    for module in (validation, sequence_cache, fingerprint):
        module.clear_memo()
    yield


def lines_of(path: Path) -> list:
    return path.read_text(encoding="utf-8").splitlines()


def replace_line(path: Path, number: int, text: str) -> None:
    lines = lines_of(path)
    lines[number - 1] = text
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def user_of_line(path: Path, number: int) -> str:
    return lines_of(path)[number - 1].split("\t")[0]


# ---------------------------------------------------------------------------------------------- every error
def edit(file, number, text):
    def prepare(data):
        path = data.folder / f"tt.{file}"
        replace_line(path, number, text(path) if callable(text) else text)
    return prepare


def append(file, text):
    def prepare(data):
        path = data.folder / f"tt.{file}"
        path.write_text(path.read_text() + (text(path) if callable(text) else text))
    return prepare


def compressed(data):
    path = data.folder / "tt.inter"
    path.write_bytes(gzip.compress(path.read_bytes()))


def not_utf8(data):
    path = data.folder / "tt.inter"
    lines = path.read_bytes().split(b"\n")
    lines[6] = lines[6].replace(b"i", b"\xe9", 1)  # latin-1 e acute, line 7
    path.write_bytes(b"\n".join(lines))


def manifest(change):
    def prepare(data):
        path = data.folder / "tt.tasks.json"
        value = json.loads(path.read_text())
        change(value["tasks"])
        path.write_text(json.dumps(value))
    return prepare


def nanosecond_collision(data):
    path = data.folder / "tt.inter"
    user = user_of_line(path, 2)
    path.write_text(path.read_text() + f"{user}\ti1\t9007199254740993\n{user}\ti2\t9007199254740992\n")


# (id, prepare, settings, message regex: file and line)
CASES = [
    ("gzip-named-inter", compressed, {}, r"tt\.inter: is a gzip-compressed file \(recognised by its content"),
    ("not-utf8", not_utf8, {}, r"tt\.inter, line 7: not valid UTF-8"),
    ("byte-order-mark", lambda d: (d.folder / "tt.inter").write_bytes(b"\xef\xbb\xbf" + (
        d.folder / "tt.inter").read_bytes()), {}, r"tt\.inter, line 1: starts with a UTF-8 byte-order mark"),
    ("quote", edit("inter", 4, lambda p: lines_of(p)[3].replace("\ti", '\t"i', 1)), {},
     r"tt\.inter, line 4: holds a double quote"),
    ("wrong-field-count", edit("inter", 5, lambda p: lines_of(p)[4] + "\textra"), {},
     r"tt\.inter, line 5: expected 3 tab-separated fields \(as the header\), got 4"),
    ("empty-item", edit("inter", 6, lambda p: user_of_line(p, 6) + "\t\t1200"), {},
     r"tt\.inter, line 6: empty item id \(item_id\)"),
    ("missing-value-item", edit("inter", 6, lambda p: user_of_line(p, 6) + "\tNA\t1200"), {},
     r"tt\.inter, line 6: item id 'NA' \(item_id\) is read as missing by RecBole's loader"),
    ("empty-user", edit("inter", 3, "\ti1\t1200"), {}, r"tt\.inter, line 3: empty user id"),
    ("nan-timestamp", edit("inter", 8, lambda p: user_of_line(p, 8) + "\ti1\tnan"), {},
     r"tt\.inter, line 8: timestamp 'nan' is not a finite number"),
    ("non-numeric-timestamp", edit("inter", 9, lambda p: user_of_line(p, 9) + "\ti1\t2024-01-05"), {},
     r"tt\.inter, line 9: timestamp '2024-01-05' is not a finite number"),
    ("nanoseconds-beyond-float64", nanosecond_collision, {},
     r"tt\.inter, line \d+: user 'u\d+': timestamps 9007199254740993 and 9007199254740992 .* are equal as float64"),
    ("duplicate-row-error", edit("inter", 5, lambda p: lines_of(p)[1]), {"duplicate_rows": "error"},
     r"tt\.inter, line 5: repeats line 2 exactly \(same user, item and timestamp\)"),
    ("binary-with-three-labels", edit("bin", 6, lambda p: user_of_line(p, 6) + "\tX"), {},
     r"tt\.bin, line \d+: label '.' is value number 3: a binary task has exactly 2 label values"),
    ("empty-label", edit("cls", 4, lambda p: user_of_line(p, 4) + "\t"), {}, r"tt\.cls, line 4: empty label"),
    ("label-beyond-num-labels", manifest(lambda t: t["cls"].update(num_labels=3)), {},
     r"tt\.cls, line \d+: label '\d+' is value number 4: tt\.tasks\.json gives task 'cls' num_labels 3"),
    ("cvr-label-2", edit("cvr", 3, lambda p: lines_of(p)[2][:-1] + "2"), {}, r"tt\.cvr, line 3: label '2'"),
    ("user-labelled-twice", append("cls", lambda p: lines_of(p)[1].split("\t")[0] + (
        "\t2\n" if lines_of(p)[1].split("\t")[1] != "2" else "\t7\n")), {},
     r"tt\.cls, line 18: the user of line 2 again, with another label"),
    ("task-user-not-in-log", append("cls", "ghost\t7\n"), {},
     r"tt\.cls, line 18: user 'ghost' of task 'cls' has no behaviour in the behaviour log"),
    ("manifest-samples-differ", manifest(lambda t: t["rec"].update(num_samples=5)), {},
     r"tt\.tasks\.json: task 'rec' \(tt\.rec\): num_samples 5 \(the file has 48\)"),
    ("manifest-metric-ignored", manifest(lambda t: t["cls"].update(metric="AUC")), {},
     r"tt\.tasks\.json: task 'cls' declares the metric 'AUC', but multiclass tasks are evaluated with "
     r"multiclass_valid_metric='Acc'"),
    ("task-name-with-dots", manifest(lambda t: t.update({"../x": t.pop("cls")})), {},
     r"tt\.tasks\.json: task '\.\./x': task '\.\./x' is not a plain name"),
]


@pytest.mark.parametrize("prepare,settings,message", [pytest.param(*c[1:], id=c[0]) for c in CASES])
def test_bad_data_is_refused_before_anything_runs_naming_file_and_line(tmp_path, prepare, settings, message):
    data = write_task_dataset(tmp_path / "data", "tt", tasks=("cls", "bin", "cvr", "rec"), n_users=16, n_targets=16)
    prepare(data)
    before = sorted(p.name for p in data.folder.iterdir())
    with pytest.raises(ValueError, match=message) as error:
        run("AdaptSSR", "tt", config_dict=base_config(data, tmp_path, mlm_epochs=1, ssr_epochs=1, **settings))
    assert str(error.value).count(str(data.folder)) <= 1  # the path once, then the line
    assert not (tmp_path / "saved").exists()  # no run folder: nothing trained or written
    assert sorted(p.name for p in data.folder.iterdir()) == before and not list(tmp_path.glob("x*"))


# ---------------------------------------------------------------------------------------------- one time order
def millisecond_users(n_users=12, seed=0):
    """Users whose behaviours are 1 to 3 seconds apart in milliseconds since 1970 (1.7e12, where float32 steps are
    131 seconds), so float32 would see ties everywhere."""
    import numpy as np

    rng = np.random.RandomState(seed)
    sequences, clusters = {}, {}
    for u in range(1, n_users + 1):
        t, seq = 1_700_000_000_000, []
        for _ in range(rng.randint(5, 14)):
            t += int(rng.randint(1, 4)) * 1000
            seq.append((f"i{rng.randint(1, 30)}", t))
        sequences[f"u{u}"], clusters[f"u{u}"] = seq, u % 4
    return sequences, clusters


@pytest.mark.parametrize("cache", [False, True])
def test_millisecond_timestamps_in_reverse_file_order_give_one_sequence_in_pretraining_and_finetuning(tmp_path,
                                                                                                      cache):
    sequences, clusters = millisecond_users()
    data = write_task_dataset(tmp_path / "data", "tt", tasks=("cls",), sequences=sequences, clusters=clusters,
                              row_order="reversed")
    settings = base_config(data, tmp_path, sequence_cache=cache, pretrain_valid_ratio=0.25)
    config = Config(model="AdaptSSR", dataset="tt", config_dict=settings)
    pretraining = create_dataset(config)
    pretraining.build()
    tokens = pretraining.field2id_token
    pre = {tokens["user_id"][u]: [tokens["item_id"][i] for i in seq[:n]] for u, seq, n in zip(
        *(pretraining.inter_feat[f].tolist() for f in ("user_id", "item_id_list", "item_length")))}
    shared = TaskData(config["data_path"], "tt")
    task = config.derive(**run_overrides(config, "cls", get_task_kind("multiclass"), 2023, shared, str(tmp_path)))
    finetuning = create_dataset(task, None, shared)
    finetuning.build()
    vocabulary = {i: t for t, i in finetuning.item_vocabulary.items()}
    user_tokens = finetuning.field2id_token["user_id"]
    feat = finetuning.user_feat
    fine = {user_tokens[u]: [vocabulary[i] for i in seq[:n]] for u, seq, n in zip(
        feat["user_id"].tolist(), feat["target_id_list"].tolist(), feat["item_length"].tolist()) if u}
    truth = {user: [item for item, _ in seq][-10:] for user, seq in sequences.items()}
    assert pre == truth and fine == truth


# ---------------------------------------------------------------------------------------------- duplicate rows
def sequences_of(config, data, tmp_path):
    """(pre-training, fine-tuning) behaviour sequences of user u1, as token lists."""
    pretraining = create_dataset(config)
    pretraining.build()
    tokens = pretraining.field2id_token
    row = pretraining.inter_feat["user_id"].tolist().index(int(pretraining.field2token_id["user_id"]["u1"]))
    pre = [tokens["item_id"][i] for i in pretraining.inter_feat["item_id_list"][row].tolist() if i]
    shared = TaskData(config["data_path"], "tt")
    task = config.derive(**run_overrides(config, "cls", get_task_kind("multiclass"), 2023, shared, str(tmp_path)))
    finetuning = create_dataset(task, None, shared)
    finetuning.build()
    vocabulary = {i: t for t, i in finetuning.item_vocabulary.items()}
    uid = finetuning.field2token_id["user_id"]["u1"]
    fine = [vocabulary[i] for i in finetuning.user_feat["target_id_list"][uid].tolist() if i]
    return pre, fine


@pytest.mark.parametrize("policy,cache", [("report", True), ("drop", True), ("drop", False)])
def test_duplicate_rows_are_counted_and_kept_or_dropped_alike_in_pretraining_and_finetuning(tmp_path, caplog, policy,
                                                                                            cache):
    data = write_task_dataset(tmp_path / "data", "tt", tasks=("cls",), n_users=12, max_len=6)
    path = data.folder / "tt.inter"
    first = next(i for i, line in enumerate(lines_of(path)) if line.startswith("u1\t")) + 1
    path.write_text(path.read_text() + lines_of(path)[first - 1] + "\n")  # u1's first behaviour, twice
    config = Config(model="AdaptSSR", dataset="tt", config_dict=base_config(
        data, tmp_path, duplicate_rows=policy, sequence_cache=cache, pretrain_valid_ratio=0.25))
    with caplog.at_level(logging.WARNING):
        report = validate_data(config, TaskData(config["data_path"], "tt"), ["cls"])
    assert report["behaviour_log"]["duplicate_rows"] == 1
    assert report["behaviour_log"]["duplicate_example"] == [first, len(lines_of(path))]
    assert f"tt.inter: 1 duplicate row(s) (e.g. lines {first} and {len(lines_of(path))})" in caplog.text
    pre, fine = sequences_of(config, data, tmp_path)
    truth = [item for item, _ in data.sequences["u1"]]
    expected = truth if policy == "drop" else [truth[0]] + truth  # the duplicate has u1's first timestamp
    assert pre == fine == expected[-10:]


def test_a_run_folder_records_the_data_fingerprint_and_the_duplicate_count(tmp_path):
    data = write_task_dataset(tmp_path / "data", "tt", tasks=("cls",), n_users=12)
    path = data.folder / "tt.inter"
    path.write_text(path.read_text() + lines_of(path)[1] + "\n")
    with one_torch_thread():
        out = run("AdaptSSR", "tt", config_dict=base_config(data, tmp_path, pretrain_stages=["mlm"], mlm_epochs=1,
                                                            downstream_tasks=[], pretrain_valid_ratio=0.25))
    record = json.loads((Path(out["run_dir"]) / "run.json").read_text())
    assert record["data"]["behaviour_log"] == fingerprint.fingerprint(str(path))
    assert record["data"]["manifest"]["file"] == "tt.tasks.json"
    assert record["data_checks"]["behaviour_log"]["duplicate_rows"] == 1
    checkpoint = load_checkpoint(out["pretrain"]["mlm"].checkpoint)
    assert checkpoint["data"]["behaviour_log"] == record["data"]["behaviour_log"]
    assert checkpoint["data"]["vocabulary"]["tokens"] == len(checkpoint["item_vocabulary"])


def test_the_manifest_metric_gives_way_to_your_own_valid_metric_setting_with_a_warning(tmp_path, caplog):
    data = write_task_dataset(tmp_path / "data", "tt", tasks=("cls",), n_users=12)
    path = data.folder / "tt.tasks.json"
    path.write_text(path.read_text().replace('"Acc"', '"MRR"'))
    config = Config(model="AdaptSSR", dataset="tt", config_dict=base_config(
        data, tmp_path, multiclass_valid_metric="acc"))
    with caplog.at_level(logging.WARNING):
        validate_data(config, TaskData(config["data_path"], "tt"), ["cls"])
    assert "gives task 'cls' the metric MRR; your setting multiclass_valid_metric=acc selects" in caplog.text


# ---------------------------------------------------------------------------------------------- changed data
@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A finished pre-training-only run on a tiny data set: (data, settings, run folder)."""
    root = tmp_path_factory.mktemp("pretrained")
    data = write_task_dataset(root / "data", "tt", tasks=("cls",), n_users=12)
    settings = base_config(data, root, pretrain_stages=["mlm"], mlm_epochs=1, downstream_tasks=[],
                           pretrain_valid_ratio=0.25)
    with one_torch_thread():
        out = run("AdaptSSR", "tt", config_dict=settings)
    return data, settings, Path(out["run_dir"])


def snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_changed_log_blocks_a_resume_unless_allowed(pretrained, tmp_path, caplog):
    data, settings, run_dir = pretrained
    copy = shutil.copytree(data.root, tmp_path / "data")
    run_copy = shutil.copytree(run_dir, tmp_path / "saved" / run_dir.name)
    record = json.loads((run_copy / "run.json").read_text())
    record["settings"]["data_path"] = str(copy)
    (run_copy / "run.json").write_text(json.dumps(record))
    log = copy / "tt" / "tt.inter"
    log.write_text(log.read_text() + "u1\ti1\t5000\n")
    moved = {**settings, "data_path": str(copy), "checkpoint_dir": str(tmp_path / "saved")}
    before = snapshot(run_copy)
    with pytest.raises(ValueError, match=r"the data changed since the run in .* started \(behaviour log tt\.inter: "
                                         r"then [\d,]+ bytes, blake2b \w+\.\.\., now [\d,]+ bytes"):
        run("AdaptSSR", "tt", config_dict={**moved, "resume": str(run_copy)})
    assert snapshot(run_copy) == before  # nothing trained, nothing written
    with caplog.at_level(logging.WARNING):
        out = run("AdaptSSR", "tt", config_dict={**moved, "resume": str(run_copy), "allow_data_change": True})
    assert out["run_dir"] == str(run_copy) and "the data changed since the run started (allow_data_change" in \
        caplog.text


def test_a_checkpoint_of_other_data_is_refused_with_what_changed_and_its_vocabulary_overlap(pretrained, tmp_path):
    data, _, run_dir = pretrained
    checkpoint = str(stage_checkpoint(run_dir, "mlm"))
    other = write_task_dataset(tmp_path / "data", "tt", tasks=("cls",), n_users=12, item_token=lambda i: f"j{i}")
    settings = base_config(other, tmp_path, pretrain_stages=[], finetune_from=[checkpoint], downstream_tasks=["cls"])
    with pytest.raises(ValueError, match=r"mlm\.pth' was pre-trained on other data \(behaviour log tt\.inter: then "
                                         r".*; its vocabulary covers 0\.0% of this log's behaviours .*Set "
                                         r"allow_data_change=True"):
        run("AdaptSSR", "tt", config_dict=settings)
    with pytest.raises(ValueError, match=r"covers 0\.0% of this log's behaviours \(0\.0% of its \d+ items\), below "
                                         r"min_vocabulary_overlap=0\.5"):
        run("AdaptSSR", "tt", config_dict={**settings, "allow_data_change": True})
    assert not (tmp_path / "saved").exists()


def test_a_checkpoint_written_before_data_was_recorded_is_judged_by_its_vocabulary(pretrained, tmp_path):
    from recbole_adaptssr.checkpoint import save_payload
    from recbole_adaptssr.experiment.validation import check_checkpoint_data

    data, settings, run_dir = pretrained
    state = load_checkpoint(stage_checkpoint(run_dir, "mlm"))
    del state["data"]
    state["format_version"] = 2
    config = Config(model="AdaptSSR", dataset="tt", config_dict=settings)
    check_checkpoint_data(config, state, "old.pth", TaskData(config["data_path"], "tt"))  # same items: accepted
    state["item_vocabulary"] = {"[PAD]": 0}
    with pytest.raises(ValueError, match=r"old\.pth': its vocabulary covers 0\.0%"):
        check_checkpoint_data(config, state, "old.pth", TaskData(config["data_path"], "tt"))


@pytest.mark.parametrize("grouped", [True, False])
def test_duplicate_rows_are_found_in_a_grouped_and_in_a_shuffled_log_as_brute_force_finds_them(tmp_path, grouped):
    import numpy as np

    rng = np.random.RandomState(3)
    rows = sorted({(int(u), int(t), f"i{rng.randint(3)}") for u, t in rng.randint(0, 6, size=(300, 2))})
    rows += [rows[5], rows[40], rows[40]]  # three duplicates (one row twice more)
    rows.sort(key=lambda r: (r[0], r[1])) if grouped else rng.shuffle(rows)
    path = tmp_path / "log.inter"
    path.write_text("h\n" + "".join(f"{u}\t{i}\t{t}\n" for u, t, i in rows))
    users, times = np.array([r[0] for r in rows]), np.array([r[1] for r in rows], dtype=np.int64)
    items = np.array([int(r[2][1:]) for r in rows])
    count, (first, second) = validation._log_duplicates(str(path), users, times, items)
    seen, expected = {}, None
    for index, row in enumerate(rows):
        if row in seen and expected is None:
            expected = (seen[row] + 2, index + 2)
        seen.setdefault(row, index)
    assert count == 3 and (first, second) == expected


def test_the_verdict_on_unchanged_files_is_remembered_and_nothing_is_read_again(tmp_path, monkeypatch):
    data = write_task_dataset(tmp_path / "data", "tt", tasks=("cls", "rec"), n_users=12)
    config = Config(model="AdaptSSR", dataset="tt", config_dict=base_config(data, tmp_path))
    first = validate_data(config, TaskData(config["data_path"], "tt"), ["cls", "rec"])
    validation.clear_memo()
    fingerprint.clear_memo()  # a new process: only the records beside the cache remain
    monkeypatch.setattr(validation, "read_columns", lambda *a: pytest.fail("a file was read again"))
    assert validate_data(config, TaskData(config["data_path"], "tt"), ["cls", "rec"]) == first
    monkeypatch.undo()
    path = data.folder / "tt.inter"
    path.write_text(path.read_text() + "u1\ti1\t1\n")  # another content: checked again
    validation.clear_memo()
    assert validate_data(config, TaskData(config["data_path"], "tt"), ["cls"])["behaviour_log"]["rows"] == \
        first["behaviour_log"]["rows"] + 1


@pytest.mark.parametrize("token", ["", "NA"])
def test_an_empty_item_id_is_left_out_alike_by_pretraining_and_finetuning_without_the_check(tmp_path, token):
    """Outside a pipeline (no data check), the task loader leaves the row out as RecBole's loader does, instead of
    making it an out-of-vocabulary behaviour."""
    data = write_task_dataset(tmp_path / "data", "tt", tasks=("cls",), n_users=12)
    path = data.folder / "tt.inter"
    first = next(i for i, line in enumerate(lines_of(path)) if line.startswith("u1\t")) + 1
    replace_line(path, first, f"u1\t{token}\t{data.sequences['u1'][0][1]}")
    config = Config(model="AdaptSSR", dataset="tt", config_dict=base_config(data, tmp_path, pretrain_valid_ratio=0.25))
    pre, fine = sequences_of(config, data, tmp_path)
    assert pre == fine == [item for item, _ in data.sequences["u1"]][1:][-10:]
