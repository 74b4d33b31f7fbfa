"""Nothing lost, nothing half-written: input/output overlap, foreign files, --overwrite, killed conversions.

The rules live in ``dataset_converters/common.py`` (``staged_dataset_dir``) and are the same for every converter;
they are exercised here through the CLI and the Python functions, hashing every file of the input and of the
output side before and after.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dataset_converters import convert_movielens, convert_ttl
from converter_support import assert_refused, previous_dataset, read_atomic, run_cli, snapshot

REPO = Path(__file__).resolve().parents[1]
PRE, AGE = "original_desen_pretrain.csv", "original_desen_age.csv"


def atomic_layout(d: Path, stem: str = "ml-100k") -> Path:
    """A tiny RecBole atomic MovieLens (``STEM.inter``, ``STEM.user``): user 1 has enough ratings for rec."""
    d.mkdir(parents=True, exist_ok=True)
    rows = [f"1\t{100 + k}\t4\t{1000 + k}" for k in range(16)] + ["2\t100\t3\t5", "2\t101\t3\t6"]
    (d / f"{stem}.inter").write_text("user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
                                     + "".join(r + "\n" for r in rows))
    (d / f"{stem}.user").write_text("user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token\n"
                                    "1\t24\tM\ttechnician\t85711\n2\t53\tF\tother\t94043\n")
    return d


def ttl_layout(d: Path, pretrain_lines: int = 4) -> Path:
    """A TTL layout for --tasks age; ``pretrain_lines`` lines of 100 ids (30,000 take seconds to convert)."""
    d.mkdir(parents=True, exist_ok=True)
    line = ",".join(str(i) for i in range(1, 101))
    (d / PRE).write_text(f"{line}\n" * pretrain_lines)
    (d / AGE).write_text(f"{line},,1\n")
    return d


def dataset_files(folder: Path) -> dict:
    return {p.name: p.read_bytes() for p in folder.iterdir()}


# ---------------------------------------------------------------- input and output overlap

OVERLAP = {
    # case: (input relative to D, --output relative to D, --name or None, how the message says it)
    "input_is_output": ("ml-100k", ".", None, "is"),  # the reported bug: it wiped D/ml-100k, exit 0
    "input_inside_output": ("ml-100k/raw", ".", "ml-100k", "lies inside"),
    "output_inside_input": (".", "out", "m", "contains"),
    "input_links_to_output": ("link", ".", "ml-100k", "is"),
}


@pytest.mark.parametrize("overwrite", [False, True], ids=["plain", "overwrite"])
@pytest.mark.parametrize("case", sorted(OVERLAP))
def test_input_output_overlap_is_refused(case, overwrite, tmp_path, capsys):
    rel_in, rel_out, name, how = OVERLAP[case]
    d = tmp_path / "D"
    atomic_layout(d / ("ml-100k" if case == "input_links_to_output" else rel_in))
    if case == "input_links_to_output":
        (d / "link").symlink_to(d / "ml-100k", target_is_directory=True)
    inp, out = d / rel_in, d / rel_out
    argv = ["movielens", "--input", inp, "--output", out] + (["--name", name] if name else [])
    final = out / (name or "ml-100k")
    assert_refused(argv + ["--overwrite"] * overwrite,
                   lambda: convert_movielens(inp, out, name=name or "ml-100k", overwrite=overwrite), [tmp_path],
                   f"{inp}", f"the input {how} the output data set folder {final} that the conversion writes and "
                             "would replace; nothing was changed", "input_output_overlap", capsys)


def test_input_file_inside_output_is_refused(tmp_path, capsys):
    """An input file given by path (--pretrain-file) inside OUTPUT/NAME is as bad as the input folder there."""
    inp = ttl_layout(tmp_path / "in")
    old = previous_dataset(tmp_path / "out", "ttl")
    os.replace(inp / PRE, old / PRE)
    assert_refused(["ttl", "--input", inp, "--output", tmp_path / "out", "--tasks", "age", "--pretrain-file",
                    old / PRE, "--overwrite"],
                   lambda: convert_ttl(inp, tmp_path / "out", tasks=["age"], files={"pretrain": old / PRE},
                                       overwrite=True),
                   [tmp_path], f"{old / PRE}", "the input lies inside the output data set folder",
                   "input_output_overlap", capsys)


# ---------------------------------------------------------------- an existing OUTPUT/NAME

@pytest.mark.parametrize("overwrite", [False, True], ids=["plain", "overwrite"])
def test_foreign_files_are_never_deleted(overwrite, tmp_path, capsys):
    inp = atomic_layout(tmp_path / "in")
    out = tmp_path / "out"
    (out / "m" / "sub").mkdir(parents=True)
    (out / "m" / "notes.txt").write_text("my notes")
    (out / "m" / "m.inter").write_text("a hand-made data set")
    (out / "m" / "sub" / "x").write_text("x")
    e = assert_refused(["movielens", "--input", inp, "--output", out, "--name", "m"] + ["--overwrite"] * overwrite,
                       lambda: convert_movielens(inp, out, name="m", overwrite=overwrite), [inp, out],
                       f"{out / 'm'}", "the existing data set folder holds files that dataset_converters did not "
                                       "write: m.inter, notes.txt, sub/; nothing was changed or deleted",
                       "foreign_files", capsys)
    assert "move these files elsewhere, or choose another --output or --name" in e.problem


def test_changed_or_added_files_in_a_converted_folder_are_kept(tmp_path, capsys):
    """Even with --overwrite, a converted folder is replaced only if every file in it is one the marker lists."""
    inp = atomic_layout(tmp_path / "in")
    out = tmp_path / "out"
    convert_movielens(inp, out, name="m")
    size = (out / "m" / "m.gender").stat().st_size
    with open(out / "m" / "m.gender", "a") as f:
        f.write("3\tF\n")  # the user edited a converted file
    (out / "m" / "results.csv").write_text("run,ndcg\n")
    assert_refused(["movielens", "--input", inp, "--output", out, "--name", "m", "--overwrite"],
                   lambda: convert_movielens(inp, out, name="m", overwrite=True), [inp, out], f"{out / 'm'}",
                   f"did not write: m.gender (changed since it was written: {size + 4} bytes, not {size}), "
                   "results.csv;", "foreign_files", capsys)


@pytest.mark.parametrize("kind", ["file", "link"])
def test_output_name_not_a_folder_is_refused(kind, tmp_path, capsys):
    inp = atomic_layout(tmp_path / "in")
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "keep.txt").write_text("keep")
    if kind == "file":
        (out / "m").write_text("a file named like the data set")
    else:
        (out / "m").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    assert_refused(["movielens", "--input", inp, "--output", out, "--name", "m", "--overwrite"],
                   lambda: convert_movielens(inp, out, name="m", overwrite=True), [tmp_path], f"{out / 'm'}",
                   "exists and is not a data set folder written by dataset_converters (a file or a link)",
                   "foreign_files", capsys)
    assert (out / "m").is_symlink() == (kind == "link")


def test_reconversion_needs_overwrite(tmp_path, capsys):
    inp = atomic_layout(tmp_path / "in")
    out = tmp_path / "out"
    (out / "other.txt").parent.mkdir()
    (out / "other.txt").write_text("unrelated")
    rc, _, err = run_cli(["movielens", "--input", inp, "--output", out, "--name", "m", "-q"], capsys)
    assert rc == 0, err
    first = dataset_files(out / "m")
    marker = json.loads(first.pop("m.converted.json"))
    assert (marker["written_by"], marker["dataset"], marker["state"]) == ("dataset_converters", "m", "complete")
    assert marker["files"] == {n: len(b) for n, b in sorted(first.items())}  # exactly the files written
    # again without --overwrite: refused, the earlier conversion byte-identical
    assert_refused(["movielens", "--input", inp, "--output", out, "--name", "m", "--rec-holdout", "0"],
                   lambda: convert_movielens(inp, out, name="m", rec_holdout=0), [inp, out], f"{out / 'm'}",
                   "already holds a data set converted earlier (m.converted.json); nothing was changed: pass "
                   "--overwrite (Python: overwrite=True) to replace it", "output_exists", capsys)
    # with --overwrite: replaced by the new conversion, nothing else left over
    rc, _, err = run_cli(["movielens", "--input", inp, "--output", out, "--name", "m", "--rec-holdout", "0",
                          "--overwrite", "-q"], capsys)
    assert rc == 0, err
    second = dataset_files(out / "m")
    assert "m.rec" in first and "m.rec" not in second
    assert json.loads(second.pop("m.converted.json"))["files"] == {n: len(b) for n, b in sorted(second.items())}
    assert sorted(p.name for p in out.iterdir()) == ["m", "other.txt"]
    # the Python default is the CLI's: no overwrite
    with pytest.raises(Exception, match="already holds a data set converted earlier"):
        convert_movielens(inp, out, name="m")
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # the conversions' handler was put back


def test_empty_existing_folder_needs_no_overwrite(tmp_path):
    inp = atomic_layout(tmp_path / "in")
    (tmp_path / "out" / "m").mkdir(parents=True)  # e.g. made by hand beforehand: nothing in it to lose
    convert_movielens(inp, tmp_path / "out", name="m")
    assert (tmp_path / "out" / "m" / "m.tasks.json").is_file()


# ---------------------------------------------------------------- killed conversions

def temp_marker(folder: Path, name: str, pid: int, state: str = "building") -> Path:
    """A temporary folder as a conversion of process ``pid`` leaves it (the marker fields of the README)."""
    folder.mkdir(parents=True)
    (folder / f"{name}.converted.json").write_text(json.dumps(
        {"written_by": "dataset_converters", "dataset": name, "state": state, "temp_folder": folder.name,
         "host": socket.gethostname(), "pid": pid}))
    (folder / f"{name}.inter").write_text("half written")
    return folder


@pytest.fixture
def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.fixture(scope="module")
def big_ttl(tmp_path_factory) -> Path:
    return ttl_layout(tmp_path_factory.mktemp("big") / "in", pretrain_lines=30_000)


def start_and_signal(inp: Path, out: Path, sig: int, *flags) -> tuple[subprocess.Popen, str]:
    """Run a TTL conversion in a child process, send ``sig`` once its data set is being written, wait for it;
    return the finished process and its stderr."""
    proc = subprocess.Popen([sys.executable, "-m", "dataset_converters", "ttl", "--input", str(inp), "--output",
                             str(out), "--tasks", "age", "-q", *flags], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not list(out.glob(".ttl.tmp-*/ttl.inter")):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.01)
    proc.send_signal(sig)
    return proc, proc.communicate(timeout=60)[1]


def test_sigterm_removes_its_temporary_folder(big_ttl, tmp_path):
    out = tmp_path / "out"
    previous_dataset(out, "ttl")
    (out / "other.txt").write_text("unrelated")
    before, inp_before = snapshot(out), snapshot(big_ttl)
    proc, err = start_and_signal(big_ttl, out, signal.SIGTERM, "--overwrite")
    assert proc.returncode == -signal.SIGTERM, err  # it still dies of the signal
    assert "SIGTERM: conversion aborted, temporary files removed" in err
    assert snapshot(out) == before  # no temporary folder; the previous data set untouched
    assert snapshot(big_ttl) == inp_before


def test_killed_run_leftovers_are_cleaned_safely(big_ttl, dead_pid, tmp_path, capsys):
    out = tmp_path / "out"
    proc, _ = start_and_signal(big_ttl, out, signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL
    (killed,) = out.glob(".ttl.tmp-*")  # SIGKILL cannot be handled: the next run cleans up
    assert json.loads((killed / "ttl.converted.json").read_text())["pid"] == proc.pid
    stale = temp_marker(out / ".ttl.tmp-dead", "ttl", dead_pid)
    kept = [
        temp_marker(out / ".ttl.tmp-live", "ttl", os.getpid()),  # a running conversion's folder
        out / ".ttl.tmp-mine",  # a user's folder that only looks like one
        temp_marker(out / ".ttl.tmp-copy", "ttl", dead_pid),  # marker naming another folder: a copy, not ours
        temp_marker(out / ".other.tmp-x", "other", dead_pid),  # another data set's: not this run's business
    ]
    (out / ".ttl.tmp-mine").mkdir()
    (out / ".ttl.tmp-mine" / "ttl.inter").write_text("mine")
    copy_marker = kept[2] / "ttl.converted.json"
    copy_marker.write_text(copy_marker.read_text().replace('".ttl.tmp-copy"', '".ttl.tmp-elsewhere"'))
    before = {p.name: snapshot(p) for p in kept}
    rc, _, err = run_cli(["ttl", "--input", ttl_layout(tmp_path / "small"), "--output", out, "--tasks", "age", "-q"],
                         capsys)
    assert rc == 0, err
    assert not killed.exists() and not stale.exists()
    assert f"removed {killed}, left behind by a conversion that was killed (pid {proc.pid})" in err
    assert f"removed {stale}, left behind by a conversion that was killed (pid {dead_pid})" in err
    assert {p.name: snapshot(p) for p in kept} == before
    assert sorted(p.name for p in out.iterdir()) == sorted(["ttl"] + [p.name for p in kept])
    assert len(read_atomic(out / "ttl" / "ttl.inter")[1]) == 4 * 100


def test_run_killed_while_replacing_is_restored(dead_pid, tmp_path, capsys):
    """Killed between moving the old data set aside and moving the new one in: the next run puts the old back."""
    out = tmp_path / "out"
    trash = temp_marker(out / ".ttl.tmp-old", "ttl", dead_pid, state="replacing")
    old = previous_dataset(trash, "ttl")
    old_files = snapshot(old)
    inp = ttl_layout(tmp_path / "in")
    assert_refused(["ttl", "--input", inp, "--output", out, "--tasks", "age"],
                   lambda: convert_ttl(inp, out, tasks=["age"]), [inp], f"{out / 'ttl'}",
                   "already holds a data set converted earlier", "output_exists", capsys)
    assert snapshot(out / "ttl") == old_files and not trash.exists()


def test_stale_folder_holding_foreign_files_is_kept(dead_pid, tmp_path, capsys):
    """A killed run's folder that holds an old data set folder with a user's file in it is not removed."""
    out = tmp_path / "out"
    trash = temp_marker(out / ".ttl.tmp-old", "ttl", dead_pid, state="replacing")
    (previous_dataset(trash, "ttl") / "notes.txt").write_text("mine")
    previous_dataset(out, "ttl")
    before = snapshot(trash)
    rc, _, err = run_cli(["ttl", "--input", ttl_layout(tmp_path / "in"), "--output", out, "--tasks", "age",
                          "--overwrite", "-q"], capsys)
    assert rc == 0, err
    assert f"kept {trash / 'ttl'}: it holds files that dataset_converters did not write" in err
    assert snapshot(trash) == before


def test_files_added_during_the_conversion_are_kept(tmp_path):
    """The check is made again at the swap: a file put into OUTPUT/NAME while converting stops the swap."""
    from dataset_converters import ConversionError
    from dataset_converters.common import staged_dataset_dir

    out = tmp_path / "out"
    previous_dataset(out, "ttl")
    with pytest.raises(ConversionError, match="did not write: results.csv; nothing was changed or deleted"):
        with staged_dataset_dir(out, "ttl", overwrite=True) as tmp:
            (tmp / "ttl.inter").write_text("new")
            (out / "ttl" / "results.csv").write_text("written meanwhile")
    assert (out / "ttl" / "results.csv").read_text() == "written meanwhile"
    assert (out / "ttl" / "ttl.inter").read_text() == "previous data set\n"
    assert [p.name for p in out.iterdir()] == ["ttl"]
