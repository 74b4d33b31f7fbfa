"""Helpers shared by the converter tests: read atomic files, snapshot a folder, run the CLI in-process."""

from __future__ import annotations

from pathlib import Path

from dataset_converters.__main__ import main


def read_atomic(path: Path) -> tuple[list[str], list[list[str]]]:
    """(header fields, rows) of a tab-separated atomic file."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return lines[0].split("\t"), [line.split("\t") for line in lines[1:]]


def snapshot(root: Path) -> dict | None:
    """Every path under ``root`` with its bytes (None for folders), or None if ``root`` does not exist."""
    if not root.exists():
        return None
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))}


def run_cli(argv, capsys) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of ``python -m dataset_converters ARGV``, run in-process."""
    rc = main([str(a) for a in argv])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def assert_fails_cleanly(source, convert, inp: Path, out: Path, name: str, fname, line, problem, kind, capsys):
    """Bad input to ``source`` (CLI) and ``convert`` (Python) fails with file, line and problem, exit code 2 and
    a ``ConversionError`` of ``kind``, and leaves ``out`` (holding a previous data set ``name``) byte-identical."""
    import pytest

    from dataset_converters import ConversionError

    (out / name).mkdir(parents=True)
    (out / name / f"{name}.inter").write_text("previous data set\n")
    (out / "other.txt").write_text("unrelated")
    before = snapshot(out)
    rc, _, err = run_cli([source, "--input", inp, "--output", out], capsys)
    assert rc == 2
    assert f"{inp / fname}, line {line}: " in err and problem in err, err
    assert snapshot(out) == before  # same files, same bytes, no temporary folder left
    with pytest.raises(ConversionError) as ei:
        convert(inp, out)
    assert (Path(ei.value.file).name, ei.value.line, ei.value.kind) == (fname, line, kind)
    assert problem in ei.value.problem
    assert snapshot(out) == before
