"""MovieLens converter: bundled RecBole ml-100k (atomic), raw ml-100k / ml-1m layouts, rec hold-out, bad input."""

from __future__ import annotations

import inspect
import json
from collections import defaultdict
from pathlib import Path

import pytest

import recbole
from dataset_converters import convert_movielens
from converter_support import assert_fails_cleanly, read_atomic, run_cli
from dataset_converters.movielens import age_bucket

BUNDLED = Path(recbole.__file__).resolve().parent / "dataset_example" / "ml-100k"


@pytest.fixture(scope="module")
def bundled_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("ml")
    stats = convert_movielens(BUNDLED, out, name="ml100k")
    return out / "ml100k", stats


def bundled_ratings():
    """user -> [(timestamp, file position, item)] from the bundled atomic file."""
    _, rows = read_atomic(BUNDLED / "ml-100k.inter")
    by_user = defaultdict(list)
    for pos, (u, i, _r, t) in enumerate(rows):
        by_user[u].append((float(t), pos, i))
    return by_user


def test_signature():
    params = inspect.signature(convert_movielens).parameters
    assert list(params)[:6] == ["input_dir", "output_dir", "name", "rec_holdout", "min_history", "skip_bad_lines"]
    assert [params[p].default for p in ("name", "rec_holdout", "min_history", "skip_bad_lines")] == [
        "ml-100k", 10, 5, False]


def test_bundled_ml100k_exact_counts(bundled_out):
    d, stats = bundled_out
    by_user = bundled_ratings()
    assert len(by_user) == 943 and min(len(v) for v in by_user.values()) >= 20  # so every user gets 10 targets
    assert stats["files"]["ml-100k.inter"]["read"] == 100_000
    assert stats["files"]["ml-100k.inter"]["written"] == 100_000
    assert stats["files"]["ml-100k.inter"]["rows_to_inter"] == 90_570
    assert stats["files"]["ml-100k.inter"]["rows_to_rec"] == 9_430
    assert (stats["files"]["ml-100k.user"]["read"], stats["files"]["ml-100k.user"]["written"]) == (943, 943)
    s = stats["sequences"]
    assert (s["num_sequences"], s["num_behaviours"]) == (943, 90_570)
    assert s["num_distinct_behaviours"] == 1_667 <= 1_682  # some movies were rated only inside hold-outs
    assert s["min_sequence_length"] == 10  # the user with 20 ratings keeps 10
    t = stats["tasks"]
    assert (t["gender"]["num_samples"], t["gender"]["num_labels"]) == (943, 2)
    assert (t["age"]["num_samples"], t["age"]["num_labels"]) == (943, 7)
    assert (t["occupation"]["num_samples"], t["occupation"]["num_labels"]) == (943, 21)
    assert (t["rec"]["num_samples"], t["rec"]["num_users"]) == (9_430, 943)
    assert t["gender"]["label_counts"] == {"F": 273, "M": 670}
    manifest = json.loads((d / "ml100k.tasks.json").read_text())["tasks"]
    assert manifest["rec"] == {"kind": "recommendation", "metric": "NDCG@10", "file": "ml100k.rec",
                               "num_samples": 9430, "num_targets": t["rec"]["num_targets"]}
    assert [manifest[k]["kind"] for k in ("gender", "age", "occupation")] == ["binary", "multiclass", "multiclass"]


def test_bundled_sequences_and_no_leak(bundled_out):
    d, _ = bundled_out
    by_user = bundled_ratings()
    header, rows = read_atomic(d / "ml100k.inter")
    assert header == ["user_id:token", "item_id:token", "timestamp:float"]
    seqs = defaultdict(list)
    order = []
    for u, i, t in rows:
        if u not in seqs:
            order.append(u)
        seqs[u].append((i, float(t)))
    assert order == sorted(order, key=int)  # grouped by user, in user order
    _, rec_rows = read_atomic(d / "ml100k.rec")
    targets = defaultdict(list)
    for u, i in rec_rows:
        targets[u].append(i)
    for u, ratings in by_user.items():
        full = [i for _, _, i in sorted(ratings)]  # chronological, ties by file position
        assert [i for i, _ in seqs[u]] == full[:-10]
        assert targets[u] == full[-10:]
        # nothing leaks: no target is in the user's input sequence, and all targets are at least as recent
        assert not set(targets[u]) & {i for i, _ in seqs[u]}
        assert max(t for _, t in seqs[u]) <= min(t for t, _, i in ratings if i in set(targets[u]))


def test_bundled_task_labels(bundled_out):
    d, _ = bundled_out
    _, users = read_atomic(BUNDLED / "ml-100k.user")
    raw = {u: (age, g, occ) for u, age, g, occ, _zip in users}
    tasks = {t: dict(read_atomic(d / f"ml100k.{t}")[1]) for t in ("gender", "age", "occupation")}
    inter_users = {r[0] for r in read_atomic(d / "ml100k.inter")[1]}
    for t, labels in tasks.items():
        assert set(labels) == inter_users == set(raw)
    for u, (age, g, occ) in raw.items():
        assert tasks["gender"][u] == g and tasks["occupation"][u] == occ
        assert tasks["age"][u] == age_bucket(int(age))
    assert set(tasks["age"].values()) == {"1", "18", "25", "35", "45", "50", "56"}


def test_age_buckets():
    cases = {7: "1", 17: "1", 18: "18", 24: "18", 25: "25", 34: "25", 35: "35", 44: "35", 45: "45", 49: "45",
             50: "50", 55: "50", 56: "56", 73: "56"}
    assert {a: age_bucket(a) for a in cases} == cases


def test_raw_ml100k_layout_matches_atomic(bundled_out, tmp_path, capsys):
    """u.data / u.user written from the bundled files convert to exactly the same data set."""
    _, rows = read_atomic(BUNDLED / "ml-100k.inter")
    _, users = read_atomic(BUNDLED / "ml-100k.user")
    raw = tmp_path / "ml-100k"
    raw.mkdir()
    (raw / "u.data").write_text("".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in rows))
    (raw / "u.user").write_text("".join("|".join(x) + "\n" for x in users))
    rc, stdout, _ = run_cli(["movielens", "--input", raw, "--output", tmp_path / "out", "--name", "ml100k"], capsys)
    assert rc == 0 and "| # Behaviour sequences | 943 |" in stdout
    d, _ = bundled_out
    for suffix in ("inter", "gender", "age", "occupation", "rec", "tasks.json"):
        assert (tmp_path / "out" / "ml100k" / f"ml100k.{suffix}").read_bytes() == (d / f"ml100k.{suffix}").read_bytes()


def ml1m_layout(d: Path, ratings=None, users=None) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    users = users if users is not None else ["1::F::1::10::48067", "2::M::56::16::70072", "3::M::25::15::55117"]
    if ratings is None:
        ratings = [f"1::{100 + k}::5::{1000 + k}" for k in range(15)]  # 15 = holdout 10 + min history 5
        ratings += [f"2::{200 + k}::3::{2000 - k}" for k in range(14)]  # one short: no targets, full sequence
        ratings += ["3::300::4::50", "3::301::4::50", "3::302::4::40"]
    (d / "ratings.dat").write_text("".join(f"{x}\n" for x in ratings))
    (d / "users.dat").write_text("".join(f"{x}\n" for x in users))
    return d


def test_ml1m_layout_holdout_and_min_history(tmp_path, capsys):
    inp = ml1m_layout(tmp_path / "ml-1m")
    rc, _, _ = run_cli(["movielens", "--input", inp, "--output", tmp_path / "out", "-q"], capsys)
    assert rc == 0
    d = tmp_path / "out" / "ml-1m"  # default name: the detected format
    seqs = defaultdict(list)
    for u, i, t in read_atomic(d / "ml-1m.inter")[1]:
        seqs[u].append(i)
    assert seqs["1"] == [str(100 + k) for k in range(5)]
    assert seqs["2"] == [str(200 + k) for k in reversed(range(14))]  # sorted by time
    assert seqs["3"] == ["302", "300", "301"]  # time order, tie kept in file order
    assert read_atomic(d / "ml-1m.rec")[1] == [["1", str(100 + k)] for k in range(5, 15)]
    assert dict(read_atomic(d / "ml-1m.age")[1]) == {"1": "1", "2": "56", "3": "25"}
    assert dict(read_atomic(d / "ml-1m.occupation")[1]) == {"1": "10", "2": "16", "3": "15"}
    stats = json.loads((d / "ml-1m.stats.json").read_text())
    assert stats["tasks"]["rec"]["num_users"] == 1 and stats["tasks"]["rec"]["num_samples"] == 10
    assert stats["files"]["ratings.dat"]["read"] == stats["files"]["ratings.dat"]["written"] == 32
    # rec_holdout 0: no rec task, full sequences
    stats = convert_movielens(inp, tmp_path / "out0", name="m", rec_holdout=0)
    assert "rec" not in stats["tasks"] and stats["sequences"]["num_behaviours"] == 32
    assert not (tmp_path / "out0" / "m" / "m.rec").exists()


def test_users_without_ratings_are_left_out(tmp_path):
    inp = ml1m_layout(tmp_path / "in", users=["1::F::1::10::x", "2::M::56::16::x", "3::M::25::15::x",
                                              "4::M::18::0::x"])
    stats = convert_movielens(inp, tmp_path / "out", name="m")
    f = stats["files"]["users.dat"]
    assert (f["read"], f["written"], f["skipped"], f["skipped_by_reason"]) == (4, 3, 1, {"no_ratings": 1})
    assert "4" not in dict(read_atomic(tmp_path / "out" / "m" / "m.gender")[1])


BAD_CASES = {
    # id: (ratings, users, file, line, problem, kind)
    "non_integer_id": (["1::100::5::1000", "1::abc::5::1001"], None, "ratings.dat", 2, "non-integer item id 'abc'",
                       "non_integer_id"),
    "unknown_user": (["1::100::5::1000", "9::100::5::1001"], None, "ratings.dat", 2,
                     "unknown user 9: not in users.dat", "unknown_user"),
    "duplicate_user": (None, ["1::F::1::10::x", "2::M::56::16::x", "1::M::25::15::x"], "users.dat", 3,
                       "duplicate user 1: already given at line 1", "duplicate_user"),
    "unknown_gender": (None, ["1::F::1::10::x", "2::X::56::16::x"], "users.dat", 2, "unknown gender value 'X'",
                       "unknown_label"),
    "unknown_age_code": (None, ["1::F::1::10::x", "2::M::17::16::x"], "users.dat", 2, "unknown age value '17'",
                         "unknown_label"),
    "wrong_field_count": (["1::100::5::1000", "1::101::5"], None, "ratings.dat", 2, "expected 4 fields, got 3",
                          "wrong_field_count"),
    "bad_timestamp": (["1::100::5::1000", "1::101::5::later"], None, "ratings.dat", 2,
                      "timestamp 'later' is not a finite number", "bad_timestamp"),
    # ids beyond int()'s 4,300 digits once ended in a bare traceback
    "giant_user_id": (["1::100::5::1000", "1" * 5000 + "::100::5::1001"], None, "ratings.dat", 2,
                      "user id of 5,000 digits is too long (at most 100)", "bad_id"),
    "giant_item_id": (["1::100::5::1000", "1::" + "0" * 4000 + "7" * 101 + "::5::1001"], None, "ratings.dat", 2,
                      "item id of 101 digits is too long (at most 100)", "bad_id"),
    "giant_users_id": (None, ["1::F::1::10::x", "9" * 5000 + "::M::56::16::x"], "users.dat", 2,
                       "user id of 5,000 digits is too long", "bad_id"),
    # empty files, and a task left without samples
    "empty_ratings": ([], None, "ratings.dat", None, "empty file: no data lines", "no_data"),
    "empty_users": (None, [], "users.dat", None, "empty file: no data lines", "no_data"),
    "no_rec_samples": (["1::100::5::1000", "2::100::5::1001"], None, "ratings.dat", None,
                       "no samples for task rec: no user has at least 10 + 5 ratings (--rec-holdout + --min-history); "
                       "a task with 0 samples is useless", "no_data"),
    # run with --skip-bad-lines, which skips every data line of a file: still an error, naming that file
    "all_skipped_ratings": (["1::x::5::1", "9::100::5::1"], None, "ratings.dat", None,
                            "no ratings: all 2 data lines were skipped as bad lines (--skip-bad-lines); there is no "
                            "behaviour sequence", "no_data"),
    "all_skipped_users": (None, ["1::X::1::10::x", "2" * 5000 + "::M::1::10::x"], "users.dat", None,
                          "no users: all 2 data lines were skipped as bad lines (--skip-bad-lines)", "no_data"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_input_fails_cleanly(case, tmp_path, capsys):
    ratings, users, fname, line, problem, kind = BAD_CASES[case]
    inp = ml1m_layout(tmp_path / "in", ratings, users)
    assert_fails_cleanly("movielens", lambda i, o, **kw: convert_movielens(i, o, name="ml-1m", **kw), inp,
                         tmp_path / "out", "ml-1m", fname, line, problem, kind, capsys,
                         skip_bad_lines=case.startswith("all_skipped"))


def test_giant_ids_skipped(tmp_path, capsys):
    ratings = [f"1::{100 + k}::5::{1000 + k}" for k in range(15)] + ["1::" + "9" * 5000 + "::5::1", "0001::0099::5::7"]
    users = ["1::F::1::10::x", "3" * 4301 + "::M::56::16::x"]
    inp = ml1m_layout(tmp_path / "in", ratings, users)
    rc, _, err = run_cli(["movielens", "--input", inp, "--output", tmp_path / "out", "--skip-bad-lines", "-q"],
                         capsys)
    assert rc == 0, err
    assert f"{inp / 'ratings.dat'}, line 16: item id of 5,000 digits is too long" in err
    f = json.loads((tmp_path / "out" / "ml-1m" / "ml-1m.stats.json").read_text())["files"]
    assert (f["ratings.dat"]["read"], f["ratings.dat"]["written"], f["ratings.dat"]["bad_lines_by_kind"]) == (
        17, 16, {"bad_id": 1})
    assert (f["users.dat"]["read"], f["users.dat"]["written"], f["users.dat"]["bad_lines_by_kind"]) == (
        2, 1, {"bad_id": 1})
    inter = read_atomic(tmp_path / "out" / "ml-1m" / "ml-1m.inter")[1]
    assert inter[0] == ["1", "99", "7"]  # leading zeros dropped as before: the same user and item tokens


def test_missing_and_atomic_header_errors(tmp_path, capsys):
    inp = ml1m_layout(tmp_path / "in")
    (inp / "users.dat").unlink()
    rc, _, err = run_cli(["movielens", "--input", inp, "--output", tmp_path / "out"], capsys)
    assert rc == 2 and f"{inp / 'users.dat'}: missing input file" in err and not (tmp_path / "out").exists()
    rc, _, err = run_cli(["movielens", "--input", tmp_path / "nowhere", "--output", tmp_path / "out"], capsys)
    assert rc == 2 and "missing input folder" in err
    atomic = tmp_path / "atomic"
    atomic.mkdir()
    (atomic / "x.inter").write_text("user_id:token\titem_id:token\trating:float\n1\t2\t3\n")
    (atomic / "x.user").write_text("user_id:token\tage:token\tgender:token\toccupation:token\n1\t20\tM\tother\n")
    rc, _, err = run_cli(["movielens", "--input", atomic, "--output", tmp_path / "out"], capsys)
    assert rc == 2 and f"{atomic / 'x.inter'}, line 1: missing field(s) timestamp" in err


def test_skip_bad_lines_counts(tmp_path, capsys):
    ratings = ["1::100::5::1000", "1::abc::5::1001", "9::100::5::1", "1::101::5", "2::100::1::7", "3::5::5::x"]
    users = ["1::F::1::10::x", "1::M::1::10::x", "2::Q::1::10::x", "3::M::99::1::x", "4::M::1::10::x"]
    inp = ml1m_layout(tmp_path / "in", ratings, users)
    rc, _, err = run_cli(["movielens", "--input", inp, "--output", tmp_path / "out", "--skip-bad-lines",
                          "--rec-holdout", "0"], capsys)  # one rating left: too few for a rec task
    assert rc == 0
    f = json.loads((tmp_path / "out" / "ml-1m" / "ml-1m.stats.json").read_text())["files"]
    assert f["users.dat"]["bad_lines_by_kind"] == {"duplicate_user": 1, "unknown_label": 2}
    assert (f["users.dat"]["read"], f["users.dat"]["written"], f["users.dat"]["skipped"]) == (5, 1, 4)
    assert f["users.dat"]["skipped_by_reason"]["no_ratings"] == 1  # user 4
    assert f["ratings.dat"]["bad_lines_by_kind"] == {"bad_timestamp": 1, "non_integer_id": 1, "unknown_user": 2,
                                                     "wrong_field_count": 1}
    assert (f["ratings.dat"]["read"], f["ratings.dat"]["written"]) == (6, 1)
    assert "skipped bad lines in ratings.dat" in err


@pytest.mark.parametrize("task,cols", [("age", ["user_id", "label"]), ("rec", ["user_id", "target_id"])])
def test_loads_in_recbole(task, cols, bundled_out, recbole_ready):
    # Note: RecBole's Config forces data_path to its own bundled copy for a data set named exactly "ml-100k",
    # hence the converted data set is named "ml100k" here.
    from recbole.config import Config
    from recbole.data import create_dataset

    d, stats = bundled_out
    config = Config(model="BPR", dataset="ml100k", config_dict={
        "data_path": str(d.parent), "show_progress": False,
        "load_col": {"inter": ["user_id", "item_id", "timestamp"], task: cols},
        "additional_feat_suffix": [task]})
    ds = create_dataset(config)
    assert {f: ds.field2type[f].value for f in ["user_id", "item_id", "timestamp", *cols]} == {
        "user_id": "token", "item_id": "token", "timestamp": "float", cols[1]: "token"}
    assert len(ds.inter_feat) == 90_570 and ds.user_num == 944  # 943 users + padding id 0
    feat = getattr(ds, f"{task}_feat")
    assert len(feat) == stats["tasks"][task]["num_samples"]
    assert set(feat["user_id"].tolist()) <= set(ds.field2token_id["user_id"])
