"""The console commands (setup.cfg's entry points ``recbole-adaptssr``, ``recbole-adaptssr-hyper``,
``recbole-adaptssr-convert``) run the code of the scripts; flags shared by the two run commands take the same forms;
without RecBole they print the install command. (The installed scripts themselves: tests/test_packaging.py.)"""

from __future__ import annotations

import configparser
import sys
from pathlib import Path

import pytest

from recbole_adaptssr import commands
from recbole_adaptssr.checkpoint import load_checkpoint

REPO = Path(__file__).resolve().parents[1]
ENTRY_POINTS = {"recbole-adaptssr": "recbole_adaptssr.commands:main",
                "recbole-adaptssr-hyper": "recbole_adaptssr.commands:hyper",
                "recbole-adaptssr-convert": "recbole_adaptssr.commands:convert"}


def test_setup_cfg_declares_the_three_console_commands():
    parser = configparser.ConfigParser()
    parser.read(REPO / "setup.cfg")
    lines = [line for line in parser["options.entry_points"]["console_scripts"].splitlines() if line.strip()]
    assert dict(tuple(part.strip() for part in line.split("=")) for line in lines) == ENTRY_POINTS


@pytest.mark.parametrize("command,options", [
    (commands.main, ["--model", "--config_files", "--nproc", "--group_offset"]),
    (commands.hyper, ["--params_file", "--finetune_from", "--num_samples", "hyper/finetune.hyper"]),
    (commands.convert, ["{ttl,app,movielens}", "SOURCE --help"]),
])
def test_each_command_prints_its_help(command, options, capsys):
    with pytest.raises(SystemExit) as exit_status:
        command(["--help"])
    assert exit_status.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: ") and all(option in out for option in options), out[:2000]


def test_a_tiny_run_through_the_main_command(tiny_data_path, tmp_path):
    status = commands.main(["--model=AdaptSSR", "--dataset=tiny", f"--data_path={tiny_data_path}",
                            "--pretrain_stages=[ssr]", "--ssr_epochs=1", "--downstream_tasks=[]", "--hidden_size=16",
                            "--inner_size=32", "--n_layers=1", "--MAX_ITEM_LIST_LENGTH=20", "--device=cpu",
                            "--show_progress=False", "--state=WARNING", f"--checkpoint_dir={tmp_path / 'saved'}"])
    assert status == 0
    (checkpoint,) = (tmp_path / "saved").glob("AdaptSSR-tiny-*/units/*/pretrain/ssr.pth")
    config = load_checkpoint(checkpoint)["config"]
    assert (config["ssr_epochs"], config["hidden_size"], config["pretrain_stages"]) == (1, 16, ["ssr"])


@pytest.mark.parametrize("command", [commands.main, commands.hyper])
def test_without_recbole_a_command_prints_the_install_command(command, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "recbole", None)  # importlib finds no RecBole
    assert command(["--model=AdaptSSR", "--params_file=hyper/finetune.hyper"]) == 1
    err = capsys.readouterr().err
    assert "RecBole 1.2.1 is not installed" in err and "ray<=2.6.3 pin" in err
    assert "bash scripts/install.sh" in err and "pip install --no-deps recbole==1.2.1" in err


def test_the_converter_needs_no_recbole(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "recbole", None)
    with pytest.raises(SystemExit) as exit_status:
        commands.convert(["movielens", "--help"])
    assert exit_status.value.code == 0 and "--rec-holdout" in capsys.readouterr().out


def test_group_offset_is_recboles_name_and_offset_a_deprecated_alias(capsys):
    parser = commands.build_parser("recbole-adaptssr")
    assert commands.group_offset(parser.parse_args(["--group_offset=8"]), parser) == 8
    assert commands.group_offset(parser.parse_args([]), parser) == 0
    assert commands.group_offset(parser.parse_args(["--offset=8"]), parser) == 8
    assert "--offset is deprecated, use --group_offset" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        commands.group_offset(parser.parse_args(["--offset=8", "--group_offset=4"]), parser)
    assert "--offset=8 and --group_offset=4 disagree" in capsys.readouterr().err


@pytest.mark.parametrize("flag,start", [("--finetune_from=[none]", "none"), ("--finetune_from=ssr", "ssr"),
                                        ("--finetune_from=['/a/ssr.pth']", "/a/ssr.pth")])
def test_the_hyper_command_takes_finetune_from_in_the_main_commands_forms(flag, start):
    from recbole_adaptssr.tuning.cli import parse

    options, settings = parse(["--params_file=hyper/finetune.hyper", flag])
    assert options.finetune_from == start and settings == []


def test_a_hyper_search_has_one_start_point(capsys):
    from recbole_adaptssr.tuning.cli import parse

    with pytest.raises(SystemExit):
        parse(["--params_file=hyper/finetune.hyper", "--finetune_from=[ssr,none]"])
    assert "a fine-tune search has one start point, got '[ssr,none]'" in capsys.readouterr().err
