"""scripts/bench_entrypoint.py runs the entry point in its own process: the entry point ends as a script does
(``sys.exit(status)``), and the benchmark must still report a run that succeeded and fail one that did not."""

import argparse
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))


def child_args(tmp_path):
    return argparse.Namespace(child="default", extra="", data=tmp_path, device="cpu", workdir=tmp_path,
                              mlm_epochs=1, ssr_epochs=1, seed=2020)


def entry_point_ending_with(monkeypatch, code):
    import bench_entrypoint

    ran = []

    def run_path(path, run_name):
        ran.append((Path(path).name, run_name, list(sys.argv)))
        raise SystemExit(code)

    monkeypatch.setattr(bench_entrypoint.runpy, "run_path", run_path)
    monkeypatch.setattr(sys, "argv", list(sys.argv))  # child() sets the entry point's argv
    return bench_entrypoint, ran


@pytest.mark.parametrize("code", [0, None])
def test_a_run_that_exits_successfully_is_reported(monkeypatch, tmp_path, code):
    bench, ran = entry_point_ending_with(monkeypatch, code)
    result = bench.child(child_args(tmp_path))
    assert ran[0][:2] == ("run_recbole_adaptssr.py", "__main__")
    assert "--downstream_tasks=[]" in ran[0][2] and f"--data_path={tmp_path}" in ran[0][2]
    assert result["variant"] == "default" and result["stages"] == {} and result["process_s"] > 0


def test_a_failed_run_fails_the_variant(monkeypatch, tmp_path):
    bench, _ = entry_point_ending_with(monkeypatch, 1)
    with pytest.raises(SystemExit) as failed:
        bench.child(child_args(tmp_path))
    assert failed.value.code == 1
