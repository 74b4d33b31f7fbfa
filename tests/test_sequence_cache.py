"""The sequence cache (recbole_adaptssr.data.sequence_cache): the data sets built through it equal, attribute for
attribute, what RecBole's loader and our task loader build without it; a changed log rebuilds it; a damaged cache
file is detected and rebuilt, never used; a log the fast reader could read differently is never cached."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from recbole.data.dataset import Dataset
from recbole.data.interaction import Interaction
from recbole.utils import init_seed

from recbole_adaptssr.config import Config
from recbole_adaptssr.data import sequence_cache as sc
from recbole_adaptssr.data.task_dataset import TaskData as SharedTaskData
from recbole_adaptssr.data.utils import create_dataset
from recbole_adaptssr.downstream import get_task_kind
from recbole_adaptssr.experiment import finetune, pretrain
from recbole_adaptssr.experiment.finetuning import run_overrides

from task_data import base_config, one_torch_thread, write_atomic, write_task_dataset

HEADER = ["user_id:token", "item_id:token", "timestamp:float"]


@pytest.fixture(autouse=True)
def _fresh_memo():
    sc.clear_memo()  # every test reads its files itself
    yield
    sc.clear_memo()


def write_log(folder: Path, name: str, rows) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    write_atomic(folder / f"{name}.inter", HEADER, rows)
    return folder / f"{name}.inter"


def messy_rows(n_users=30, seed=0):
    """Rows in shuffled order with time ties, float32-colliding timestamps (1.7e9 + a few seconds: one float32
    value) in a file order that disagrees with their time order, tokens in non-sorted first-appearance order, one
    long user."""
    rng = np.random.RandomState(seed)
    rows = []
    for u in range(n_users):
        n = 130 if u == 3 else rng.randint(1, 15)
        for k in range(n):
            t = 1_700_000_000 + int(rng.randint(0, 4)) if u % 3 == 0 else int(rng.randint(0, 6))
            rows.append((f"user{(u * 7) % n_users}", f"it{rng.randint(0, 40) * 13 % 97}", t))
    order = rng.permutation(len(rows))
    return [rows[i] for i in order]


def pretrain_config(data_path, name, **extra):
    settings = {"data_path": str(data_path), "MAX_ITEM_LIST_LENGTH": 12, "state": "WARNING", "device": "cpu",
                "use_gpu": False, **extra}
    return Config(model="AdaptSSR", dataset=name, config_dict=settings)


def assert_same(x, y, path="dataset"):
    """Deep equality of data set attributes: arrays and tensors by dtype and value, dicts by key and value."""
    if isinstance(x, dict):
        assert isinstance(y, dict) and list(x) == list(y), (path, list(x), y)
        for k in x:
            assert_same(x[k], y[k], f"{path}[{k!r}]")
    elif isinstance(x, np.ndarray):
        assert isinstance(y, np.ndarray) and x.dtype == y.dtype and x.shape == y.shape, (path, x.dtype, y)
        assert np.array_equal(x, y), path
    elif isinstance(x, torch.Tensor):
        assert isinstance(y, torch.Tensor) and x.dtype == y.dtype and torch.equal(x, y), path
    elif isinstance(x, Interaction):
        assert isinstance(y, Interaction)
        assert_same(x.interaction, y.interaction, path)
    elif isinstance(x, (list, tuple)):
        assert type(x) is type(y) and len(x) == len(y), path
        for i, (a, b) in enumerate(zip(x, y)):
            assert_same(a, b, f"{path}[{i}]")
    else:
        assert x == y, (path, x, y)


def state(dataset) -> dict:
    return {k: v for k, v in vars(dataset).items() if k not in ("config", "logger")}


def build_pretraining(config):
    dataset = create_dataset(config)
    printed = str(dataset)
    train, valid = dataset.build()
    return dataset, printed, train, valid


def cache_file(inter: Path) -> Path:
    return Path(sc.cache_path(str(inter)))


@pytest.mark.parametrize("layout", ["sorted", "messy"])
def test_pretraining_dataset_through_the_cache_equals_recboles_loader(tmp_path, monkeypatch, layout):
    if layout == "sorted":
        rows = [(f"u{u}", f"i{(u * 5 + k) % 23}", k) for u in range(1, 41) for k in range(3 + u % 17)]
    else:
        rows = messy_rows()
    inter = write_log(tmp_path / "d", "d", rows)
    plain = build_pretraining(pretrain_config(tmp_path, "d", sequence_cache=False))
    assert not cache_file(inter).exists()  # off means off
    built = build_pretraining(pretrain_config(tmp_path, "d"))  # builds the cache
    assert cache_file(inter).is_file()
    assert os.listdir(inter.parent) == ["d.inter"]  # the data set folder is left as it was
    sc.clear_memo()
    monkeypatch.setattr(Dataset, "_load_feat", lambda *a, **k: pytest.fail("the .inter was parsed"))
    cached = build_pretraining(pretrain_config(tmp_path, "d"))  # from the file alone
    for other in (built, cached):
        assert other[1] == plain[1]  # the statistics RecBole prints before build
        assert_same(state(plain[0]), state(other[0]))
        for a, b in zip(plain[2:], other[2:]):  # the seeded 90/10 split
            assert_same(a.inter_feat, b.inter_feat)
    if layout == "messy":  # timestamps 1 s apart at 1.7e9 (one float32 value): each user's exact time order
        dataset = plain[0]
        tokens = dataset.field2id_token
        for uid, sequence, length in zip(*(dataset.inter_feat[f].tolist() for f in (
                "user_id", "item_id_list", "item_length"))):
            user = tokens["user_id"][uid]
            mine = sorted((t, i, item) for i, (u, item, t) in enumerate(rows) if u == user)
            assert [tokens["item_id"][i] for i in sequence[:length]] == [item for _, _, item in mine][-12:]


def test_the_cached_matrix_is_each_users_most_recent_behaviours(tmp_path):
    """Against a brute-force reading of the rows: user order, item vocabulary, ids and lengths."""
    rows = messy_rows(seed=3)
    inter = write_log(tmp_path / "m", "m", rows)
    data = sc.load_behaviour_log(str(inter))
    users = list(dict.fromkeys(r[0] for r in rows))
    items = list(dict.fromkeys(r[1] for r in rows))
    assert data.users == users and data.items == items and data.n_behaviours == len(rows)
    matrix, lengths, counts = data.recent(12)
    for row, user in enumerate(users):
        mine = sorted(((float(t), i, item) for i, (u, item, t) in enumerate(rows) if u == user))
        expected = [items.index(item) + 1 for _, _, item in mine][-12:]
        assert counts[row] == len(mine) and lengths[row] == len(expected)
        assert matrix[row].tolist() == expected + [0] * (12 - len(expected))


def task_state(dataset):
    return {"user_feat": dataset.user_feat, "vocabulary": dataset.item_vocabulary,
            "oov": dataset.oov_behaviours, "id_token": dataset.field2id_token, "inter": dataset.inter_feat,
            "candidates": dataset.candidate_item_num, "field2type": dataset.field2type}


def build_task(data, tmp_path, task, kind, vocabulary=None, **extra):
    settings = base_config(data, tmp_path, **extra)
    base = Config(model=extra.pop("model", "AdaptSSR"), dataset=data.name, config_dict=settings)
    shared = SharedTaskData(base["data_path"], data.name)
    config = base.derive(**run_overrides(base, task, get_task_kind(kind), 2023, shared, str(tmp_path / "run")))
    init_seed(2023, config["reproducibility"])
    dataset = create_dataset(config, vocabulary, shared)
    dataset.build()
    return dataset


@pytest.mark.parametrize("vocabulary,extra", [
    ("checkpoint", {}),  # a pre-training vocabulary that lacks some behaviours: OOV ids and their count
    (None, {"behaviour_vocabulary": "own"}),  # no checkpoint: the log's own first-appearance vocabulary
    (None, {"model": "SASRec", "behaviour_vocabulary": "targets"}),  # behaviours appended after the targets
])
def test_task_dataset_through_the_cache_equals_the_task_loader(tmp_path, vocabulary, extra):
    data = write_task_dataset(tmp_path / "data", "tt", tasks=("cls", "rec"), n_users=30, row_order="shuffled")
    # users outside the tasks and a user with 40 behaviours (truncated to MAX_ITEM_LIST_LENGTH)
    with open(data.folder / "tt.inter", "a", encoding="utf-8") as f:
        f.writelines(f"stranger\ti{k % 9}\t{k}\n" for k in range(5))
        f.writelines(f"u3\ti{k % 31 + 1}\t{2000 + k}\n" for k in range(40))
    vocab = None
    if vocabulary == "checkpoint":
        vocab = {"[PAD]": 0, **{f"i{k}": k for k in range(1, 20)}, "never-seen": 20}
    for task, kind in (("cls", "multiclass"), ("rec", "recommendation")):
        if extra.get("behaviour_vocabulary") == "targets" and task == "cls":
            continue
        cache_file(data.folder / "tt.inter").unlink(missing_ok=True)
        sc.clear_memo()
        plain = build_task(data, tmp_path, task, kind, vocab, sequence_cache=False, **extra)
        assert not cache_file(data.folder / "tt.inter").exists()
        cached = build_task(data, tmp_path, task, kind, vocab, **extra)
        assert cache_file(data.folder / "tt.inter").exists()
        assert_same(task_state(plain), task_state(cached))
        if vocabulary == "checkpoint":
            assert plain.oov_behaviours > 0


def test_a_pipeline_gives_the_same_results_with_and_without_the_cache(tmp_path, monkeypatch):
    """Pre-training (MLM warm-up + ranking) then a fine-tune on a recommendation and a profiling task."""
    data = write_task_dataset(tmp_path / "data", "tt", tasks=("cls", "rec"), n_users=40, row_order="shuffled")
    import recbole_adaptssr.data.task_dataset as td

    results, reads = [], []
    for name, module in (("parse", sc), ("map", sc), ("pandas", td)):
        function = {"parse": "read_log", "map": "read_cache", "pandas": "read_behaviour_log"}[name]
        original = getattr(module, function)
        monkeypatch.setattr(module, function, lambda *a, _f=original, _n=name, **k: reads.append(_n) or _f(*a, **k))
    with one_torch_thread():
        for use in (False, True):
            sc.clear_memo()
            reads.clear()
            settings = base_config(data, tmp_path / str(use), sequence_cache=use, mlm_epochs=1, ssr_epochs=1,
                                   finetune_epochs=1, train_batch_size=16)
            config = Config(model="AdaptSSR", dataset="tt", config_dict=settings)
            stages = pretrain(config, str(tmp_path / f"run-{use}"))
            runs = [finetune(config, task, stages["ssr"].checkpoint, 2023) for task in ("rec", "cls")]
            results.append(([(s.valid, s.best_epoch) for s in stages.values()],
                            [(r.valid, r.test, r.best_epoch) for r in runs]))
            # the log is read once for the whole pipeline: parsed (first run) and kept mapped for every stage and task
            assert reads == (["parse"] if use else ["pandas", "pandas"]), reads
    assert cache_file(data.folder / "tt.inter").exists()
    assert results[0] == results[1]


# ------------------------------------------------------------------------------------------------ invalidation
def test_a_changed_log_rebuilds_the_cache(tmp_path, caplog):
    rows = [(f"u{u}", f"i{u % 4}", k) for u in range(6) for k in range(3)]
    inter = write_log(tmp_path / "c", "c", rows)
    assert sc.load_behaviour_log(str(inter)).n_behaviours == 18
    sc.clear_memo()
    with open(inter, "a", encoding="utf-8") as f:
        f.write("u0\tnew\t9\n")
    with caplog.at_level(logging.INFO, logger=sc.__name__):
        data = sc.load_behaviour_log(str(inter))
    assert data.n_behaviours == 19 and data.items[-1] == "new"
    assert "changed since" in caplog.text


def test_a_same_size_edit_with_the_old_mtime_is_detected_by_the_content_hash(tmp_path):
    inter = write_log(tmp_path / "c", "c", [("u1", "a", 0), ("u1", "b", 1), ("u2", "a", 0)])
    before = os.stat(inter)
    assert sc.load_behaviour_log(str(inter)).items == ["a", "b"]
    sc.clear_memo()
    text = inter.read_text(encoding="utf-8").replace("u1\tb", "u1\tc")
    inter.write_text(text, encoding="utf-8")
    os.utime(inter, ns=(before.st_atime_ns, before.st_mtime_ns))  # same size, same mtime: only ctime/content differ
    assert os.stat(inter).st_size == before.st_size
    assert sc.load_behaviour_log(str(inter)).items == ["a", "c"]


def test_an_unchanged_content_keeps_the_cache_and_refreshes_its_recorded_stat(tmp_path, monkeypatch):
    inter = write_log(tmp_path / "c", "c", [("u1", "a", 0), ("u2", "b", 0)])
    sc.load_behaviour_log(str(inter))
    sc.clear_memo()
    os.utime(inter, ns=(1, 1))  # touched: stat differs, content equal
    monkeypatch.setattr(sc, "read_log", lambda path: pytest.fail("rebuilt although the content is the same"))
    assert sc.load_behaviour_log(str(inter)).users == ["u1", "u2"]
    _, header = sc.read_cache(str(cache_file(inter)))
    assert header["source"]["mtime_ns"] == 1


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage"])
def test_a_damaged_cache_is_detected_and_rebuilt_never_used(tmp_path, caplog, damage):
    rows = [(f"u{u}", f"i{(u * 3 + k) % 11}", k) for u in range(20) for k in range(5)]
    inter = write_log(tmp_path / "c", "c", rows)
    good = sc.load_behaviour_log(str(inter))
    expected = (good.recent(4)[0].copy(), list(good.users))
    sc.clear_memo()
    path = cache_file(inter)
    raw = bytearray(path.read_bytes())
    if damage == "truncate":
        raw = raw[: len(raw) - 100]
    elif damage == "flip":
        raw[-70] ^= 0xFF  # inside the last array
    else:
        raw = bytearray(b"garbage" * 10)
    path.write_bytes(bytes(raw))
    with pytest.raises(sc.CorruptCache):
        sc.read_cache(str(path))
    with caplog.at_level(logging.WARNING, logger=sc.__name__):
        data = sc.load_behaviour_log(str(inter))
    assert "damaged" in caplog.text
    assert np.array_equal(data.recent(4)[0], expected[0]) and data.users == expected[1]
    if damage == "garbage":  # without our magic it may be anyone's file: read around it, never overwritten
        assert path.read_bytes() == bytes(raw) and "is not a sequence cache file" in caplog.text
    else:
        sc.read_cache(str(path))  # rewritten whole


def test_a_foreign_file_at_the_cache_path_is_never_overwritten(tmp_path, caplog):
    inter = write_log(tmp_path / "c", "c", [("u1", "a", 0), ("u2", "b", 0)])
    path = cache_file(inter)
    path.parent.mkdir()
    path.write_text("my notes", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger=sc.__name__):  # whatever level an earlier run left on the root
        data = sc.load_behaviour_log(str(inter))
    assert data.users == ["u1", "u2"]  # read, used, but not written
    assert path.read_text(encoding="utf-8") == "my notes"
    assert "is not a sequence cache file" in caplog.text


@pytest.mark.parametrize("rows,why", [
    ([("u1", '"a"', 0), ("u2", "b", 0)], "quote"),
    ([("u1", "NA", 0), ("u2", "b", 0)], "missing"),
    ([("u1", "a", "1e400"), ("u2", "b", 0)], "finite"),
])
def test_a_log_the_fast_reader_could_read_differently_is_not_cached(tmp_path, caplog, rows, why):
    inter = write_log(tmp_path / "c", "c", rows)
    with caplog.at_level(logging.INFO, logger=sc.__name__):
        assert sc.load_behaviour_log(str(inter)) is None
    assert why in caplog.text and not cache_file(inter).exists()


def test_settings_that_change_recboles_processing_bypass_the_cache(tmp_path):
    rows = [(f"u{u}", f"i{u % 3}", k) for u in range(40) for k in range(1 + u % 4)]
    inter = write_log(tmp_path / "g", "g", rows)
    plain = build_pretraining(pretrain_config(tmp_path, "g", sequence_cache=False, user_inter_num_interval="[2,inf)"))
    gated = build_pretraining(pretrain_config(tmp_path, "g", user_inter_num_interval="[2,inf)"))
    assert not cache_file(inter).exists()
    assert_same(state(plain[0]), state(gated[0]))
    assert len(gated[0].inter_feat) == 30  # the filter did apply: the 10 users of one behaviour are gone


def test_every_setting_recboles_data_set_reads_is_gated_or_known_harmless():
    """Guard against drift: a RecBole upgrade that reads a new data setting must be looked at here."""
    import recbole.data.dataset.dataset as ds
    import recbole.data.dataset.sequential_dataset as seq
    import inspect

    from recbole_adaptssr.data.dataset import AdaptSSRDataset

    read = set()
    for module in (ds, seq):
        read |= set(re.findall(r'config\["(\w+)"\]', inspect.getsource(module)))
    gate = inspect.getsource(AdaptSSRDataset._cache_gate)
    harmless = {"checkpoint_dir", "data_path", "dataset", "eval_args", "local_rank", "LABEL_FIELD", "LIST_SUFFIX",
                "ITEM_LIST_LENGTH_FIELD", "MAX_ITEM_LIST_LENGTH", "load_col", "unload_col", "seq_separator",
                "filter_inter_by_user_or_item"}  # the last three: handled by the header check; no .user/.item loaded
    missing = sorted(k for k in read - harmless if f'"{k}"' not in gate)
    assert not missing, missing
