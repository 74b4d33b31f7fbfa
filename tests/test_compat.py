"""Each shim of recbole_adaptssr.compat: the break it fixes (shown WITHOUT the shim, in a subprocess that never
imports recbole_adaptssr) and the behaviour with it (in this process, where conftest imported the package)."""

import enum
import importlib.metadata
import json
import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from recbole.utils import ModelType

from recbole_adaptssr import compat
from recbole_adaptssr.config import Config

# ------------------------------------------------------------------------------------------- helpers / fixtures
NAN_INTER = (
    "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
    "1\t1\t4\t1\n1\t2\t\t2\n2\t1\t2\t3\n2\t3\t3\t4\n3\t2\t5\t5\n"
)
NAN_USER = "user_id:token\tage:float\tgender:token\n1\t20\tM\n2\t\tF\n3\t40\t\n"
NAN_SETTINGS = {"load_col": None, "user_inter_num_interval": None, "item_inter_num_interval": None, "state": "ERROR"}


def write_nan_dataset(root):
    """Atomic files with one missing float rating (.inter), one missing float age and one missing token gender
    (.user). Ratings 4, 2, 3, 5 -> mean 3.5; ages 20, 40 (plus the [PAD] user's NaN) -> mean 30."""
    folder = root / "nan"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "nan.inter").write_text(NAN_INTER)
    (folder / "nan.user").write_text(NAN_USER)
    return root


# Runs with RecBole as installed, none of our shims: every break of docs/install.md's "What breaks in RecBole 1.2.1 today"
# in one interpreter (one start-up instead of four). Each step records its outcome; the tests below assert on them.
NO_SHIM_SCRIPT = textwrap.dedent(
    """
    import json, sys, warnings
    warnings.simplefilter("ignore")
    sys.argv = ["x"]
    DATA, NAN = {data!r}, {nan!r}
    out = {{}}
    import numpy as np
    from recbole.config import Config

    def attempt(key, fn):
        try:
            fn()
            out[key] = None
        except Exception as e:
            out[key] = [type(e).__name__, str(e)[:3000]]

    attempt("config_error", lambda: Config(model="BPR", dataset="ml-100k"))
    # only the numpy aliases, written out here (importing recbole_adaptssr would apply every shim)
    for alias, target in {{"float_": "float64", "complex_": "complex128", "unicode_": "str_"}}.items():
        setattr(np, alias, getattr(np, target))
    attempt("ce_error", lambda: Config(model="SASRec", dataset="tiny", config_dict={{"data_path": DATA}}))

    from recbole.data import create_dataset
    cfg = Config(model="BPR", dataset="nan", config_dict={{"data_path": NAN, **{nan_settings!r}}})
    ds = create_dataset(cfg)
    out["nan_user"] = {{c: int(ds.user_feat[c].isna().sum()) for c in ds.user_feat.columns}}
    out["nan_inter"] = {{c: int(ds.inter_feat[c].isna().sum()) for c in ds.inter_feat.columns}}

    import torch
    from recbole.model.general_recommender import BPR
    from recbole.trainer import Trainer
    cfg = Config(model="BPR", dataset="tiny",
                 config_dict={{"data_path": DATA, "state": "ERROR", "embedding_size": 4, "checkpoint_dir": "saved"}})
    trainer = Trainer(cfg, BPR(cfg, create_dataset(cfg)))
    trainer._save_checkpoint(0, verbose=False)
    attempt("load_error", lambda: torch.load(trainer.saved_model_file, weights_only=True))
    out["adaptssr_imported"] = "recbole_adaptssr" in sys.modules
    print("RESULT" + json.dumps(out))
    """
)


@pytest.fixture(scope="module")
def nan_data_path(tmp_path_factory):
    return write_nan_dataset(tmp_path_factory.mktemp("nan"))


@pytest.fixture(scope="module")
def without_shims(tiny_data_path, nan_data_path, tmp_path_factory):
    cwd = tmp_path_factory.mktemp("noshim")
    script = NO_SHIM_SCRIPT.format(data=str(tiny_data_path), nan=str(nan_data_path), nan_settings=NAN_SETTINGS)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT")]
    assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(lines[-1][len("RESULT"):])
    assert result["adaptssr_imported"] is False
    return result


def tiny_settings(tiny_data_path, **extra):
    return {"data_path": str(tiny_data_path), "state": "ERROR", "device": "cpu", "use_gpu": False, **extra}


# ------------------------------------------------------------------------------------------- 1. numpy aliases
def test_numpy_aliases_needed_without_shim(without_shims):
    name, message = without_shims["config_error"]
    assert name == "AttributeError"
    assert "np.float_" in message


def test_numpy_aliases_restored():
    assert np.float_ is np.float64
    assert np.complex_ is np.complex128
    assert np.unicode_ is np.str_
    config = Config(model="BPR", dataset="ml-100k", config_dict={"state": "ERROR"})
    assert config["model"] == "BPR"
    assert config["dataset"] == "ml-100k"


# ------------------------------------------------------------------------------------------- 2. safe checkpoints
def test_recbole_checkpoint_fails_weights_only_without_shim(without_shims):
    name, message = without_shims["load_error"]
    assert name == "UnpicklingError"
    assert "Weights only load failed" in message


def _sasrec_trainer(tiny_data_path, tmp_path):
    from recbole.model.sequential_recommender import SASRec
    from recbole.trainer import Trainer

    from recbole_adaptssr.data.utils import create_dataset

    config = Config(
        model="SASRec",
        dataset="tiny",
        config_dict=tiny_settings(
            tiny_data_path, hidden_size=8, inner_size=16, n_layers=1, n_heads=1, MAX_ITEM_LIST_LENGTH=10,
            checkpoint_dir=str(tmp_path / "ckpt"),
        ),
    )
    dataset = create_dataset(config)
    return Trainer(config, SASRec(config, dataset))


def test_recbole_trainer_checkpoint_loads_weights_only(tiny_data_path, tmp_path):
    trainer = _sasrec_trainer(tiny_data_path, tmp_path)
    trainer.best_valid_score = np.float32(0.25)  # RecBole stores numpy scalars here
    trainer._save_checkpoint(3, verbose=False)
    state = torch.load(trainer.saved_model_file, weights_only=True)
    assert type(state["config"]) is compat.SavedConfig  # allow-listed: RecBole's Config interface, plain values
    assert state["config"]["model"] == "SASRec"
    assert state["config"]["MODEL_TYPE"] is ModelType.SEQUENTIAL  # RecBole's enums survive (allow-listed)
    assert state["config"]["no_such_key"] is None and "model" in state["config"]  # as Config answers
    assert state["config"]["train_neg_sample_args"]["distribution"] == "none"
    assert state["epoch"] == 3
    assert state["best_valid_score"] == pytest.approx(0.25) and type(state["best_valid_score"]) is float
    assert set(state["state_dict"]) == set(trainer.model.state_dict())
    for key, value in trainer.model.state_dict().items():
        assert torch.equal(state["state_dict"][key], value)


def test_recbole_resume_checkpoint_restores_weights(tiny_data_path, tmp_path):
    """RecBole's own loader (torch.load with the default weights_only=True) reads the shimmed checkpoint."""
    trainer = _sasrec_trainer(tiny_data_path, tmp_path)
    saved = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer._save_checkpoint(4, verbose=False)
    with torch.no_grad():
        for p in trainer.model.parameters():
            p.add_(1.0)
    trainer.resume_checkpoint(trainer.saved_model_file)
    assert trainer.start_epoch == 5
    for key, value in trainer.model.state_dict().items():
        assert torch.equal(value, saved[key]), key


def test_pretrain_trainer_checkpoint_is_safe(tiny_data_path, tmp_path):
    from recbole.trainer.trainer import PretrainTrainer

    trainer = _sasrec_trainer(tiny_data_path, tmp_path)
    path = str(tmp_path / "pre.pth")
    PretrainTrainer.save_pretrained_model(trainer, 7, path)
    state = torch.load(path, weights_only=True)
    assert state["epoch"] == 7 and state["config"]["model"] == "SASRec"


class Colour(enum.Enum):
    RED = 1


def test_plain_converts_settings():
    value = {
        "enum": Colour.RED,
        "f32": np.float32(0.5),
        "i64": np.int64(7),
        "bool": np.bool_(True),
        "nested": {1: [Colour.RED, (np.int32(2), {"x": None})], "s": {3}},
        "other": object,
        "scalars": [None, True, 1, 2.5, "s"],
        "tensor": torch.arange(3),
    }
    out = compat.plain(value)
    assert torch.equal(out.pop("tensor"), torch.arange(3))  # tensors stay tensors (weights-only accepts them)
    assert out == {
        "enum": "RED",
        "f32": 0.5,
        "i64": 7,
        "bool": True,
        "nested": {"1": ["RED", [2, {"x": None}]], "s": [3]},
        "other": str(object),
        "scalars": [None, True, 1, 2.5, "s"],
    }
    assert type(out["f32"]) is float and type(out["i64"]) is int and type(out["bool"]) is bool


def test_plain_on_config_round_trips_weights_only(tiny_data_path, tmp_path):
    config = Config(model="SASRec", dataset="tiny", config_dict=tiny_settings(tiny_data_path))
    out = compat.plain(config)
    assert type(out) is dict
    assert out["model"] == "SASRec" and out["MODEL_TYPE"] == "SEQUENTIAL"
    assert set(out) == {str(k) for k in config.final_config_dict}
    path = tmp_path / "config.pth"
    torch.save(out, path)
    assert torch.load(path, weights_only=True) == out


# ------------------------------------------------------------------------------------------- 3. CE default
def test_recbole_config_rejects_ce_with_default_sampling(without_shims):
    name, message = without_shims["ce_error"]
    assert name == "ValueError"
    assert "should be None when the loss_type is CE" in message


def test_ce_without_negatives_by_default(tiny_data_path):
    config = Config(model="SASRec", dataset="tiny", config_dict=tiny_settings(tiny_data_path))
    assert config["loss_type"] == "CE"
    assert config["train_neg_sample_args"]["distribution"] == "none"


def test_ce_explicit_user_sampling_is_respected(tiny_data_path):
    with pytest.raises(ValueError, match="should be None when the loss_type is CE"):
        Config(
            model="SASRec",
            dataset="tiny",
            config_dict=tiny_settings(
                tiny_data_path, train_neg_sample_args={"distribution": "uniform", "sample_num": 1}
            ),
        )


def test_bpr_loss_keeps_recbole_default_sampling(tiny_data_path):
    config = Config(model="SASRec", dataset="tiny", config_dict=tiny_settings(tiny_data_path, loss_type="BPR"))
    assert config["train_neg_sample_args"]["distribution"] == "uniform"
    assert config["train_neg_sample_args"]["sample_num"] == 1


# ------------------------------------------------------------------------------------------- 4. fill_missing_values
def test_missing_values_stay_nan_without_shim(without_shims):
    assert without_shims["nan_user"]["age"] >= 1
    assert without_shims["nan_user"]["gender"] >= 1
    assert without_shims["nan_inter"]["rating"] == 1


def test_chained_inplace_fillna_is_noop_on_pandas3():
    """RecBole's own statements, on a frame as _fill_nan sees it: no effect under copy-on-write."""
    if int(pd.__version__.split(".")[0]) < 3:
        pytest.skip(f"pandas {pd.__version__} < 3: chained in-place fillna still works")
    feat = pd.DataFrame({"gender": [1.0, np.nan], "age": [20.0, np.nan]})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        feat["gender"].fillna(value=0, inplace=True)
        feat["age"].fillna(value=feat["age"].mean(), inplace=True)
    assert feat["gender"].isna().sum() == 1
    assert feat["age"].isna().sum() == 1


def test_missing_values_filled_with_shim(nan_data_path):
    from recbole.data import create_dataset

    config = Config(model="BPR", dataset="nan", config_dict={"data_path": str(nan_data_path), **NAN_SETTINGS})
    dataset = create_dataset(config)
    users, inter = dataset.user_feat, dataset.inter_feat
    assert not users.isna().any().any() and not inter.isna().any().any()
    tokens = list(dataset.field2id_token["user_id"])
    age = dict(zip((tokens[i] for i in users["user_id"]), users["age"]))
    gender = dict(zip((tokens[i] for i in users["user_id"]), users["gender"]))
    assert age["2"] == pytest.approx(30.0)  # float -> mean
    assert age["1"] == pytest.approx(20.0) and age["3"] == pytest.approx(40.0)
    assert gender["3"] == 0 and dataset.field2id_token["gender"][0] == "[PAD]"  # token -> [PAD]
    assert dataset.field2id_token["gender"][int(gender["1"])] == "M"
    ratings = {
        (tokens[u], dataset.field2id_token["item_id"][i]): r
        for u, i, r in zip(inter["user_id"].tolist(), inter["item_id"].tolist(), inter["rating"].tolist())
    }
    assert ratings[("1", "2")] == pytest.approx(3.5)  # mean of 4, 2, 3, 5
    assert ratings[("3", "2")] == pytest.approx(5.0)


# ------------------------------------------------------------------------------------------- 5. ray
def test_check_ray_rejects_recbole_pin(monkeypatch):
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "2.6.3")
    with pytest.raises(ImportError, match=r"ray\[tune\]>=2\.40") as info:
        compat.check_ray()
    assert "2.6.3" in str(info.value)


@pytest.mark.parametrize("version", ["2.60.0", "2.40.0", "3.0.0rc1"])
def test_check_ray_accepts_new_ray(monkeypatch, version):
    monkeypatch.setattr(importlib.metadata, "version", lambda name: version)
    compat.check_ray()


def test_check_ray_compares_numerically(monkeypatch):
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "2.9.0")  # "2.9" > "2.40" as strings
    with pytest.raises(ImportError):
        compat.check_ray()


# ------------------------------------------------------------------------------------------- anomaly detection
# RecBole 1.2.1's sequential_recommender/sine.py calls torch.autograd.set_detect_anomaly(True) at import, which made
# all later training in the process 2-4x slower; compat.no_anomaly_detection imports it and switches it off.
def test_recbole_models_leave_anomaly_detection_off():
    from recbole_adaptssr import utils

    utils.get_model("SASRec")
    assert not torch.is_anomaly_enabled()


# ------------------------------------------------------------------------------------------- apply()
def test_apply_is_idempotent(monkeypatch):
    from recbole.data.dataset import dataset as rb_dataset
    from recbole.trainer import trainer as rb_trainer

    before = (
        rb_trainer.Trainer._save_checkpoint,
        rb_trainer.PretrainTrainer.save_pretrained_model,
        rb_dataset.Dataset._fill_nan,
        np.float_,
    )
    assert before[0]._adaptssr_safe and before[2]._adaptssr_safe
    compat.apply()
    monkeypatch.setattr(compat, "_applied", False)  # force every shim to run again
    compat.apply()
    compat.safe_checkpoints()
    compat.fill_missing_values()
    compat.numpy_aliases()
    after = (
        rb_trainer.Trainer._save_checkpoint,
        rb_trainer.PretrainTrainer.save_pretrained_model,
        rb_dataset.Dataset._fill_nan,
        np.float_,
    )
    assert after == before
    assert compat._applied is True


# ------------------------------------------------------------------------------------------- scipy dok_matrix._update
def test_dok_update_restored_and_equivalent_to_item_assignment():
    """RecBole's LightGCN/NGCF build their adjacency with dok_matrix._update (gone in scipy >= 1.12)."""
    from scipy.sparse import dok_matrix

    entries = {(0, 1): 1.0, (1, 0): 1.0, (2, 3): 2.0}
    patched = dok_matrix((4, 4), dtype=np.float32)
    patched._update(entries)
    direct = dok_matrix((4, 4), dtype=np.float32)
    for key, value in entries.items():
        direct[key] = value
    assert (patched.toarray() == direct.toarray()).all() and patched.nnz == 3
