"""App converter: time order, truncation, tasks, ids, bad input, --skip-bad-lines, RecBole loading."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dataset_converters import convert_app
from converter_support import assert_fails_cleanly, read_atomic, run_cli

INSTALLS = [
    "u1,appA,300", "u2,appB,100", "u1,appB,100", "u1,appC,200", "u2,appA,100", "u3,appD,50",
    "u1,appD,200", "u1,appE,400",
]
GENDER = ["u1,0", "u2,1", "u3,1"]
CVR = ["u1,t1,1", "u1,t2,0", "u2,t1,0", "u3,t9,1"]


def write_layout(d: Path, installs=INSTALLS, gender=GENDER, cvr=CVR, headers=None) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    headers = headers or {}
    for fname, head, lines in (("installs.csv", "user,app,timestamp", installs), ("gender.csv", "user,label", gender),
                               ("cvr.csv", "user,target_app,label", cvr)):
        (d / fname).write_text(headers.get(fname, head) + "\n" + "".join(f"{x}\n" for x in lines))
    return d


def test_conversion_time_order_and_tasks(tmp_path):
    out = tmp_path / "out"
    stats = convert_app(write_layout(tmp_path / "in"), out)
    header, rows = read_atomic(out / "app" / "app.inter")
    assert header == ["user_id:token", "item_id:token", "timestamp:float"]
    # users in first-appearance order; chronological within a user; equal timestamps keep file order
    assert rows == [
        ["u1", "appB", "100"], ["u1", "appC", "200"], ["u1", "appD", "200"], ["u1", "appA", "300"],
        ["u1", "appE", "400"],
        ["u2", "appB", "100"], ["u2", "appA", "100"],
        ["u3", "appD", "50"],
    ]
    assert read_atomic(out / "app" / "app.gender") == (["user_id:token", "label:token"],
                                                       [["u1", "0"], ["u2", "1"], ["u3", "1"]])
    assert read_atomic(out / "app" / "app.cvr") == (
        ["user_id:token", "target_id:token", "label:float"],
        [["u1", "t1", "1"], ["u1", "t2", "0"], ["u2", "t1", "0"], ["u3", "t9", "1"]])
    assert stats["sequences"] == {"num_sequences": 3, "num_distinct_behaviours": 5, "num_behaviours": 8,
                                  "avg_sequence_length": 2.6667, "min_sequence_length": 1,
                                  "max_sequence_length": 5}
    assert json.loads((out / "app" / "app.tasks.json").read_text()) == {"tasks": {
        "gender": {"kind": "binary", "metric": "AUC", "file": "app.gender", "num_samples": 3, "num_labels": 2},
        "cvr": {"kind": "cvr", "metric": "AUC", "file": "app.cvr", "num_samples": 4, "num_targets": 3},
    }}
    assert stats["tasks"]["cvr"]["num_users"] == 3
    assert stats["tasks"]["cvr"]["label_counts"] == {"0": 2, "1": 2}
    for fname, n in (("installs.csv", 8), ("gender.csv", 3), ("cvr.csv", 4)):
        f = stats["files"][fname]
        assert (f["read"], f["written"], f["skipped"]) == (n, n, 0)
    md = (out / "app" / "app.stats.md").read_text()
    assert "| # Samples | 3 | 4 |" in md and "| # Labels/Items | 2 | 3 |" in md


def test_max_len_keeps_most_recent(tmp_path):
    stats = convert_app(write_layout(tmp_path / "in"), tmp_path / "out", max_len=2)
    _, rows = read_atomic(tmp_path / "out" / "app" / "app.inter")
    assert rows == [["u1", "appA", "300"], ["u1", "appE", "400"], ["u2", "appB", "100"], ["u2", "appA", "100"],
                    ["u3", "appD", "50"]]
    f = stats["files"]["installs.csv"]
    assert (f["read"], f["written"], f["skipped"], f["bad_lines"]) == (8, 5, 3, 0)
    assert f["skipped_by_reason"] == {"beyond_max_len": 3}
    assert stats["sequences"]["num_distinct_behaviours"] == 4  # appC, appD of u1 fell out; appD stays via u3


def test_ids_consistent_across_files(tmp_path):
    out = tmp_path / "out"
    convert_app(write_layout(tmp_path / "in"), out)
    inter_users = {r[0] for r in read_atomic(out / "app" / "app.inter")[1]}
    for task in ("gender", "cvr"):
        assert {r[0] for r in read_atomic(out / "app" / f"app.{task}")[1]} <= inter_users


def test_float_timestamps_and_gender_values(tmp_path):
    inp = write_layout(tmp_path / "in", installs=["a,x,1.5", "a,y,0.25", "b,x,2"], gender=["a,M", "b,F"],
                       cvr=["a,t,0"])
    convert_app(inp, tmp_path / "out", gender_values=["M", "F"])
    assert read_atomic(tmp_path / "out" / "app" / "app.inter")[1] == [
        ["a", "y", "0.25"], ["a", "x", "1.5"], ["b", "x", "2.0"]]
    assert read_atomic(tmp_path / "out" / "app" / "app.gender")[1] == [["a", "M"], ["b", "F"]]


BAD_CASES = {
    # id: (layout overrides, file, line, problem, kind)
    "wrong_field_count": (dict(installs=["u1,appA,300", "u2,appB"]), "installs.csv", 3,
                          "expected 3 comma-separated fields", "wrong_field_count"),
    "bad_timestamp": (dict(installs=["u1,appA,300", "u2,appB,yesterday"]), "installs.csv", 3,
                      "timestamp 'yesterday' is not a finite number", "bad_timestamp"),
    "bad_id": (dict(installs=["u1,appA,300", "NA,appB,1"]), "installs.csv", 3,
               "bad user id: token 'NA' would be read as missing", "bad_id"),
    "unknown_user": (dict(gender=["u1,0", "u9,1"]), "gender.csv", 3, "unknown user 'u9': no installs",
                     "unknown_user"),
    "unknown_user_cvr": (dict(cvr=["u9,t1,1"]), "cvr.csv", 2, "unknown user 'u9'", "unknown_user"),
    "duplicate_user": (dict(gender=["u1,0", "u2,1", "u1,1"]), "gender.csv", 4,
                       "duplicate user 'u1': already labelled at line 2", "duplicate_user"),
    "duplicate_sample": (dict(cvr=["u1,t1,1", "u1,t1,0"]), "cvr.csv", 3,
                         "duplicate sample: user 'u1' and target app 't1' already given at line 2",
                         "duplicate_sample"),
    "unknown_gender": (dict(gender=["u1,0", "u2,female"]), "gender.csv", 3,
                       "unknown label value 'female' (expected one of 0, 1", "unknown_label"),
    "unknown_cvr_label": (dict(cvr=["u1,t1,1", "u2,t1,2"]), "cvr.csv", 3,
                          "unknown label value '2' (expected 0 or 1)", "unknown_label"),
    # header-only files: the file to blame is named, never a later one
    "installs_header_only": (dict(installs=[], gender=[], cvr=[]), "installs.csv", None,
                             "no data lines (only the header line)", "no_data"),
    "gender_header_only": (dict(gender=[]), "gender.csv", None, "no data lines (only the header line)", "no_data"),
    "cvr_header_only": (dict(cvr=[]), "cvr.csv", None, "no data lines (only the header line)", "no_data"),
    # run with --skip-bad-lines, which skips every data line of a file: still an error, naming that file
    "all_skipped_installs": (dict(installs=["u1,appA", "NA,appB,1"]), "installs.csv", None,
                             "no installs: all 2 data lines were skipped as bad lines (--skip-bad-lines); there is "
                             "no behaviour sequence", "no_data"),
    "all_skipped_gender": (dict(gender=["u9,1", "u1,x"]), "gender.csv", None,
                           "no samples for task gender: all 2 data lines were skipped as bad lines "
                           "(--skip-bad-lines); a task with 0 samples is useless: mend the file, or leave the task "
                           "out with --tasks", "no_data"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_input_fails_cleanly(case, tmp_path, capsys):
    override, fname, line, problem, kind = BAD_CASES[case]
    inp = write_layout(tmp_path / "in", **override)
    assert_fails_cleanly("app", convert_app, inp, tmp_path / "out", "app", fname, line, problem, kind, capsys,
                         skip_bad_lines=case.startswith("all_skipped"))


def test_bad_header_and_missing_file(tmp_path, capsys):
    inp = write_layout(tmp_path / "in", headers={"cvr.csv": "user,app,label"})
    out = tmp_path / "out"
    rc, _, err = run_cli(["app", "--input", inp, "--output", out], capsys)
    assert rc == 2 and f"{inp / 'cvr.csv'}, line 1: bad header 'user,app,label'" in err
    assert not out.exists()
    (inp / "gender.csv").unlink()
    rc, _, err = run_cli(["app", "--input", inp, "--output", out, "--skip-bad-lines"], capsys)
    assert rc == 2 and f"{inp / 'gender.csv'}: missing input file" in err  # a file cannot be skipped
    assert not out.exists()


def test_undecodable_line(tmp_path, capsys):
    inp = write_layout(tmp_path / "in")
    with open(inp / "installs.csv", "ab") as f:
        f.write(b"u4,app\xff,5\n")
    rc, _, err = run_cli(["app", "--input", inp, "--output", tmp_path / "out"], capsys)
    assert rc == 2 and f"{inp / 'installs.csv'}, line 10: not valid UTF-8" in err


def test_skip_bad_lines_counts(tmp_path, capsys):
    inp = write_layout(tmp_path / "in",
                       installs=INSTALLS + ["u4,appA", "u5,appA,x", "u6,app A,1"],
                       gender=["u1,0", "u1,1", "u2,2", "u9,1", "u3,1"],
                       cvr=["u1,t1,1", "u1,t1,1", "u2,t1,0.5", "u4,t1,1"])
    out = tmp_path / "out"
    rc, stdout, err = run_cli(["app", "--input", inp, "--output", out, "--skip-bad-lines", "--max-len", "4"], capsys)
    assert rc == 0
    f = json.loads((out / "app" / "app.stats.json").read_text())["files"]
    assert f["installs.csv"]["bad_lines_by_kind"] == {"wrong_field_count": 1, "bad_timestamp": 1, "bad_id": 1}
    assert f["installs.csv"]["skipped_by_reason"] == {"bad_id": 1, "bad_timestamp": 1, "beyond_max_len": 1,
                                                      "wrong_field_count": 1}
    assert (f["installs.csv"]["read"], f["installs.csv"]["written"], f["installs.csv"]["skipped"]) == (11, 7, 4)
    assert f["gender.csv"]["bad_lines_by_kind"] == {"duplicate_user": 1, "unknown_label": 1, "unknown_user": 1}
    assert (f["gender.csv"]["read"], f["gender.csv"]["written"]) == (5, 2)
    assert f["cvr.csv"]["bad_lines_by_kind"] == {"duplicate_sample": 1, "unknown_label": 1, "unknown_user": 1}
    assert (f["cvr.csv"]["read"], f["cvr.csv"]["written"]) == (4, 1)
    assert "skipped bad lines in gender.csv: duplicate_user: 1, unknown_label: 1, unknown_user: 1" in err
    assert read_atomic(out / "app" / "app.gender")[1] == [["u1", "0"], ["u3", "1"]]


@pytest.mark.parametrize("task,cols,types", [
    ("gender", ["user_id", "label"], {"label": "token"}),
    ("cvr", ["user_id", "target_id", "label"], {"target_id": "token", "label": "float"}),
])
def test_loads_in_recbole(task, cols, types, tmp_path, recbole_ready):
    from recbole.config import Config
    from recbole.data import create_dataset

    convert_app(write_layout(tmp_path / "in"), tmp_path / "out", name="appsmall")
    config = Config(model="BPR", dataset="appsmall", config_dict={
        "data_path": str(tmp_path / "out"), "show_progress": False,
        "load_col": {"inter": ["user_id", "item_id", "timestamp"], task: cols},
        "additional_feat_suffix": [task]})
    ds = create_dataset(config)
    assert ds.field2type["user_id"].value == "token" and ds.field2type["item_id"].value == "token"
    assert ds.field2type["timestamp"].value == "float"
    for field, t in types.items():
        assert ds.field2type[field].value == t
    assert len(ds.inter_feat) == 8
    feat = getattr(ds, f"{task}_feat")
    assert len(feat) == {"gender": 3, "cvr": 4}[task]
    assert set(feat["user_id"].tolist()) <= set(ds.field2token_id["user_id"])
    if task == "cvr":
        assert sorted(feat["label"].tolist()) == [0.0, 0.0, 1.0, 1.0]


# ------------------------------------------------------------------------------------------- duplicate rows
DUPLICATED = INSTALLS[:3] + ["u1,appA,300"] + INSTALLS[3:]  # line 5 repeats line 2 (u1,appA,300)


def test_a_repeated_install_line_is_counted_and_kept_by_default(tmp_path):
    out = tmp_path / "out"
    stats = convert_app(write_layout(tmp_path / "in", installs=DUPLICATED), out)
    _, rows = read_atomic(out / "app" / "app.inter")
    assert rows.count(["u1", "appA", "300"]) == 2 and stats["sequences"]["num_behaviours"] == 9
    f = stats["files"]["installs.csv"]
    assert (f["read"], f["written"], f["skipped"], f["duplicate_rows"]) == (9, 9, 0, 1)
    assert stats["options"]["duplicate_rows"] == "report"
    assert "repeating an earlier one exactly: 1 (kept" in (out / "app" / "app.stats.md").read_text()


def test_drop_keeps_the_first_of_a_repeated_install_line_and_counts_it_skipped(tmp_path, capsys):
    out = tmp_path / "out"
    rc, _, _ = run_cli(["app", "--input", write_layout(tmp_path / "in", installs=DUPLICATED), "--output", out,
                        "--duplicate-rows", "drop"], capsys)
    assert rc == 0
    _, rows = read_atomic(out / "app" / "app.inter")
    assert rows.count(["u1", "appA", "300"]) == 1 and len(rows) == 8
    f = json.loads((out / "app" / "app.stats.json").read_text())["files"]["installs.csv"]
    assert (f["read"], f["written"], f["skipped"], f["skipped_by_reason"]) == (9, 8, 1, {"duplicate_row": 1})


def test_error_refuses_a_repeated_install_line_naming_both_lines(tmp_path, capsys):
    inp = write_layout(tmp_path / "in", installs=DUPLICATED)
    assert_fails_cleanly("app", lambda i, o, **kw: convert_app(i, o, duplicate_rows="error", **kw), inp,
                         tmp_path / "out", "app", "installs.csv", 5, "repeats line 2 exactly", "duplicate_row",
                         capsys, cli_flags=["--duplicate-rows", "error"])
