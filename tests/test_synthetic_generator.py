"""scripts/generate_synthetic.py: determinism, the atomic layout and manifest, learnable (and removable) signal,
safe writing."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import sparse
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from dataset_converters import ConversionError
from dataset_converters.common import FOREIGN_FILES, OUTPUT_EXISTS, PANDAS_NA_STRINGS, TASK_METRIC, check_token

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("generate_synthetic", REPO / "scripts" / "generate_synthetic.py")
gs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gs)

HEADERS = {
    "inter": ["user_id:token", "item_id:token", "timestamp:float"],
    "multiclass": ["user_id:token", "label:token"],
    "binary": ["user_id:token", "label:token"],
    "cvr": ["user_id:token", "target_id:token", "label:float"],
    "recommendation": ["user_id:token", "target_id:token"],
}
SMALL = dict(users=300, items=120, targets=60, topics=6, min_len=3, max_len=20)
# The learnability instance: 1,500 users, 1,000 to train on, 500 held out.
LEARN = dict(users=1500, items=400, targets=200, topics=10, min_len=10, max_len=40, seed=3)
N_TRAIN = 1000


def read(path: Path) -> pd.DataFrame:
    """An atomic file as strings, as RecBole's loader reads it (no NA conversion: a bad token would show)."""
    return pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)


def files(folder: Path) -> dict:
    """Every data file's bytes (not the marker ``NAME.converted.json``: it records host, process and time)."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if not p.name.endswith(".converted.json")}


def test_same_seed_gives_identical_files_and_another_seed_different_ones(tmp_path):
    a = gs.generate(tmp_path / "a", "s", seed=7, drift=0.3, **SMALL)
    b = gs.generate(tmp_path / "b", "s", seed=7, drift=0.3, **SMALL)
    c = gs.generate(tmp_path / "c", "s", seed=8, drift=0.3, **SMALL)
    fa, fb, fc = files(a), files(b), files(c)
    assert fa == fb
    assert sorted(fa) == sorted(fc) == sorted(f"s.{x}" for x in ("inter", "age", "gender", "click", "cvr",
                                                                  "tasks.json", "stats.json", "stats.md"))
    for name in ("s.inter", "s.age", "s.gender", "s.click", "s.cvr"):
        assert fa[name] != fc[name], name


def test_a_task_file_does_not_depend_on_the_other_tasks(tmp_path):
    both = gs.generate(tmp_path / "a", "s", tasks="age,cvr", **SMALL)
    one = gs.generate(tmp_path / "b", "s", tasks=["cvr"], **SMALL)
    assert (both / "s.cvr").read_bytes() == (one / "s.cvr").read_bytes()
    assert (both / "s.inter").read_bytes() == (one / "s.inter").read_bytes()
    assert not (one / "s.age").exists()


def test_layout_headers_manifest_and_invariants(tmp_path):
    n, share = 1000, 0.2
    folder = gs.generate(tmp_path, "syn", users=n, items=300, targets=80, topics=8, min_len=4, max_len=30, seed=1,
                         labelled_share=share, drift=0.5, tasks="age,gender,click,cvr,life:multiclass:6,buy:cvr")
    manifest = json.loads((folder / "syn.tasks.json").read_text())["tasks"]
    kinds = {"age": "multiclass", "gender": "binary", "click": "recommendation", "cvr": "cvr", "life": "multiclass",
             "buy": "cvr"}
    assert {t: e["kind"] for t, e in manifest.items()} == kinds
    assert set(p.name for p in folder.iterdir()) == {f"syn.{s}" for s in [*kinds, "inter", "tasks.json",
                                                                           "stats.json", "stats.md",
                                                                           "converted.json"]}

    inter = read(folder / "syn.inter")
    assert list(inter.columns) == HEADERS["inter"]
    user, item, ts = inter.iloc[:, 0], inter.iloc[:, 1], inter.iloc[:, 2].astype(np.int64)
    assert user.nunique() == n  # pre-training sees every user
    lengths = user.value_counts()
    assert lengths.min() >= 4 and lengths.max() <= 30
    assert (user.iloc[1:].to_numpy() != user.iloc[:-1].to_numpy()).sum() == n - 1  # one block per user
    same_user = user.iloc[1:].to_numpy() == user.iloc[:-1].to_numpy()
    assert (np.diff(ts.to_numpy())[same_user] > 0).all()  # timestamps strictly increase within a user
    behaviour_items = set(item)
    for tok in set(user) | behaviour_items:
        assert check_token(tok) is None and tok not in PANDAS_NA_STRINGS

    for task, entry in manifest.items():
        kind = kinds[task]
        assert entry["metric"] == TASK_METRIC[kind] and entry["file"] == f"syn.{task}"
        df = read(folder / entry["file"])
        assert list(df.columns) == HEADERS[kind], task
        assert entry["num_samples"] == len(df)
        assert set(df.iloc[:, 0]) <= set(user), task  # every labelled user has behaviours
        assert not df.iloc[:, :2].duplicated().any(), task
        assert df.iloc[:, 0].nunique() == round(share * n), task  # each task labels its share of the users
        if kind in ("multiclass", "binary"):
            assert len(df) == round(share * n)
            classes = {"binary": 2, "multiclass": 8 if task == "age" else 6}[kind]
            assert set(entry) == {"kind", "metric", "file", "num_samples", "num_labels"}
            assert entry["num_labels"] == df.iloc[:, 1].nunique() == classes
            assert set(df.iloc[:, 1]) == {str(c) for c in range(classes)}
        else:
            assert set(entry) == {"kind", "metric", "file", "num_samples", "num_targets"}
            targets = set(df.iloc[:, 1])
            assert entry["num_targets"] == len(targets)
            assert not targets & behaviour_items  # a separate item domain
            assert all(check_token(t) is None for t in targets)
        if kind == "cvr":
            assert set(df.iloc[:, 2]) == {"0", "1"}  # negatives and positives


def _bag_of_behaviours(folder: Path, name: str):
    """(user token -> row, item token -> column, row-normalised user x item behaviour counts)."""
    inter = read(folder / f"{name}.inter")
    users = {u: i for i, u in enumerate(pd.unique(inter.iloc[:, 0]))}
    items = {t: j for j, t in enumerate(pd.unique(inter.iloc[:, 1]))}
    x = sparse.csr_matrix((np.ones(len(inter)), (inter.iloc[:, 0].map(users), inter.iloc[:, 1].map(items))),
                          shape=(len(users), len(items)))
    return users, sparse.diags(1.0 / np.asarray(x.sum(axis=1)).ravel()) @ x


@pytest.fixture(scope="module", params=[0.1, 1.0], ids=["signal", "label-noise-1"])
def learn(request, tmp_path_factory):
    folder = gs.generate(tmp_path_factory.mktemp("learn"), "x", label_noise=request.param, **LEARN)
    users, x = _bag_of_behaviours(folder, "x")
    return request.param < 1.0, folder, users, x


@pytest.mark.parametrize("task,margin", [("age", 0.2), ("gender", 0.15)])
def test_profile_labels_are_learnable_from_behaviours_only_with_signal(learn, task, margin):
    signal, folder, users, x = learn
    df = read(folder / f"x.{task}")
    rows, y = df.iloc[:, 0].map(users).to_numpy(), df.iloc[:, 1].to_numpy()
    clf = LogisticRegression(max_iter=2000).fit(x[rows[:N_TRAIN]], y[:N_TRAIN])
    acc = (clf.predict(x[rows[N_TRAIN:]]) == y[N_TRAIN:]).mean()
    values, counts = np.unique(y[:N_TRAIN], return_counts=True)
    majority = (y[N_TRAIN:] == values[counts.argmax()]).mean()
    if signal:
        assert acc >= majority + margin, (acc, majority)
    else:
        assert acc <= majority + 0.05, (acc, majority)


def test_targets_and_conversions_follow_behaviours_only_with_signal(learn):
    """Co-occurrence (behaviours of training users -> their targets) beats popularity on held-out users'
    click targets and ranks their conversions; with label noise 1.0 neither."""
    signal, folder, users, x = learn
    n_targets = LEARN["targets"]
    rec = read(folder / "x.click")
    y = sparse.csr_matrix((np.ones(len(rec)), (rec.iloc[:, 0].map(users), rec.iloc[:, 1].str[1:].astype(int) - 1)),
                          shape=(x.shape[0], n_targets)).toarray()
    train, test = slice(0, N_TRAIN), slice(N_TRAIN, None)

    def recall_at_10(scores):
        top = np.argsort(-scores, axis=1, kind="stable")[:, :10]
        yt = y[test]
        hits = np.take_along_axis(yt, top, axis=1).sum(axis=1)
        has = yt.sum(axis=1) > 0
        return (hits[has] / yt.sum(axis=1)[has]).mean()

    cooc = recall_at_10(x[test] @ (x[train].T @ y[train]))
    pop = recall_at_10(np.tile(y[train].sum(axis=0), (x.shape[0] - N_TRAIN, 1)))
    cvr = read(folder / "x.cvr")
    u, t = cvr.iloc[:, 0].map(users).to_numpy(), cvr.iloc[:, 1].str[1:].astype(int).to_numpy() - 1
    label = cvr.iloc[:, 2].astype(float).to_numpy()
    fit = u < N_TRAIN
    signed = sparse.csr_matrix((2 * label[fit] - 1, (u[fit], t[fit])), shape=(x.shape[0], n_targets))
    affinity = (x[train].T @ signed[train]).toarray()  # behaviour item x target
    score = np.asarray(x[u[~fit]].multiply(affinity[:, t[~fit]].T).sum(axis=1)).ravel()
    auc = roc_auc_score(label[~fit], score)
    if signal:
        assert cooc >= 2 * pop and cooc >= pop + 0.1, (cooc, pop)
        assert auc >= 0.65, auc
    else:
        assert cooc <= pop + 0.03, (cooc, pop)
        assert auc <= 0.56, auc


def test_never_replaces_a_users_folder_and_an_earlier_data_set_only_with_overwrite(tmp_path, capsys):
    out = tmp_path / "out"
    mine = out / "syn" / "mine.txt"
    mine.parent.mkdir(parents=True)
    mine.write_text("keep me")
    for overwrite in (False, True):  # a folder holding the user's own file: refused either way
        with pytest.raises(ConversionError) as ei:
            gs.generate(out, "syn", overwrite=overwrite, **SMALL)
        assert ei.value.kind == FOREIGN_FILES and "mine.txt" in str(ei.value)
    rc = gs.main(["--output", str(out), "--name", "syn", "--users", "50", "--quiet", "--overwrite"])
    assert rc == 2 and "mine.txt" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["syn"]  # no temporary folder left
    assert sorted(p.name for p in (out / "syn").iterdir()) == ["mine.txt"] and mine.read_text() == "keep me"

    first = files(gs.generate(out, "old", seed=1, **SMALL))
    with pytest.raises(ConversionError) as ei:  # an earlier data set: refused without overwrite, untouched
        gs.generate(out, "old", seed=2, **SMALL)
    assert ei.value.kind == OUTPUT_EXISTS and "--overwrite" in str(ei.value)
    assert files(out / "old") == first
    assert gs.main(["--output", str(out), "--name", "old", "--seed", "2", "--quiet", "--overwrite",
                    *[f"--{k.replace('_', '-')}={v}" for k, v in SMALL.items()]]) == 0
    assert files(out / "old") != first and sorted(p.name for p in out.iterdir()) == ["old", "syn"]

    (out / "fresh").mkdir()  # an empty folder is no loss
    assert (gs.generate(out, "fresh", **SMALL) / "fresh.tasks.json").exists()


def test_a_failure_leaves_nothing_behind(tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / "other.txt").write_text("unrelated")

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(gs, "_target_task", boom)  # fails after NAME.inter and the profiling files are written
    with pytest.raises(RuntimeError, match="disk full"):
        gs.generate(out, "syn", **SMALL)
    assert sorted(p.name for p in out.iterdir()) == ["other.txt"]


@pytest.mark.parametrize("options,problem", [
    (dict(tasks="age,color"), "unknown task 'color'"),
    (dict(tasks="age,age"), "given twice"),
    (dict(tasks="inter:cvr"), "bad task name"),
    (dict(tasks="gender:binary:3"), "only a multiclass task"),
    (dict(min_len=30, max_len=20), "max_len"),
    (dict(noise=1.5), "noise"),
    (dict(labelled_share=0.0), "labelled_share"),
    (dict(topics=500), "every topic needs a pool"),
])
def test_bad_options_are_refused_before_writing(tmp_path, options, problem):
    with pytest.raises(ValueError, match=problem):
        gs.generate(tmp_path / "out", "syn", **{**SMALL, **options})
    assert not (tmp_path / "out").exists()
