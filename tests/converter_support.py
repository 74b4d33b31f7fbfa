"""Helpers shared by the converter tests: read atomic files, hash a folder, run the CLI in-process, assert that a
conversion is refused with nothing changed."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from dataset_converters import EXIT_BAD_INPUT, ConversionError
from dataset_converters.__main__ import main
from dataset_converters.common import write_dataset_marker


def read_atomic(path: Path) -> tuple[list[str], list[list[str]]]:
    """(header fields, rows) of a tab-separated atomic file."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return lines[0].split("\t"), [line.split("\t") for line in lines[1:]]


def snapshot(root: Path) -> dict | None:
    """Every path under ``root`` (hidden ones included) with the SHA-256 of its bytes (None for folders), or None
    if ``root`` does not exist."""
    if not root.exists():
        return None
    return {str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else None)
            for p in sorted(root.rglob("*"))}


def run_cli(argv, capsys) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of ``python -m dataset_converters ARGV``, run in-process."""
    rc = main([str(a) for a in argv])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def previous_dataset(out: Path, name: str) -> Path:
    """``out/name`` as an earlier conversion left it: one data file and the converter's marker listing it."""
    (out / name).mkdir(parents=True)
    (out / name / f"{name}.inter").write_text("previous data set\n")
    write_dataset_marker(out / name, name)
    return out / name


def assert_refused(argv, convert, guarded, where: str, problem: str, kind: str, capsys) -> ConversionError:
    """``python -m dataset_converters ARGV`` exits 2 printing ``error: WHERE: ...PROBLEM...``, and ``convert()``
    raises a ConversionError of ``kind`` reading ``WHERE: ...PROBLEM...``; every file under each of the
    ``guarded`` folders (inputs, existing output) is byte-identical after each call, and no folder appeared."""
    before = [snapshot(p) for p in guarded]
    rc, _, err = run_cli(argv, capsys)
    assert rc == EXIT_BAD_INPUT, err
    assert f"error: {where}: " in err and problem in err, err
    assert [snapshot(p) for p in guarded] == before
    with pytest.raises(ConversionError) as ei:
        convert()
    assert str(ei.value).startswith(f"{where}: ") and problem in ei.value.problem, str(ei.value)
    assert ei.value.kind == kind
    assert [snapshot(p) for p in guarded] == before
    return ei.value


def assert_fails_cleanly(source, convert, inp: Path, out: Path, name: str, fname, line, problem, kind, capsys,
                         skip_bad_lines: bool = False, cli_flags=()):
    """Bad input to ``source`` (CLI, with ``cli_flags``) and ``convert`` (Python) fails with file, line (None: the
    whole file) and problem, exit code 2 and a ``ConversionError`` of ``kind``; even with ``--overwrite`` the
    previous data set ``out/name``, the rest of ``out`` and the input stay byte-identical."""
    previous_dataset(out, name)
    (out / "other.txt").write_text("unrelated")
    flags = ["--overwrite", *cli_flags] + (["--skip-bad-lines"] if skip_bad_lines else [])
    where = f"{inp / fname}" + (f", line {line}" if line is not None else "")
    assert_refused([source, "--input", inp, "--output", out, *flags],
                   lambda: convert(inp, out, overwrite=True, skip_bad_lines=skip_bad_lines),
                   [inp, out], where, problem, kind, capsys)
