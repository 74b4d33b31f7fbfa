"""Fig. 5 (scripts/plot_similarity.py, recbole_adaptssr.analysis.similarity): the similarities written to CSV are
those of a direct computation on the same users with a checkpoint pre-trained here, and the figure is a PNG."""

from __future__ import annotations

import csv
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from recbole_adaptssr.analysis import figures, similarity
from recbole_adaptssr.augment.sequence import crop, mask
from recbole_adaptssr.config import Config
from recbole_adaptssr.encoder.user_model import UserModel
from recbole_adaptssr.experiment import pretrain
from task_data import base_config, one_torch_thread, write_task_dataset

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """A tiny MLM + SSR pre-training (one epoch each): both stages' checkpoints, the data and the settings."""
    tmp = tmp_path_factory.mktemp("similarity")
    data = write_task_dataset(tmp / "data", "tt", tasks=("cls",), n_users=40)
    settings = base_config(data, tmp, mlm_epochs=1, ssr_epochs=1, pretrain_valid_ratio=0.2, pretrain_stages=["mlm", "ssr"])
    with pytest.MonkeyPatch.context() as mp, one_torch_thread():
        mp.chdir(tmp)
        mp.setattr(sys, "argv", ["pytest"])
        stages = pretrain(Config(model="AdaptSSR", dataset="tt", config_dict=settings), str(tmp / "run"))
    return {name: r.checkpoint for name, r in stages.items()}, data, settings


def direct(checkpoint, data, settings, users, others, operators=("mask", "crop"), ratio=0.6, seed=0):
    """The similarities computed here from the test's own record of the sequences and the raw checkpoint."""
    state = torch.load(checkpoint, weights_only=True)
    vocab = state["item_vocabulary"]
    max_len = settings["MAX_ITEM_LIST_LENGTH"]
    model = UserModel(n_items=len(vocab), max_seq_length=max_len, hidden_size=settings["hidden_size"],
                      n_layers=settings["n_layers"], n_heads=2, inner_size=settings["inner_size"])
    model.load_state_dict({k[len("user_model."):]: v for k, v in state["state_dict"].items()
                           if k.startswith("user_model.")})
    model.eval()

    def batch(names):
        seq = torch.zeros((len(names), max_len), dtype=torch.long)
        lengths = torch.zeros(len(names), dtype=torch.long)
        for row, user in enumerate(names):
            ids = [vocab.get(t, len(vocab)) for t in data.tokens_in_time_order(user)][-max_len:]
            seq[row, :len(ids)] = torch.tensor(ids)
            lengths[row] = len(ids)
        return seq, lengths

    seq, lengths = batch(users)
    generator = torch.Generator().manual_seed(seed)
    aug, aug_len = seq, lengths
    for op in operators:
        aug, aug_len = (mask(aug, aug_len, len(vocab), ratio, generator) if op == "mask"
                        else crop(aug, aug_len, ratio, generator))
    with torch.no_grad():
        u, u_aug, u_other = model(seq), model(aug), model(batch(others)[0])
    cos = torch.nn.functional.cosine_similarity
    return cos(u, u_aug).numpy(), cos(u, u_other).numpy()


def read_rows(path):
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def test_csv_numbers_match_a_direct_computation_on_the_same_users(checkpoints, tmp_path):
    paths, data, settings = checkpoints
    out = tmp_path / "out"
    with one_torch_thread():
        files = similarity.main(["--checkpoints", f"mlm={paths['mlm']}", f"ssr={paths['ssr']}", "--dataset", "tt",
                                 "--data_path", str(data.root), "--users", "25", "--seed", "3", "--out", str(out),
                                 "--no_figure"])
    rows = read_rows(files["csv"])
    assert {r["method"] for r in rows} == {"mlm", "ssr"} and len(rows) == 2 * 2 * 25
    users_of = {}
    for method in ("mlm", "ssr"):
        aug = [r for r in rows if (r["method"], r["kind"]) == (method, "augmented")]
        other = [r for r in rows if (r["method"], r["kind"]) == (method, "other_user")]
        users = [r["user"] for r in aug]
        users_of[method] = users
        assert len(set(users)) == 25 and set(users) <= set(data.users)
        assert [r["user"] for r in other] == users and all(r["other_user"] != r["user"] for r in other)
        expected_aug, expected_other = direct(paths[method], data, settings, users, [r["other_user"] for r in other],
                                              seed=3)
        assert [float(r["similarity"]) for r in aug] == pytest.approx(expected_aug, abs=1e-5)
        assert [float(r["similarity"]) for r in other] == pytest.approx(expected_other, abs=1e-5)
        # the views were augmented: not every original-vs-augmented similarity is 1
        assert min(expected_aug) < 0.999
        summary = {r["kind"]: r for r in read_rows(files["summary"]) if r["method"] == method}
        for kind, values in (("augmented", expected_aug), ("other_user", expected_other)):
            assert int(summary[kind]["n"]) == 25
            assert float(summary[kind]["mean"]) == pytest.approx(float(np.mean(values)), abs=1e-5)
            assert float(summary[kind]["std"]) == pytest.approx(statistics.stdev(map(float, values)), abs=1e-5)
            assert float(summary[kind]["median"]) == pytest.approx(float(np.median(values)), abs=1e-5)
    assert users_of["mlm"] == users_of["ssr"]  # the same users for every checkpoint
    assert "png" not in files and not (out / "similarity.png").exists()


def test_the_script_writes_a_png_with_one_panel_per_checkpoint(checkpoints, tmp_path):
    pytest.importorskip("matplotlib")
    paths, data, _ = checkpoints
    out = tmp_path / "fig"
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "plot_similarity.py"), "--checkpoints", f"mlm={paths['mlm']}",
         f"adaptssr={paths['ssr']}", "--dataset", "tt", "--data_path", str(data.root), "--users", "30",
         "--augment", "mask,crop", "--ratio", "0.6", "--out", str(out)],
        capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    png = out / "similarity.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from PIL import Image  # matplotlib depends on pillow

    with Image.open(png) as image:
        width, height = image.size
    assert width > 1.5 * height  # two panels side by side
    svg = (out / "similarity.svg").read_text(encoding="utf-8")
    assert svg.startswith("<?xml") and "<svg" in svg and svg.rstrip().endswith("</svg>")
    assert (out / "similarity.csv").is_file() and (out / "similarity_summary.csv").is_file()
    assert "adaptssr: augmented mean" in proc.stdout and not list(out.glob("*.tmp-*"))


def test_unknown_tokens_map_to_the_mask_id_and_users_keep_their_most_recent_behaviours(tmp_path):
    folder = tmp_path / "d"
    folder.mkdir()
    (folder / "d.inter").write_text("user_id:token\titem_id:token\ttimestamp:float\n"
                                    "b\tx\t5\na\tp\t3\na\tq\t1\na\tzzz\t2\nb\ty\t4\na\tp\t4\n", encoding="utf-8")
    log, users = similarity.read_user_log(str(tmp_path), "d")
    assert users == ["b", "a"]  # order of first appearance
    vocab = {"[PAD]": 0, "p": 1, "q": 2, "x": 3, "y": 4}
    names, seq, lengths = similarity.user_sequences(log, users, vocab, 3, ["a", "b"])
    assert names == ["a", "b"]
    # a: q(1) zzz(2) p(3) p(4) -> the 3 most recent: zzz p p; zzz is unknown -> the mask id 5
    assert seq.tolist() == [[5, 1, 1], [4, 3, 0]] and lengths.tolist() == [3, 2]
    assert similarity.sample_users(users, 10, 0) in (["a", "b"], ["b", "a"])
    pairs = similarity.other_users(5, 0)
    assert all(pairs != np.arange(5))


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(SystemExit, match="--checkpoints takes name=path"):
        similarity.main(["--checkpoints", "nopath", "--dataset", "tt", "--data_path", str(tmp_path)])
    with pytest.raises(ValueError, match="unknown augmentation operator 'shuffle'"):
        similarity.augment(torch.ones((1, 3), dtype=torch.long), torch.tensor([3]), ["shuffle"], 0.6, 9,
                           torch.Generator())
    with pytest.raises(ValueError, match="at least 2 users"):
        similarity.other_users(1, 0)
    assert figures.kde([0.5, 0.5], np.linspace(-1, 1, 5)) is None  # degenerate: no density
    density = figures.kde([0.1, 0.2, 0.4], np.linspace(-1, 1, 2001))
    assert float(np.trapezoid(density, np.linspace(-1, 1, 2001))) == pytest.approx(1.0, abs=1e-3)
