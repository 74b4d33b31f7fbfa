"""A regular (non-editable) install carries the YAML defaults as package data; a missing defaults file is an error."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXPECTED = {"properties/overall.yaml", "properties/model/AdaptSSR.yaml", "properties/pretext/mlm.yaml",
            "properties/pretext/ssr.yaml", "properties/downstream/recommendation.yaml",
            "properties/dataset/ml-100k-tasks.yaml", "properties/methods.yaml"}


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """Build the wheel and install it (no dependencies: they are this venv's) into a folder of its own."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"  # a copy: setuptools writes build/ into the tree it builds
    source.mkdir()
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    for package in ("recbole_adaptssr", "dataset_converters"):
        shutil.copytree(REPO / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                            str(work / "dist"), str(source)], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-3000:]
    (wheel,) = (work / "dist").glob("recbole_adaptssr-*.whl")
    target = work / "site"
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target),
                              str(wheel)], capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stderr[-3000:]
    return wheel, target


def test_the_wheel_carries_the_defaults(installed):
    wheel, _ = installed
    import recbole_adaptssr

    assert wheel.name.startswith(f"recbole_adaptssr-{recbole_adaptssr.__version__}-")  # one version: __version__
    names = {n.split("recbole_adaptssr/", 1)[1] for n in zipfile.ZipFile(wheel).namelist()
             if n.startswith("recbole_adaptssr/properties/")}
    assert EXPECTED <= names


def test_a_non_editable_install_finds_its_defaults(installed, tmp_path):
    _, target = installed
    code = ("import recbole_adaptssr, sys\n"
            "from recbole_adaptssr.config import Config\n"
            "from recbole_adaptssr.plugins import PROPERTIES_DIR\n"
            "c = Config(model='AdaptSSR', dataset='ml-100k-tasks', config_dict={'data_path': '.'})\n"
            "print(recbole_adaptssr.__file__)\n"
            "print(c['ssr_lambda_mode'], c['mlm_mask_ratio'], c['MAX_ITEM_LIST_LENGTH'], c['recommendation_topk'])\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(target)  # the installed copy, not the source tree (cwd is elsewhere)
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    where, values = proc.stdout.strip().splitlines()[-2:]
    assert where.startswith(str(target))
    assert values == "adaptive 0.3 50 [10]"  # model, pretext, downstream and dataset YAMLs all applied


def test_a_missing_defaults_file_is_an_error(installed, tmp_path):
    _, target = installed
    os.remove(target / "recbole_adaptssr" / "properties" / "pretext" / "ssr.yaml")
    code = ("from recbole_adaptssr.config import Config\n"
            "Config(model='AdaptSSR', dataset='x', config_dict={'data_path': '.'})\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(target)
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode != 0
    assert "ssr.yaml is missing: the recbole-adaptssr installation is incomplete" in proc.stderr


@pytest.mark.parametrize("script,option", [("recbole-adaptssr", "--group_offset"),
                                           ("recbole-adaptssr-hyper", "--params_file"),
                                           ("recbole-adaptssr-convert", "{ttl,app,movielens}")])
def test_the_wheel_installs_the_console_commands(installed, tmp_path, script, option):
    _, target = installed
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(target)
    proc = subprocess.run([str(target / "bin" / script), "--help"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith(f"usage: {script} ") and option in proc.stdout
