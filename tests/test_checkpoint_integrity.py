"""Checkpoints are written atomically and verified when read: a save that fails midway leaves the previous file
loadable and names the path; empty, truncated, byte-flipped and altered files are rejected with the path and the
reason; good files still load with ``torch.load(weights_only=True)`` and through RecBole's own readers."""

from __future__ import annotations

import errno
import hashlib
import io
import os
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from recbole_adaptssr.checkpoint import (CHECKSUM_KEY, CheckpointError, CheckpointWriteError, content_digest,
                                         load_checkpoint, save_checkpoint, save_payload, verify_checkpoint)
from recbole_adaptssr.compat import save_trainer_checkpoint
from recbole_adaptssr.experiment.results import atomic_write_text

CONFIG = {"model": "Tiny", "seed": 1, "hidden_size": 4, "task_split": [0.6, 0.2, 0.2]}


class Tiny(torch.nn.Module):
    def __init__(self, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.linear = torch.nn.Linear(8, 4)
        self.register_buffer("counts", torch.arange(5))

    def other_parameter(self):
        return {}


def write_stage_checkpoint(path, seed=0):
    return save_checkpoint(str(path), Tiny(seed), "ssr", CONFIG, ["[PAD]", "i1", "i2"], {"loss": 0.5}, 3,
                           summary={"valid_metric": "loss", "initial_valid_result": {"loss": 0.9},
                                    "history": [{"epoch": 0, "loss": 0.5}]})


def fake_trainer(seed=0):
    """What ``save_trainer_checkpoint`` reads of a RecBole trainer."""
    model = Tiny(seed)
    optimizer = torch.optim.Adam(model.parameters())
    model.linear(torch.ones(2, 8)).sum().backward()
    optimizer.step()
    logged = []
    return SimpleNamespace(config={"single_spec": True, "local_rank": 0, "model": "Tiny", "seed": seed},
                           cur_step=7, best_valid_score=0.25, model=model, optimizer=optimizer,
                           logger=SimpleNamespace(info=logged.append))


def leftovers(folder: Path) -> list:
    return sorted(p.name for p in folder.iterdir() if ".tmp-" in p.name)


# ------------------------------------------------------------------------------------------- good files
def test_stage_checkpoint_carries_a_checksum_and_loads_weights_only(tmp_path):
    path = write_stage_checkpoint(tmp_path / "ssr.pth")
    plain = torch.load(path, weights_only=True)  # the file itself, no helper
    assert plain[CHECKSUM_KEY]["algorithm"] == "sha256"
    assert plain[CHECKSUM_KEY]["digest"] == content_digest(plain)
    state = load_checkpoint(path)
    assert torch.equal(state["state_dict"]["linear.weight"], Tiny(0).linear.weight.detach())
    assert state["summary"]["history"] == [{"epoch": 0, "loss": 0.5}] and state["epoch"] == 3
    assert leftovers(tmp_path) == []


def test_trainer_checkpoint_keeps_recboles_keys_and_a_checksum(tmp_path):
    path = tmp_path / "run.pth"
    save_trainer_checkpoint(fake_trainer(), 4, str(path))
    state = torch.load(path, weights_only=True)
    recbole_keys = {"config", "epoch", "cur_step", "best_valid_score", "state_dict", "other_parameter", "optimizer"}
    assert recbole_keys < set(state)
    assert state["epoch"] == 4 and state["config"]["model"] == "Tiny"
    assert verify_checkpoint(path, require_checksum=True)["cur_step"] == 7


def test_the_digest_covers_tensor_bytes_values_and_keys():
    base = {"w": torch.zeros(3), "lr": 0.1, "names": ["a", "b"]}
    digest = content_digest(base)
    assert content_digest({**base, "w": torch.tensor([0.0, 0.0, 1e-30])}) != digest
    assert content_digest({**base, "w": torch.zeros(3, dtype=torch.float64)}) != digest  # dtype
    assert content_digest({**base, "w": torch.zeros(1, 3)}) != digest  # shape
    assert content_digest({**base, "lr": 0.1000001}) != digest
    assert content_digest({**base, "names": ["b", "a"]}) != digest
    assert content_digest({"W": base["w"], "lr": 0.1, "names": ["a", "b"]}) != digest
    assert content_digest(dict(reversed(list(base.items())))) == digest  # key order does not matter


# ------------------------------------------------------------------------------------------- damaged files
def middle_of_largest_tensor(path) -> int:
    """Byte offset of the middle of the largest tensor storage inside a torch zip archive."""
    with zipfile.ZipFile(path) as archive:
        info = max((i for i in archive.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
        with open(path, "rb") as f:
            f.seek(info.header_offset + 26)
            name_len, extra_len = int.from_bytes(f.read(2), "little"), int.from_bytes(f.read(2), "little")
        return info.header_offset + 30 + name_len + extra_len + info.file_size // 2


def damage(path: Path, how: str) -> None:
    data = bytearray(path.read_bytes())
    if how == "empty":
        data = bytearray()
    elif how == "truncated":
        data = data[: len(data) // 2]
    elif how == "one byte short":
        data = data[:-1]
    elif how == "flipped tensor byte":
        data[middle_of_largest_tensor(path)] ^= 0x01  # torch loads this silently: only the checksum notices
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("how,reason", [
    ("empty", r"the file is empty \(0 bytes\)"),
    ("truncated", r"not a complete torch zip archive \(\d+ bytes\): truncated"),
    ("one byte short", r"not a complete torch zip archive|unreadable"),
    ("flipped tensor byte", r"contents altered or corrupted: their SHA-256 is"),
])
@pytest.mark.parametrize("writer", ["stage", "trainer"])
def test_damaged_checkpoints_are_rejected_with_path_and_reason(tmp_path, how, reason, writer):
    path = tmp_path / f"{writer}.pth"
    if writer == "stage":
        write_stage_checkpoint(path)
    else:
        save_trainer_checkpoint(fake_trainer(), 1, str(path))
    verify_checkpoint(path, require_checksum=True)  # intact before
    damage(path, how)
    with pytest.raises(CheckpointError, match=reason) as caught:
        load_checkpoint(path) if writer == "stage" else verify_checkpoint(path)
    assert str(path) in str(caught.value) and caught.value.path == str(path)
    assert not isinstance(caught.value, EOFError)


def test_no_single_flipped_byte_gives_silently_different_contents(tmp_path):
    """Flip one bit at 400 spread offsets: each damaged file is either rejected (CheckpointError naming it) or
    loads with exactly the original contents (a flip in archive metadata torch does not read)."""
    path = write_stage_checkpoint(tmp_path / "ssr.pth")
    original = path_bytes = Path(path).read_bytes()
    reference = load_checkpoint(path)
    rejected = 0
    for offset in range(0, len(path_bytes), max(1, len(path_bytes) // 400)):
        data = bytearray(original)
        data[offset] ^= 0x10
        Path(path).write_bytes(bytes(data))
        try:
            state = load_checkpoint(path)
        except CheckpointError as error:
            assert str(path) in str(error)
            rejected += 1
            continue
        assert content_digest(state) == content_digest(reference), offset
    assert rejected > 100  # most bytes matter


def test_a_re_saved_edit_keeps_the_old_checksum_and_is_rejected(tmp_path):
    path = write_stage_checkpoint(tmp_path / "ssr.pth")
    state = torch.load(path, weights_only=True)
    state["state_dict"]["linear.bias"][0] += 1.0  # edited and saved with plain torch.save: the checksum is stale
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="contents altered or corrupted"):
        load_checkpoint(path)


@pytest.mark.parametrize("version", [3, 2, 1])
def test_a_checkpoint_of_our_format_without_its_checksum_is_refused_whatever_its_version(tmp_path, version):
    """No downgrade path: removing the checksum and writing format_version 1 (before checksums) loads nothing."""
    path = tmp_path / "ssr.pth"
    state = torch.load(write_stage_checkpoint(path), weights_only=True)
    del state[CHECKSUM_KEY]
    state["state_dict"]["linear.bias"][0] += 1.0  # tampered weights
    torch.save({**state, "format_version": version}, path)
    with pytest.raises(CheckpointError, match=r"ssr\.pth: has no checksum.*format_version 1, before checksums, is "
                                              r"not read"):
        load_checkpoint(path)
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "missing.pth")


def test_a_stage_checkpoint_records_its_data_and_vocabulary(tmp_path):
    folder = tmp_path / "d"
    folder.mkdir()
    (folder / "d.inter").write_text("user_id:token\titem_id:token\ttimestamp:float\nu1\ti1\t1\n")
    config = {**CONFIG, "data_path": str(folder), "dataset": "d"}
    path = save_checkpoint(str(tmp_path / "ssr.pth"), Tiny(), "ssr", config, ["[PAD]", "i1"])
    data = load_checkpoint(path)["data"]
    content = (folder / "d.inter").read_bytes()
    assert data["behaviour_log"] == {"file": "d.inter", "size": len(content),
                                     "blake2b": hashlib.blake2b(content, digest_size=16).hexdigest()}
    assert data["vocabulary"]["tokens"] == 2


@pytest.fixture
def signing(monkeypatch):
    """The signing key of this process, as a Config or the environment sets it; reset afterwards."""
    from recbole_adaptssr import checkpoint

    monkeypatch.delenv(checkpoint.HMAC_KEY_ENV, raising=False)
    yield checkpoint
    checkpoint.set_signing_key(None)


def test_a_signing_key_signs_what_is_written_and_refuses_unsigned_or_foreign_signatures(tmp_path, signing,
                                                                                       monkeypatch):
    unsigned = write_stage_checkpoint(tmp_path / "unsigned.pth")
    monkeypatch.setenv(signing.HMAC_KEY_ENV, "shared-secret")
    signed = write_stage_checkpoint(tmp_path / "signed.pth")
    assert torch.load(signed, weights_only=True)["signature"]["algorithm"] == "hmac-sha256"
    assert load_checkpoint(signed)["stage"] == "ssr"
    with pytest.raises(CheckpointError, match=r"unsigned\.pth: is not signed, and a signing key is set"):
        load_checkpoint(unsigned)
    # an edit re-checksummed by someone without the key: the checksum matches, the signature does not
    state = torch.load(signed, weights_only=True)
    state["state_dict"]["linear.bias"][0] += 1.0
    state[CHECKSUM_KEY]["digest"] = content_digest(state)
    torch.save(state, signed)
    with pytest.raises(CheckpointError, match=r"signed\.pth: its signature does not match the signing key"):
        load_checkpoint(signed)
    signing.set_signing_key("another-key")  # the setting checkpoint_hmac_key wins over the environment
    with pytest.raises(CheckpointError, match="signature does not match"):
        load_checkpoint(write_stage_checkpoint(tmp_path / "env-signed.pth") and signed)
    monkeypatch.delenv(signing.HMAC_KEY_ENV)
    signing.set_signing_key(None)
    assert load_checkpoint(tmp_path / "env-signed.pth")["stage"] == "ssr"  # no key: the checksum alone


def test_the_signing_key_setting_is_never_logged_recorded_or_saved(tiny_data_path, signing):
    from recbole_adaptssr.compat import plain
    from recbole_adaptssr.config import Config

    config = Config(model="AdaptSSR", dataset="tiny", config_dict={"data_path": str(tiny_data_path),
                                                                  "checkpoint_hmac_key": "s3cret", "state": "ERROR"})
    assert signing.signing_key() == b"s3cret"
    assert "s3cret" not in str(config) and "s3cret" not in repr(plain(config))
    assert "checkpoint_hmac_key" not in config.user_config_dict and config["checkpoint_hmac_key"] is None


# ------------------------------------------------------------------------------------------- failed writes
def failing_torch_save(after_bytes: int, error=None):
    """``torch.save`` that writes the first ``after_bytes`` bytes of the real archive, then fails (disk full)."""
    real = torch.save

    def save(obj, f, *args, **kwargs):
        buffer = io.BytesIO()
        real(obj, buffer, *args, **kwargs)
        f.write(buffer.getvalue()[:after_bytes])
        raise error or OSError(errno.ENOSPC, "No space left on device")

    return save


@pytest.mark.parametrize("after_bytes", [0, 100, 1000])
def test_a_stage_checkpoint_save_failing_midway_keeps_the_previous_file(tmp_path, monkeypatch, after_bytes):
    path = tmp_path / "ssr.pth"
    write_stage_checkpoint(path, seed=0)
    before = path.read_bytes()
    monkeypatch.setattr(torch, "save", failing_torch_save(after_bytes))
    with pytest.raises(CheckpointWriteError, match="No space left on device") as caught:
        write_stage_checkpoint(path, seed=1)
    assert str(path) in str(caught.value) and isinstance(caught.value, OSError)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert torch.equal(load_checkpoint(path)["state_dict"]["linear.weight"], Tiny(0).linear.weight.detach())
    assert leftovers(tmp_path) == []


def test_a_trainer_checkpoint_save_failing_midway_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "best.pth"
    save_trainer_checkpoint(fake_trainer(0), 1, str(path))
    before = path.read_bytes()
    monkeypatch.setattr(torch, "save", failing_torch_save(500))
    with pytest.raises(CheckpointWriteError) as caught:
        save_trainer_checkpoint(fake_trainer(1), 2, str(path))
    assert f"could not write checkpoint {path}" in str(caught.value)
    monkeypatch.undo()
    assert path.read_bytes() == before and verify_checkpoint(path)["epoch"] == 1
    assert leftovers(tmp_path) == []


def test_a_failing_rename_or_an_interrupt_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "ssr.pth"
    write_stage_checkpoint(path, seed=0)
    before = path.read_bytes()

    def refuse(src, dst):
        raise PermissionError(errno.EACCES, "Permission denied", dst)

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(CheckpointWriteError, match="Permission denied") as caught:
        write_stage_checkpoint(path, seed=1)
    assert caught.value.path == str(path)
    monkeypatch.undo()
    monkeypatch.setattr(torch, "save", failing_torch_save(200, KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):  # not wrapped: Ctrl-C stays Ctrl-C
        write_stage_checkpoint(path, seed=1)
    monkeypatch.undo()
    assert path.read_bytes() == before and leftovers(tmp_path) == []


def test_an_unwritable_folder_is_an_error_naming_the_path(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the folder should be")
    with pytest.raises(CheckpointWriteError, match="not-a-folder/ssr.pth"):
        save_payload({"x": 1}, blocker / "ssr.pth")


def test_atomic_text_write_failing_keeps_the_previous_file_and_names_the_path(tmp_path, monkeypatch):
    path = tmp_path / "results.md"
    atomic_write_text(str(path), "old table\n")

    def refuse(src, dst):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError, match=f"could not write {path}: OSError: .*Input/output error"):
        atomic_write_text(str(path), "new table\n")
    monkeypatch.undo()
    assert path.read_text() == "old table\n" and leftovers(tmp_path) == []


# ------------------------------------------------------------------------------------------- RecBole's readers
def test_recboles_readers_accept_our_checkpoints_and_our_trainer_rejects_damaged_ones(tiny_config, tiny_data_path):
    """A RecBole model (Pop) trained through our entry point: RecBole's ``evaluate(load_best_model=True)`` ran on
    the checksummed checkpoint, ``load_data_and_model`` reads it; our TaskTrainer's ``evaluate`` and
    ``resume_checkpoint`` verify it first and name a damaged file."""
    from recbole.quick_start import load_data_and_model

    from recbole_adaptssr.config import Config
    from recbole_adaptssr.quick_start import run
    from recbole_adaptssr.trainer import TaskTrainer

    out = run("Pop", "tiny", config_dict={**tiny_config, "epochs": 1, "state": "ERROR"})
    checkpoint = Path(out["checkpoint"])
    assert 0.0 < out["test_result"]["ndcg@10"] <= 1.0
    assert verify_checkpoint(checkpoint, require_checksum=True)["config"]["model"] == "Pop"
    saved, model, dataset, train_data, valid_data, test_data = load_data_and_model(str(checkpoint))
    assert saved["model"] == "Pop" and type(model).__name__ == "Pop" and model.item_cnt.sum() > 0

    trainer = TaskTrainer(Config(model="Pop", dataset="tiny", config_dict={**tiny_config, "epochs": 1}), model)
    trainer.resume_checkpoint(checkpoint)  # RecBole's own resume, on a verified file
    assert trainer.start_epoch == torch.load(checkpoint, weights_only=True)["epoch"] + 1
    assert trainer.evaluate(test_data, load_best_model=True)["ndcg@10"] == pytest.approx(out["test_result"]["ndcg@10"])
    damage(checkpoint, "flipped tensor byte")
    with pytest.raises(CheckpointError, match=f"{checkpoint}: contents altered"):
        trainer.evaluate(test_data, load_best_model=True)
    with pytest.raises(CheckpointError, match="contents altered"):
        trainer.resume_checkpoint(checkpoint)
