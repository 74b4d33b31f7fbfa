"""Pre-training data (one sequence per user, 90/10 split), the staged pre-training run end to end on the tiny data
set, its weights-only checkpoints, stage selection, and a lone leftover batch in the ranking stage."""

import collections
import math
import random
import sys
from pathlib import Path

import pytest
import torch
from recbole.utils import init_seed

from conftest import write_tiny_dataset
from recbole_adaptssr.checkpoint import load_checkpoint
from recbole_adaptssr.config import Config
from recbole_adaptssr.data.dataset import AdaptSSRDataset
from recbole_adaptssr.data.utils import create_dataset
from recbole_adaptssr.model.adaptssr import AdaptSSR
from recbole_adaptssr.quick_start import run

MAX_LEN = 20  # tiny_config's MAX_ITEM_LIST_LENGTH; the tiny data holds users with up to 24 behaviours


def read_inter(folder, name):
    """user token -> [(timestamp, item token), ...] in file order, from the raw atomic file."""
    rows = collections.defaultdict(list)
    lines = (folder / name / f"{name}.inter").read_text().splitlines()[1:]
    for line in lines:
        user, item, ts = line.split("\t")
        rows[user].append((float(ts), item))
    return rows


def dataset_of(config_dict, name="tiny"):
    """The AdaptSSRDataset of a run, before ``build()`` (which turns the behaviour log into one row per user)."""
    config = Config(model="AdaptSSR", dataset=name, config_dict=config_dict)
    init_seed(config["seed"], config["reproducibility"])
    return config, create_dataset(config)


def user_rows(data):
    """user token -> (item tokens of the row's valid part, item_length) of an AdaptSSRDataset (or split)."""
    feat = data.inter_feat
    list_field = data.iid_field + data.config["LIST_SUFFIX"]
    out = {}
    for uid, items, length in zip(
        feat[data.uid_field].tolist(), feat[list_field].tolist(), feat[data.item_list_length_field].tolist()
    ):
        tokens = [data.id2token(data.iid_field, i) for i in items[:length]]
        assert all(i == 0 for i in items[length:])  # left-aligned, 0-padded
        out[data.id2token(data.uid_field, uid)] = (list(map(str, tokens)), length)
    return out


# ------------------------------------------------------------------------------------------- AdaptSSRDataset
def test_one_row_per_user_with_most_recent_behaviours(tiny_config, tiny_data_path):
    _, data = dataset_of(tiny_config)
    assert isinstance(data, AdaptSSRDataset)
    data.build()
    raw = read_inter(tiny_data_path, "tiny")
    rows = user_rows(data)
    assert len(data.inter_feat) == len(raw) == 120
    assert set(rows) == set(raw)
    longer = [u for u in raw if len(raw[u]) > MAX_LEN]
    assert longer, "the tiny data must hold users longer than MAX_ITEM_LIST_LENGTH"
    for user, behaviours in raw.items():
        expected = [item for _, item in sorted(behaviours, key=lambda b: b[0])][-MAX_LEN:]
        assert rows[user] == (expected, min(len(behaviours), MAX_LEN)), user
    assert data.behaviour_count == sum(len(b) for b in raw.values())
    assert data.truncated_behaviours == sum(len(raw[u]) - MAX_LEN for u in longer)


def test_rows_are_chronological_even_if_file_is_not(tmp_path, tiny_config):
    """Lines shuffled in the file: the row order follows the timestamps, not the file."""
    folder = tmp_path / "shuf" / "shuf"
    folder.mkdir(parents=True)
    rng = random.Random(0)
    lines, expected = [], {}
    for user in range(1, 31):
        n = rng.randint(3, 8) if user % 5 else 26  # every 5th user is longer than MAX_LEN
        times = rng.sample(range(1000), n)
        items = [f"i{rng.randint(1, 40)}" for _ in range(n)]
        lines += [f"u{user}\t{item}\t{t}" for item, t in zip(items, times)]
        expected[f"u{user}"] = [item for _, item in sorted(zip(times, items))][-MAX_LEN:]
    rng.shuffle(lines)
    (folder / "shuf.inter").write_text("user_id:token\titem_id:token\ttimestamp:float\n" + "\n".join(lines) + "\n")
    _, data = dataset_of({**tiny_config, "data_path": str(tmp_path / "shuf")}, name="shuf")
    data.build()
    rows = user_rows(data)
    assert {u: r[0] for u, r in rows.items()} == expected
    assert rows["u5"][1] == MAX_LEN


def test_split_90_10_disjoint_covering_and_seeded(tiny_config):
    _, data = dataset_of(tiny_config)
    train, valid = data.build()
    assert (len(train), len(valid)) == (108, 12)
    train_users = set(train.inter_feat[data.uid_field].tolist())
    valid_users = set(valid.inter_feat[data.uid_field].tolist())
    assert not train_users & valid_users
    assert train_users | valid_users == set(data.inter_feat[data.uid_field].tolist())
    # rows travel whole: a user's sequence is the same in its split as in the full data set
    assert user_rows(valid).items() <= user_rows(data).items()

    def valid_ids(seed):
        return sorted(data.split_users(0.1, seed)[1].inter_feat[data.uid_field].tolist())

    assert valid_ids(tiny_config["seed"]) == sorted(valid_users)  # build() uses the configured seed
    assert valid_ids(7) == valid_ids(7)
    assert valid_ids(7) != valid_ids(8)
    assert len(data.split_users(0.25, 7)[1]) == 30


def test_split_rejects_too_few_users_and_bad_ratio(tmp_path, tiny_config):
    write_tiny_dataset(tmp_path / "few", name="few", n_users=12)
    _, data = dataset_of({**tiny_config, "data_path": str(tmp_path / "few")}, name="few")
    with pytest.raises(ValueError, match="12 user sequences are too few"):
        data.build()  # round(1.2) = 1 validation sequence < 2
    for ratio in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError, match=r"pretrain_valid_ratio must be in \(0, 1\)"):
            data.split_users(ratio, 0)


# ------------------------------------------------------------------------------------------- end to end
# MLM then ranking on a 300-user version of the tiny data (the 120-user one leaves 12 validation sequences: too
# noisy to compare accuracies). Measured over seeds 2023 and 1-5 with these settings (initial -> kept epoch):
#   MLM valid loss falls by 0.36-0.68 on every seed;
#   acc_implicit rises by 0.17-0.23 on every seed (2023: 0.74 -> 0.97);
#   acc_explicit rises on every seed, by 0.01-0.17 (2023: 0.79 -> 0.91).
# With the paper's adaptive lambda (Eq. 7) and the same settings the ranking loss falls too, but BOTH accuracies
# fall on every seed (2023: 0.76/0.76 -> 0.71/0.58): per-sample lambda polarises towards 0 or 1 on this data
# (the adaptive loss is checked against a loop reference in test_losses.py). The learning check therefore runs
# the fixed-lambda variant of the same loss (lambda_mode: fixed, fixed_lambda: 0.5).
E2E_USERS = 300
E2E_SETTINGS = {
    "mlm_epochs": 6,
    "ssr_epochs": 12,
    "ssr_valid_metric": "loss",  # this test selects the kept epochs by loss; the default has its own test
    "learning_rate": 0.005,
    "train_batch_size": 24,
    "mlm_mask_ratio": 0.4,
    # the warm-up as these margins were measured (before the release's MLM settings became the stage defaults)
    "mlm_learning_rate": 0.005,
    "mlm_head": "transform",
    "mlm_hidden_dropout_prob": 0.1,
    "mlm_attn_dropout_prob": 0.1,
    "ssr_lambda_mode": "fixed",
    "ssr_fixed_lambda": 0.5,
    "stopping_step": 100,
}
MLM_MARGIN = 0.2


def run_adaptssr(dataset, config_dict):
    return run("AdaptSSR", dataset, config_dict=config_dict)
ACC_MARGIN = 0.05


def tiny_settings(data_path, work):
    """conftest's tiny_config, for a module-scoped run (checkpoints under ``work``)."""
    return {
        "data_path": str(data_path), "checkpoint_dir": str(work / "saved"), "device": "cpu", "use_gpu": False,
        "show_progress": False, "MAX_ITEM_LIST_LENGTH": MAX_LEN, "hidden_size": 32, "inner_size": 64,
        "train_batch_size": 32, "eval_batch_size": 64, "learning_rate": 0.001, "mlm_epochs": 2, "ssr_epochs": 2,
        "seed": 2023, "state": "WARNING", "torch_threads": 1, "stopping_steps": 0,
    }


@pytest.fixture(scope="module")
def e2e(tmp_path_factory):
    """One pre-training run shared by the tests below (module scope: it is the slow part of this file)."""
    work = tmp_path_factory.mktemp("e2e")
    data_path = work / "data"
    write_tiny_dataset(data_path, n_users=E2E_USERS)
    config_dict = {**tiny_settings(data_path, work), **E2E_SETTINGS}
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(work)  # the autouse isolation is per test; this runs before it
        mp.setattr(sys, "argv", ["pytest"])
        result = run_adaptssr("tiny", config_dict=config_dict)
    return config_dict, result["pretrain"], Path(result["run_dir"])


def test_pretraining_learns(e2e):
    """MLM validation loss falls; then both ranking accuracies of the kept ranking epoch rise above their values
    before the ranking stage (``initial_valid_result``)."""
    _, pretrain, _ = e2e
    assert list(pretrain) == ["mlm", "ssr"]
    mlm, ssr = pretrain["mlm"], pretrain["ssr"]
    assert mlm.valid_metric == "loss" and ssr.valid_metric == "loss"
    assert len(mlm.history) == E2E_SETTINGS["mlm_epochs"] and len(ssr.history) == E2E_SETTINGS["ssr_epochs"]
    for summary in (mlm, ssr):  # the kept epoch is the best epoch of the history by the stage's metric
        losses = [h["loss"] for h in summary.history]
        assert summary.best_epoch == losses.index(min(losses))
        kept = summary.history[summary.best_epoch]
        assert all(kept[k] == pytest.approx(v) for k, v in summary.valid.items())
    assert mlm.valid["loss"] < mlm.initial["loss"] - MLM_MARGIN
    assert mlm.valid["mlm_acc"] > mlm.initial["mlm_acc"]
    best, initial = ssr.valid, ssr.initial
    for key in ("acc_implicit", "acc_explicit"):
        assert best[key] > initial[key] + ACC_MARGIN, (key, initial, best)
    assert best["loss"] < initial["loss"]
    assert best["lambda"] == pytest.approx(0.5)


def test_checkpoints_of_both_stages(e2e):
    config_dict, pretrain, run_dir = e2e
    raw_items = {item for rows in read_inter(Path(config_dict["data_path"]), "tiny").values() for _, item in rows}
    states = {}
    for index, (stage, summary) in enumerate(pretrain.items()):
        # each stage is a unit of its own, whose model has the pretext tasks of its stage and those before
        stages = list(pretrain)[:index + 1]
        config = Config(model="AdaptSSR", dataset="tiny", config_dict={**config_dict, "pretrain_stages": stages})
        init_seed(config["seed"], config["reproducibility"])
        data = create_dataset(config)
        train_set, _ = data.build()
        model = AdaptSSR(config, train_set)
        expected = model.state_dict()
        path = Path(summary.checkpoint)
        assert path.name == f"{stage}.pth" and path.parent.parent.parent == run_dir / "units"
        assert run_dir.parent == Path(config_dict["checkpoint_dir"])  # the run's own folder under checkpoint_dir
        state = load_checkpoint(path)
        plain_state = torch.load(path, weights_only=True)
        assert set(plain_state) == set(state)
        assert state["stage"] == stage and state["model"] == "AdaptSSR"
        assert state["epoch"] == summary.best_epoch
        assert state["valid_result"] == pytest.approx(summary.valid)
        assert {k: tuple(v.shape) for k, v in state["state_dict"].items()} == {
            k: tuple(v.shape) for k, v in expected.items()
        }
        model.load_state_dict(state["state_dict"])  # strict
        cfg = state["config"]
        assert type(cfg) is dict and cfg["model"] == "AdaptSSR" and cfg["dataset"] == "tiny"
        assert cfg["MODEL_TYPE"] == "SEQUENTIAL" and cfg["mlm_epochs"] == E2E_SETTINGS["mlm_epochs"]
        vocabulary = state["item_vocabulary"]
        assert vocabulary["[PAD]"] == 0
        assert set(vocabulary) == raw_items | {"[PAD]"}
        assert sorted(vocabulary.values()) == list(range(model.n_items))  # the mask token (n_items) is not an item
        assert all(vocabulary[t] == data.token2id(data.iid_field, t) for t in raw_items)
        states[stage] = state
    # the ranking stage trained on from the MLM weights: the two checkpoints differ
    assert not torch.equal(
        states["mlm"]["state_dict"]["user_model.pooling.query"], states["ssr"]["state_dict"]["user_model.pooling.query"]
    )
    assert states["mlm"]["item_vocabulary"] == states["ssr"]["item_vocabulary"]


def test_load_checkpoint_rejects_other_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "missing.pth")
    torch.save({"state_dict": {}}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="not a recbole-adaptssr checkpoint"):
        load_checkpoint(tmp_path / "other.pth")


# ------------------------------------------------------------------------------------------- stage selection
def test_skipping_mlm_writes_only_the_ranking_checkpoint(tiny_config):
    result = run_adaptssr("tiny", config_dict={**tiny_config, "pretrain_stages": ["ssr"], "ssr_epochs": 1})
    assert list(result["pretrain"]) == ["ssr"]
    assert [p.name for p in Path(result["run_dir"]).glob("units/*/pretrain/*.pth")] in (["ssr.pth", "ssr.last.pth"],
                                                                                      ["ssr.last.pth", "ssr.pth"])
    assert load_checkpoint(result["pretrain"]["ssr"].checkpoint)["stage"] == "ssr"


def test_unknown_stage_is_rejected(tiny_config):
    with pytest.raises(ValueError, match="unknown pretext task 'contrastive' in pretrain_stages"):
        run_adaptssr("tiny", config_dict={**tiny_config, "pretrain_stages": ["mlm", "contrastive"]})
    saved = Path(tiny_config["checkpoint_dir"])
    assert not saved.exists() or not any(saved.iterdir())  # rejected before any stage ran


# ------------------------------------------------------------------------------------------- lone leftover batch
def test_lone_leftover_batch_in_ranking_stage(tiny_config):
    """108 training sequences in batches of 107: the last batch holds one sequence (no in-batch negatives)."""
    result = run_adaptssr(
        "tiny",
        config_dict={**tiny_config, "pretrain_stages": ["ssr"], "ssr_epochs": 1, "train_batch_size": 107},
    )
    history = result["pretrain"]["ssr"].history
    assert len(history) == 1
    assert math.isfinite(history[0]["train_loss"]) and history[0]["train_loss"] > 0


def test_single_sequence_batch_contributes_zero_loss(tiny_config):
    config = Config(model="AdaptSSR", dataset="tiny", config_dict={**tiny_config, "train_stage": "ssr"})
    init_seed(config["seed"], config["reproducibility"])
    train_set, _ = create_dataset(config).build()
    model = AdaptSSR(config, train_set).train()
    one = train_set.inter_feat[torch.tensor([0])]
    with pytest.raises(ValueError, match="at least 2"):  # why the guard is needed: the ranking loss needs B >= 2
        model.pretext["ssr"].loss(model.user_model, one[model.ITEM_SEQ], one[model.ITEM_SEQ_LEN])
    loss = model.calculate_loss(one)
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    two = model.calculate_loss(train_set.inter_feat[torch.tensor([0, 1])])
    assert two.item() > 0


def test_default_adaptive_ranking_lowers_its_loss_and_logs_the_collapse(tmp_path, caplog):
    """The paper's default (adaptive per-sample lambda after the MLM warm-up) on the tiny data: the ranking stage
    lowers its own validation loss, the fusion coefficient is a mean of Eq. 7 values in [0, 1], and the
    near-collapse of views after MLM (the task's check_start) is reported as a warning, not silently."""
    data_path = tmp_path / "adaptive-data"
    write_tiny_dataset(data_path, n_users=E2E_USERS)
    config_dict = {**tiny_settings(data_path, tmp_path), **E2E_SETTINGS,
                   "ssr_lambda_mode": "adaptive", "ssr_epochs": 6, "state": "INFO"}
    with caplog.at_level("WARNING"):
        ssr = run_adaptssr("tiny", config_dict=config_dict)["pretrain"]["ssr"]
    best, initial = ssr.valid, ssr.initial
    assert best["loss"] < initial["loss"]
    assert all(0.0 <= h["lambda"] <= 1.0 for h in ssr.history)
    collapsed = initial["lambda"] < 0.05
    assert any("mean lambda" in r.getMessage() for r in caplog.records) == collapsed


# ------------------------------------------------------------------------------------------- converged warm-up (issue 8)
def planted_settings(tmp_path, **extra):
    """A small signal-bearing data set (scripts/generate_synthetic.py: latent topics, Zipf popularity) and fast
    settings; unlike the tiny clustered data its item popularity is skewed, so the popularity baseline is real."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    from generate_synthetic import generate

    generate(tmp_path / "data", "syn", users=400, items=300, targets=50, topics=8, min_len=10, max_len=40,
             tasks="age", seed=3)
    return {**tiny_settings(tmp_path / "data", tmp_path), "MAX_ITEM_LIST_LENGTH": 40, "hidden_size": 64,
            "inner_size": 128, "downstream_tasks": [], "state": "INFO", **extra}


def test_default_warm_up_beats_popularity_and_the_ranking_stage_starts_uncollapsed(tmp_path, caplog):
    """The MLM stage with its default settings (release: dropout 0.5, mask ratio 0.3, tied head; patience 10 that
    does not count on the popularity plateau) on a small planted data set ends above the popularity baseline in
    hit@10 and loss, and the ranking stage that follows starts with a mean lambda above 0.05 (no warning). The
    learning rate is the embedded ml-100k's 2e-3 (the release's 5e-4 needs ~4x the epochs: too slow for a test)."""
    config_dict = planted_settings(tmp_path, mlm_epochs=80, mlm_learning_rate=0.002, ssr_epochs=1)
    with caplog.at_level("WARNING"):
        out = run_adaptssr("syn", config_dict)
    mlm, ssr = out["pretrain"]["mlm"], out["pretrain"]["ssr"]
    assert mlm.valid["hit@10"] > mlm.valid["pop_hit@10"] + 0.02, mlm.valid
    assert mlm.valid["loss"] < mlm.valid["pop_loss"] - 0.05, mlm.valid
    assert ssr.initial["lambda"] > 0.05, ssr.initial
    messages = [r.getMessage() for r in caplog.records]
    assert not any("mean lambda" in m or "popularity baseline" in m for m in messages)


def test_an_unconverged_warm_up_is_reported_and_not_stopped_on_the_plateau(tmp_path, caplog):
    """A warm-up far too slow to leave the popularity plateau: early stopping (patience 1) does not end it there,
    only mlm_epochs does, and the end warns that the baseline was not beaten."""
    config_dict = planted_settings(tmp_path, mlm_epochs=4, mlm_stopping_step=1, mlm_learning_rate=1e-12,
                                   pretrain_stages=["mlm"])
    stopped = run_adaptssr("syn", {**config_dict, "mlm_stop_on_plateau": True})["pretrain"]["mlm"]
    assert len(stopped.history) == 2  # the loss does not move: patience 1 ends the stage after 2 epochs ...
    with caplog.at_level("WARNING"):
        mlm = run_adaptssr("syn", config_dict)["pretrain"]["mlm"]
    assert len(mlm.history) == 4  # ... but not on the popularity plateau by default
    assert mlm.valid["hit@10"] <= mlm.valid["pop_hit@10"] or mlm.valid["loss"] >= mlm.valid["pop_loss"]
    assert any("has not beaten the popularity baseline" in r.getMessage() for r in caplog.records)
