"""A bad input through the run commands (``recbole-adaptssr``, ``recbole-adaptssr-hyper``) is one ``<prog>: error:``
line on stderr naming the key, file or line, with exit status 2 and no traceback (``--state=DEBUG``: the traceback);
every other exception propagates. The result scripts name what they read and the columns they can draw."""

from __future__ import annotations

import importlib.util
import json
import logging
from pathlib import Path

import pytest

from recbole_adaptssr import commands, quick_start
from recbole_adaptssr.analysis import sweep
from recbole_adaptssr.setting_errors import SettingError
from recbole_adaptssr.tuning import cli
from recbole_adaptssr.tuning.space import SpaceError

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def tiny_run(data_path, tmp_path, *settings) -> list:
    """A command line of a run on the tiny data set, ``settings`` (``--key=value``) replacing its own."""
    given = dict(setting.split("=", 1) for setting in settings)
    fixed = {"--model": "AdaptSSR", "--dataset": "tiny", "--data_path": str(data_path), "--downstream_tasks": "[]",
             "--device": "cpu", "--show_progress": "False", "--checkpoint_dir": str(tmp_path / "saved")}
    return [f"{key}={value}" for key, value in {**fixed, **given}.items()]


def one_error_line(err: str) -> str:
    assert "Traceback" not in err, err
    (line,) = [line for line in err.splitlines() if "error:" in line]
    return line


@pytest.mark.parametrize("setting,message", [
    ("--MAX_ITEM_LIST_LENGTH=0", "MAX_ITEM_LIST_LENGTH must be an integer >= 1"),  # the checks' table
    ("--device=tpu", "device must be one of ['cpu', 'cuda', 'cuda:N'], got 'tpu'"),  # Config
    ("--model=Nope", "unknown model 'Nope'"),  # get_model: a name a setting gives
    ("--ssr_lamda_mode=adaptive", "'ssr_lamda_mode' (the command line; did you mean ssr_lambda_mode?)"),
    ("--pretrain_methods=[adaptsr]", "unknown pre-training method 'adaptsr' in pretrain_methods"),  # a comparison
    ("--executor=threads", "executor must be one of ['serial', 'processes', 'ray'], got 'threads'"),  # the executor
])
def test_a_bad_setting_is_one_error_line_and_exit_status_2(tiny_data_path, tmp_path, capsys, setting, message):
    status = commands.main(tiny_run(tiny_data_path, tmp_path, setting))
    line = one_error_line(capsys.readouterr().err)
    assert status == commands.EXIT_BAD_INPUT == 2
    assert line.startswith("pytest: error: ") and message in line, line
    assert not (tmp_path / "saved").exists()


def test_a_key_given_twice_with_two_values_is_named_with_both(tiny_data_path, tmp_path, capsys):
    status = commands.main([*tiny_run(tiny_data_path, tmp_path, "--device=cpu"), "--device=cuda"])
    line = one_error_line(capsys.readouterr().err)
    assert status == 2 and "--device is given 2 times with different values ('cpu', 'cuda'): give it once" in line


@pytest.mark.parametrize("argv,message", [
    (["--space", "learning_rate uniform 0.1"], "--space:1: uniform needs 2 bounds (a b), got '0.1'"),  # the space
    (["--space", "lerning_rate choice [0.1]"], "--space:1: lerning_rate is not a setting; did you mean learning_rate"),
    (["--space", "learning_rate choice [0.1]", "--device=tpu"], "device must be one of"),  # a setting of the runs
    (["--space", "learning_rate uniform 1e-4 1e-2", "--search_alg=grid"], "--search_alg=grid runs every"),
])
def test_the_hyper_command_reports_a_bad_space_or_setting_before_ray_starts(task_data, tmp_path, capsys, argv, message):
    status = commands.hyper([*argv, "--dataset=tt", f"--data_path={task_data.root}",
                             f"--storage_path={tmp_path / 'ray'}", f"--output_dir={tmp_path / 'study'}"])
    line = one_error_line(capsys.readouterr().err)
    assert status == 2 and message in line, line
    assert not (tmp_path / "ray").exists() and not (tmp_path / "study").exists()


@pytest.mark.parametrize("command,argv,error", [
    (commands.main, ["--device=tpu"], SettingError),
    (commands.hyper, ["--space", "learning_rate uniform 0.1"], SpaceError),
])
def test_with_state_debug_the_input_error_keeps_its_traceback(tiny_data_path, tmp_path, command, argv, error):
    settings = [s for s in argv if s.startswith("--") and "=" in s]
    others = [s for s in argv if s not in settings]
    with pytest.raises(error):
        command([*others, *tiny_run(tiny_data_path, tmp_path, *settings, "--state=DEBUG")[1:]])


@pytest.mark.parametrize("exception", [RuntimeError("a bug"), ValueError("a bug, not an input error")])
def test_any_other_exception_propagates(tiny_data_path, tmp_path, monkeypatch, capsys, exception):
    def broken(*args, **kwargs):
        raise exception

    monkeypatch.setattr(quick_start, "run", broken)
    with pytest.raises(type(exception), match="a bug"):
        commands.main(tiny_run(tiny_data_path, tmp_path))
    monkeypatch.setattr(cli, "main", broken)
    with pytest.raises(type(exception), match="a bug"):
        commands.hyper(["--space", "learning_rate choice [0.1]"])
    assert "error:" not in capsys.readouterr().err


def test_the_error_reaches_an_open_log_file_and_the_console_once(tiny_data_path, tmp_path, capsys):
    handler = logging.FileHandler(tmp_path / "run.log", encoding="utf-8")
    logging.getLogger().addHandler(handler)
    try:
        assert commands.main(tiny_run(tiny_data_path, tmp_path, "--device=tpu")) == 2
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()
    assert "SettingError: device must be one of" in (tmp_path / "run.log").read_text()
    assert "device must be one of" in one_error_line(capsys.readouterr().err)


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_merge_results_says_a_comparison_folder_is_not_what_it_merges(tmp_path, capsys):
    (tmp_path / "cmp").mkdir()
    (tmp_path / "cmp" / "comparison.json").write_text(json.dumps({"runs": []}))
    assert load_script("merge_results").main(["--out", str(tmp_path / "merged"), str(tmp_path / "cmp")]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert f"{tmp_path / 'cmp'}: a comparison run folder (comparison.json" in line
    assert "merging reads the results.json of AdaptSSR pipeline runs and of RecBole baselines' runs" in line
    assert not (tmp_path / "merged").exists()


def test_plot_sweep_names_the_option_and_lists_the_columns():
    rows = [{"trial": "a", "status": "completed", "mask_ratio": "0.2", "valid ndcg@10": "0.1"}]
    with pytest.raises(ValueError) as error:
        sweep.pick_columns(rows, x="augmentation_ratio", group="methd")
    assert str(error.value) == ("--x 'augmentation_ratio' is not a column; --group 'methd' is not a column; the "
                                "columns of the trials table: trial, status, mask_ratio, valid ndcg@10")
    with pytest.raises(ValueError, match=r"no 'valid <metric>' column to draw: give --y; the columns of the trials "
                                         r"table: trial, status, mask_ratio$"):
        sweep.pick_columns([{k: v for k, v in rows[0].items() if k != "valid ndcg@10"}])


def test_the_input_errors_survive_pickling():
    """A worker process or a Ray task sends its exception back pickled: each input error is rebuilt whole."""
    import pickle

    from recbole_adaptssr.checkpoint import CheckpointError
    from recbole_adaptssr.data.validation import DataError
    from recbole_adaptssr.setting_errors import MissingFileError

    for error in (DataError("d/x.inter", 7, "3 fields, the header has 4"), DataError("d/x.inter", None, "empty"),
                  CheckpointError("saved/a.pth", "truncated"), SettingError("lr must be > 0"),
                  SpaceError("--space:1: bad"), MissingFileError("no file c.yaml")):
        again = pickle.loads(pickle.dumps(error))
        assert type(again) is type(error) and str(again) == str(error) and vars(again) == vars(error)
