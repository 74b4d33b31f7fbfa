"""Stage checkpoints that load with ``torch.load(..., weights_only=True)``.

A checkpoint holds only tensors and plain Python values: the model's state dict, the stage that produced it,
the plain-typed settings, the item vocabulary (token -> id, so a later fine-tune on other atomic files can
align ids) and the validation result of the kept epoch.
"""

from __future__ import annotations

import os

import torch

from recbole_adaptssr.compat import plain

FORMAT_VERSION = 1


def save_checkpoint(path, model, stage: str, config, item_vocabulary, valid_result=None, epoch=None) -> str:
    """Write a stage checkpoint to ``path`` (folders created) and return the path."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    state = {
        "format_version": FORMAT_VERSION,
        "model": type(model).__name__,
        "stage": stage,
        "epoch": epoch,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "config": plain(config),
        "item_vocabulary": {str(token): index for index, token in enumerate(item_vocabulary)},
        "valid_result": plain(valid_result),
    }
    torch.save(state, path)
    return path


def load_checkpoint(path, map_location="cpu") -> dict:
    """Read a checkpoint written by :func:`save_checkpoint`, always with ``weights_only=True``."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    state = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(state, dict) or state.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path} is not a recbole-adaptssr checkpoint (format_version {FORMAT_VERSION})")
    return state
