"""TTL converter: the real sample lines, round trip, ids, bad input, --skip-bad-lines, RecBole loading."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from dataset_converters import convert_ttl
from converter_support import assert_fails_cleanly, read_atomic, run_cli, snapshot

REPO = Path(__file__).resolve().parents[1]
SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "ttl-format-sample"
PRE, AGE, LIFE = "original_desen_pretrain.csv", "original_desen_age.csv", "original_desen_lifestatus.csv"
CLICK, LIKE = "original_desen_finetune_click_nouserID.csv", "original_desen_finetune_like_nouserID.csv"

needs_sample = pytest.mark.skipif(not SAMPLE.is_dir(), reason=f"TTL sample not found at {SAMPLE} "
                                  "(the shared/ folder is expected beside the repository)")


# ---------------------------------------------------------------- helpers


def sequences(out: Path, name: str = "ttl") -> dict[str, list[str]]:
    header, rows = read_atomic(out / name / f"{name}.inter")
    assert header == ["user_id:token", "item_id:token", "timestamp:float"]
    seqs: dict[str, list[str]] = {}
    for u, i, t in rows:
        seqs.setdefault(u, []).append(i)
        assert float(t) == len(seqs[u]) - 1  # TTL: the position within the sequence
    return seqs


def nonzero(behaviours: str) -> list[str]:
    return [str(int(x)) for x in behaviours.split(",") if int(x) != 0]


def write_layout(d: Path, pretrain: list[str], age=(), life=(), click=(), like=()) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    for fname, lines in ((PRE, pretrain), (AGE, age), (LIFE, life), (CLICK, click), (LIKE, like)):
        (d / fname).write_text("".join(f"{x}\n" for x in lines))
    return d


@pytest.fixture
def sample_layout(tmp_path) -> Path:
    """The five-file layout built from the real sample lines (README of the sample says how)."""
    pre = (SAMPLE / "pretrain_small.csv").read_text().splitlines()
    fin = (SAMPLE / "finetune_small.csv").read_text().splitlines()
    beh = [line.split(",,")[0] for line in fin]
    return write_layout(
        tmp_path / "in", pre,
        age=[f"{b},,{i % 8}" for i, b in enumerate(beh)],
        life=[f"{b},,{i % 6}" for i, b in enumerate(beh) if i % 3],
        click=fin,
        like=fin[:10],
    )


def small_layout(tmp_path: Path, **override) -> Path:
    files = dict(
        pretrain=["0,0,11,12,13", "0,21,22,23,24", "31,32", "0,0,0,41"],
        age=["0,0,11,12,13,,3", "31,32,,1"],
        life=["0,21,22,23,24,,2"],
        click=["0,0,0,41,,7,8", "31,32,,9"],
        like=["11,12,13,,5"],
    )
    files.update(override)
    return write_layout(tmp_path / "in", files["pretrain"], files["age"], files["life"], files["click"],
                        files["like"])


# ---------------------------------------------------------------- the real sample

@needs_sample
def test_sample_exact_counts(sample_layout, tmp_path):
    out = tmp_path / "out"
    stats = convert_ttl(sample_layout, out)
    # Counted by hand from the 30 + 30 sample lines: 247 non-zero behaviours, 173 distinct, 23 padding zeros;
    # lengths 4..9; click targets 47 (31 distinct), the first 10 lines hold 23 (11 distinct).
    assert stats["sequences"] == {"num_sequences": 30, "num_distinct_behaviours": 173, "num_behaviours": 247,
                                  "avg_sequence_length": 8.2333, "min_sequence_length": 4,
                                  "max_sequence_length": 9}
    t = stats["tasks"]
    assert (t["age"]["num_samples"], t["age"]["num_labels"]) == (30, 8)
    assert (t["lifestatus"]["num_samples"], t["lifestatus"]["num_labels"]) == (20, 4)
    assert (t["click"]["num_samples"], t["click"]["num_targets"], t["click"]["num_users"]) == (47, 31, 30)
    assert (t["like"]["num_samples"], t["like"]["num_targets"], t["like"]["num_users"]) == (23, 11, 10)
    f = stats["files"]
    assert f[PRE]["padding_zeros_dropped"] == 23
    for name, n in ((PRE, 30), (AGE, 30), (LIFE, 20), (CLICK, 30), (LIKE, 10)):
        assert (f[name]["read"], f[name]["written"], f[name]["skipped"]) == (n, n, 0)
    manifest = json.loads((out / "ttl" / "ttl.tasks.json").read_text())
    assert manifest == {"tasks": {
        "age": {"kind": "multiclass", "metric": "Acc", "file": "ttl.age", "num_samples": 30, "num_labels": 8},
        "lifestatus": {"kind": "multiclass", "metric": "Acc", "file": "ttl.lifestatus", "num_samples": 20,
                       "num_labels": 4},
        "click": {"kind": "recommendation", "metric": "NDCG@10", "file": "ttl.click", "num_samples": 47,
                  "num_targets": 31},
        "like": {"kind": "recommendation", "metric": "NDCG@10", "file": "ttl.like", "num_samples": 23,
                 "num_targets": 11},
    }}
    assert json.loads((out / "ttl" / "ttl.stats.json").read_text()) == json.loads(json.dumps(stats))
    md = (out / "ttl" / "ttl.stats.md").read_text()
    assert "| # Behaviour sequences | 30 |" in md and "| # Samples | 30 | 20 | 47 | 23 |" in md
    written = ["ttl.inter", "ttl.age", "ttl.lifestatus", "ttl.click", "ttl.like", "ttl.tasks.json",
               "ttl.stats.json", "ttl.stats.md"]
    assert sorted(p.name for p in (out / "ttl").iterdir()) == sorted(written + ["ttl.converted.json"])
    marker = json.loads((out / "ttl" / "ttl.converted.json").read_text())  # lists exactly what was written
    assert marker["files"] == {f: (out / "ttl" / f).stat().st_size for f in sorted(written)}
    assert [p.name for p in out.iterdir()] == ["ttl"]  # no temporary folder left behind


@needs_sample
def test_sample_round_trip_and_ids(sample_layout, tmp_path):
    out = tmp_path / "out"
    convert_ttl(sample_layout, out)
    seqs = sequences(out)
    pre_lines = (sample_layout / PRE).read_text().splitlines()
    # every behaviour of each pretrain line, in order, is the sequence of its user (= its line number)
    assert list(seqs) == [str(i) for i in range(1, len(pre_lines) + 1)]
    for i, line in enumerate(pre_lines, 1):
        assert seqs[str(i)] == nonzero(line)
    # task lines: the matched user has exactly the line's behaviours; the label / targets are carried over
    for task, fname in (("age", AGE), ("lifestatus", LIFE)):
        header, rows = read_atomic(out / "ttl" / f"ttl.{task}")
        assert header == ["user_id:token", "label:token"]
        lines = (sample_layout / fname).read_text().splitlines()
        assert len(rows) == len(lines)
        for (user, label), line in zip(rows, lines):
            beh, lab = line.split(",,")
            assert seqs[user] == nonzero(beh) and label == lab
    for task, fname in (("click", CLICK), ("like", LIKE)):
        header, rows = read_atomic(out / "ttl" / f"ttl.{task}")
        assert header == ["user_id:token", "target_id:token"]
        expected = []
        for line in (sample_layout / fname).read_text().splitlines():
            beh, tg = line.split(",,")
            user = next(u for u, s in seqs.items() if s == nonzero(beh))
            expected += [[user, t] for t in tg.split(",")]
        assert rows == expected
        assert {u for u, _ in rows} <= set(seqs)


def test_sample_resolves_relative_to_repo():
    # CI clones the repo with shared/ beside it: the path must not depend on the working directory
    assert SAMPLE == REPO.parent / "shared" / "data" / "ttl-format-sample"


# ---------------------------------------------------------------- behaviour on small data

def test_padding_and_duplicate_sequences(tmp_path):
    inp = small_layout(tmp_path, pretrain=["0,0,5,6", "5,6", "0,7", "0,0,5,6"],
                       age=["5,6,,1", "0,7,,2", "0,5,6,,3", "0,0,0,5,6,,4"], life=[], click=[], like=[])
    stats = convert_ttl(inp, tmp_path / "out", tasks=["age"])
    seqs = sequences(tmp_path / "out")
    assert seqs == {"1": ["5", "6"], "2": ["5", "6"], "3": ["7"], "4": ["5", "6"]}
    _, rows = read_atomic(tmp_path / "out" / "ttl" / "ttl.age")
    # identical sequences are indistinguishable: the k-th task line goes to the k-th user with that sequence
    assert rows == [["1", "1"], ["3", "2"], ["2", "3"], ["4", "4"]]
    assert stats["files"][PRE]["duplicate_sequences"] == 2
    assert stats["sequences"]["num_sequences"] == 4 and stats["sequences"]["num_distinct_behaviours"] == 3


def test_target_zeros_and_duplicates_dropped(tmp_path):
    inp = small_layout(tmp_path, click=["31,32,,9,0,9,8"])
    stats = convert_ttl(inp, tmp_path / "out", tasks=["click"])
    _, rows = read_atomic(tmp_path / "out" / "ttl" / "ttl.click")
    assert rows == [["3", "9"], ["3", "8"]]
    assert stats["files"][CLICK]["duplicate_targets_dropped"] == 1
    assert stats["tasks"]["click"]["num_targets"] == 2


# ---------------------------------------------------------------- bad input: one test per class

BAD_CASES = {
    # id: (file overrides, file with the problem, line, problem text, kind)
    "non_integer_id": (dict(pretrain=["0,0,11,12,13", "0,21,2x2,23,24", "31,32", "0,0,0,41"]), PRE, 2,
                       "non-integer behaviour id '2x2' at position 3", "non_integer_id"),
    "non_integer_id_task": (dict(age=["0,0,11,12,13,,3", "31,-32,,1"]), AGE, 2,
                            "non-integer behaviour id '-32' at position 2", "non_integer_id"),
    "non_integer_target": (dict(click=["0,0,0,41,,7,8", "31,32,,9,x"]), CLICK, 2,
                           "non-integer target id 'x' at position 2", "non_integer_id"),
    "missing_separator": (dict(life=["0,21,22,23,24,2"]), LIFE, 1, "missing ',,' separator", "missing_separator"),
    "empty_sequence_pretrain": (dict(pretrain=["0,0,11,12,13", "0,21,22,23,24", "0,0,0", "0,0,0,41"]), PRE, 3,
                                "empty behaviour sequence", "empty_sequence"),
    "empty_line_pretrain": (dict(pretrain=["0,0,11,12,13", "", "0,21,22,23,24"]), PRE, 2,
                            "empty behaviour sequence", "empty_sequence"),
    "empty_sequence_task": (dict(age=["0,0,11,12,13,,3", ",,1"]), AGE, 2, "empty behaviour sequence",
                            "empty_sequence"),
    "unknown_user": (dict(age=["0,0,11,12,13,,3", "31,33,,1"]), AGE, 2,
                     "unknown user: behaviour sequence not found in the pretrain file", "unknown_user"),
    "duplicate_user": (dict(like=["11,12,13,,5", "0,0,0,0,11,12,13,,6"]), LIKE, 2,
                       "duplicate user: the user of pretrain line 1 was already given at line 1", "duplicate_user"),
    "unknown_label": (dict(age=["0,0,11,12,13,,3", "31,32,,teen"]), AGE, 2, "unknown label value 'teen'",
                      "unknown_label"),
    "no_targets": (dict(click=["0,0,0,41,,"]), CLICK, 1, "no target items", "no_targets"),
    "task_line_in_pretrain": (dict(pretrain=["0,0,11,12,13", "31,32,,1"]), PRE, 2, "unexpected ',,'",
                              "non_integer_id"),
    # ids beyond int()'s 4,300 digits once ended in a bare traceback
    "giant_id": (dict(pretrain=["0,0,11,12,13", "0,21," + "9" * 5000 + ",23"]), PRE, 2,
                 "behaviour id of 5,000 digits is too long (at most 100) at position 3", "bad_id"),
    "id_of_101_digits": (dict(pretrain=["0,0,11,12,13", "0,21," + "9" * 101]), PRE, 2,
                         "behaviour id of 101 digits is too long (at most 100) at position 3", "bad_id"),
    "giant_id_task": (dict(age=["0,0,11,12,13,,3", "31," + "3" * 5000 + ",,1"]), AGE, 2,
                      "behaviour id of 5,000 digits is too long", "bad_id"),
    "giant_target": (dict(click=["0,0,0,41,,7," + "1" * 5000]), CLICK, 1,
                     "target id of 5,000 digits is too long (at most 100) at position 2", "bad_id"),
    "giant_label": (dict(age=["0,0,11,12,13,," + "3" * 5000]), AGE, 1,
                    "label value of 5,000 digits is too long (at most 100)", "unknown_label"),
    # empty files: the file to blame is named, never a later one
    "empty_pretrain": (dict(pretrain=[]), PRE, None, "empty file: no data lines", "no_data"),
    "all_files_empty": (dict(pretrain=[], age=[], life=[], click=[], like=[]), PRE, None,
                        "empty file: no data lines", "no_data"),
    "empty_task": (dict(like=[]), LIKE, None, "empty file: no data lines", "no_data"),
    # run with --skip-bad-lines, which skips every data line of a file: still an error, naming that file
    "all_skipped_pretrain": (dict(pretrain=["x", "0,0", "9" * 5000]), PRE, None,
                             "no behaviour sequences: all 3 data lines were skipped as bad lines (--skip-bad-lines); "
                             "there is nothing to pre-train on", "no_data"),
    "all_skipped_task": (dict(age=["9,9,,1", "31,32,,x"]), AGE, None,
                         "no samples for task age: all 2 data lines were skipped as bad lines (--skip-bad-lines); a "
                         "task with 0 samples is useless", "no_data"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_input_fails_cleanly(case, tmp_path, capsys):
    override, fname, line, problem, kind = BAD_CASES[case]
    inp = small_layout(tmp_path, **override)
    assert_fails_cleanly("ttl", convert_ttl, inp, tmp_path / "out", "ttl", fname, line, problem, kind, capsys,
                         skip_bad_lines=case.startswith("all_skipped"))


def test_giant_ids_skipped(tmp_path, capsys):
    padded = "0" * 5000 + "7"  # 5,001 characters but the id 7: fine
    inp = small_layout(tmp_path, pretrain=["0,0,11,12,13", "0,21," + "9" * 5000, f"31,{padded}", "8" * 100],
                       age=["0,0,11,12,13,,3", "31,7,,1", "1" * 4301 + ",,2"],
                       click=[f"0,0,0,{'8' * 100},,7,8", "31,7,,9," + "2" * 101])
    out = tmp_path / "out"
    rc, _, err = run_cli(["ttl", "--input", inp, "--output", out, "--skip-bad-lines", "--tasks", "age,click", "-q"],
                         capsys)
    assert rc == 0, err
    assert f"{inp / PRE}, line 2: behaviour id of 5,000 digits is too long" in err
    f = json.loads((out / "ttl" / "ttl.stats.json").read_text())["files"]
    assert {n: (f[n]["read"], f[n]["written"], f[n]["bad_lines_by_kind"]) for n in (PRE, AGE, CLICK)} == {
        PRE: (4, 3, {"bad_id": 1}), AGE: (3, 2, {"bad_id": 1}), CLICK: (2, 1, {"bad_id": 1})}
    assert sequences(out) == {"1": ["11", "12", "13"], "3": ["31", "7"], "4": ["8" * 100]}
    assert read_atomic(out / "ttl" / "ttl.click")[1] == [["4", "7"], ["4", "8"]]


def test_bad_input_creates_no_output_folder(tmp_path, capsys):
    inp = small_layout(tmp_path, age=["1,2,,3"])
    out = tmp_path / "new" / "out"
    rc, _, err = run_cli(["ttl", "--input", inp, "--output", out], capsys)
    assert rc == 2 and "unknown user" in err
    assert not (tmp_path / "new").exists()


def test_missing_file(tmp_path, capsys):
    inp = small_layout(tmp_path)
    (inp / LIKE).unlink()
    out = tmp_path / "out"
    rc, _, err = run_cli(["ttl", "--input", inp, "--output", out], capsys)
    assert rc == 2 and f"{inp / LIKE}: missing input file" in err
    assert not out.exists()
    # a task not asked for needs no file
    rc, _, _ = run_cli(["ttl", "--input", inp, "--output", out, "--tasks", "age,lifestatus,click", "-q"], capsys)
    assert rc == 0 and not (out / "ttl" / "ttl.like").exists()
    assert set(json.loads((out / "ttl" / "ttl.tasks.json").read_text())["tasks"]) == {"age", "lifestatus", "click"}


def test_unreadable_file(tmp_path, capsys):
    inp = small_layout(tmp_path)
    (inp / AGE).unlink()
    (inp / AGE).mkdir()  # a folder where the file should be: unreadable as a file
    out = tmp_path / "out"
    out.mkdir()
    rc, _, err = run_cli(["ttl", "--input", inp, "--output", out], capsys)
    assert rc == 2 and f"{inp / AGE}: not a regular file" in err
    assert snapshot(out) == {}


def test_skip_bad_lines_counts(tmp_path, capsys):
    inp = small_layout(
        tmp_path,
        pretrain=["0,0,11,12,13", "0,2x,22", "0,21,22,23,24", "0,0,0", "31,32", "", "0,0,0,41"],
        age=["0,0,11,12,13,,3", "31,32,1", "31,32,,a", "9,9,,1", "11,12,13,,4", "31,32,,1", "0,2x,22,,1"],
        life=[],
        click=["41,,", "41,,7"],
        like=[],
    )
    out = tmp_path / "out"
    rc, stdout, err = run_cli(["ttl", "--input", inp, "--output", out, "--skip-bad-lines", "--tasks", "age,click"],
                              capsys)
    assert rc == 0
    stats = json.loads((out / "ttl" / "ttl.stats.json").read_text())
    f = stats["files"]
    assert f[PRE]["bad_lines_by_kind"] == {"non_integer_id": 1, "empty_sequence": 2}
    assert (f[PRE]["read"], f[PRE]["written"], f[PRE]["skipped"]) == (7, 4, 3)
    # "0,2x,22" was skipped in the pretrain file, so its task line is for an unknown user
    assert f[AGE]["bad_lines_by_kind"] == {"missing_separator": 1, "unknown_label": 1, "unknown_user": 1,
                                           "duplicate_user": 1, "non_integer_id": 1}
    assert (f[AGE]["read"], f[AGE]["written"], f[AGE]["skipped"]) == (7, 2, 5)
    assert f[CLICK]["bad_lines_by_kind"] == {"no_targets": 1}
    assert (f[CLICK]["read"], f[CLICK]["written"], f[CLICK]["skipped"]) == (2, 1, 1)
    # user tokens stay the pretrain line numbers, also with skipped lines in between
    assert sequences(out) == {"1": ["11", "12", "13"], "3": ["21", "22", "23", "24"], "5": ["31", "32"],
                              "7": ["41"]}
    assert read_atomic(out / "ttl" / "ttl.age")[1] == [["1", "3"], ["5", "1"]]
    assert read_atomic(out / "ttl" / "ttl.click")[1] == [["7", "7"]]
    assert f"skipped bad lines in {PRE}: empty_sequence: 2, non_integer_id: 1" in err
    assert "skipping bad line" in err and f"{inp / AGE}, line 2: missing ',,' separator" in err
    assert "| original_desen_age.csv | 7 | 2 | 5 |" in stdout  # the printed report


# ---------------------------------------------------------------- CLI and RecBole

def test_cli_subprocess_help_and_exit_code(tmp_path):
    r = subprocess.run([sys.executable, "-m", "dataset_converters", "ttl", "--help"], cwd=REPO,
                       capture_output=True, text=True)
    assert r.returncode == 0
    for word in ("original_desen_pretrain.csv", "original_desen_age.csv", "--skip-bad-lines", "--tasks",
                 "--pretrain-file", "--click-file", "NAME.tasks.json"):
        assert word in r.stdout
    inp = small_layout(tmp_path, pretrain=["1,2", "x"])
    r = subprocess.run([sys.executable, "-m", "dataset_converters", "ttl", "--input", str(inp), "--output",
                        str(tmp_path / "out")], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 2
    assert f"{inp / PRE}, line 2: non-integer behaviour id 'x' at position 1" in r.stderr
    assert not (tmp_path / "out").exists()


def load_recbole(data_path: Path, name: str, suffix: str, cols: list[str]):
    from recbole.config import Config
    from recbole.data import create_dataset

    config = Config(model="BPR", dataset=name, config_dict={
        "data_path": str(data_path), "show_progress": False,
        "load_col": {"inter": ["user_id", "item_id", "timestamp"], suffix: cols},
        "additional_feat_suffix": [suffix]})
    return create_dataset(config)


@pytest.mark.parametrize("task,cols", [("age", ["user_id", "label"]), ("click", ["user_id", "target_id"])])
def test_loads_in_recbole(task, cols, tmp_path, recbole_ready):
    from recbole.utils import FeatureType

    inp = small_layout(tmp_path)
    convert_ttl(inp, tmp_path / "out", name="ttlsmall")
    ds = load_recbole(tmp_path / "out", "ttlsmall", task, cols)
    assert ds.field2type["user_id"] == FeatureType.TOKEN and ds.field2type["item_id"] == FeatureType.TOKEN
    assert ds.field2type["timestamp"] == FeatureType.FLOAT
    assert ds.field2type[cols[1]] == FeatureType.TOKEN
    assert len(ds.inter_feat) == 3 + 4 + 2 + 1
    feat = getattr(ds, f"{task}_feat")
    assert len(feat) == {"age": 2, "click": 3}[task]
    # the task's users are users of the behaviour log (same token space).  RecBole 1.2.1 leaves the token fields
    # of additional_feat_suffix files un-remapped, so map them through the inter file's user vocabulary.
    known = ds.field2token_id["user_id"]
    assert set(feat["user_id"].tolist()) <= set(known)
    assert {known[u] for u in feat["user_id"].tolist()} <= set(ds.inter_feat["user_id"].tolist())


def test_generated_ttl_converts_completely(tmp_path):
    """scripts/generate_ttl.py output (seeded) converts with every task line matched to its user."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("generate_ttl", REPO / "scripts" / "generate_ttl.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    counts = gen.generate(tmp_path / "in", users=2000, items=3000, seed=1, quiet=True)
    again = gen.generate(tmp_path / "again", users=2000, items=3000, seed=1, quiet=True)
    assert {**again, "seconds": 0} == {**counts, "seconds": 0}  # seeded: the same files again
    assert (tmp_path / "again" / AGE).read_bytes() == (tmp_path / "in" / AGE).read_bytes()
    stats = convert_ttl(tmp_path / "in", tmp_path / "out")
    s = stats["sequences"]
    assert (s["num_sequences"], s["num_behaviours"], s["max_sequence_length"]) == (2000, counts["behaviours"], 100)
    assert s["num_distinct_behaviours"] == 3000  # every id is placed at least once
    t = stats["tasks"]
    assert (t["age"]["num_samples"], t["lifestatus"]["num_samples"]) == (counts["age"], counts["lifestatus"])
    assert (t["click"]["num_samples"], t["like"]["num_samples"]) == (counts["click_samples"], counts["like_samples"])
    assert all(f["skipped"] == 0 for f in stats["files"].values())
    lines = (tmp_path / "in" / PRE).read_text().splitlines()
    assert all(len(line.split(",")) == 100 for line in lines)  # left-padded to the fixed width, like the release
