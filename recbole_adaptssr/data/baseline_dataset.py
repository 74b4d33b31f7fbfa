"""Data of RecBole's own recommenders run as baselines on a recommendation task (docs/recbole-baselines.md).

One item vocabulary serves the whole baseline run of a data set: the task's target items first, with exactly the
ids AdaptSSR's task data set gives them (RecBole's remapping of the task file), then every behaviour item of the
behaviour log ``NAME.inter`` (all users) that is not a target. ``baseline_item_domains`` says what a behaviour
token means:

* ``shared`` (ml-100k: behaviours and targets are the same movies): a behaviour token equal to a target token IS
  that target item (one id, one embedding row);
* ``separate`` (TTL click/like: targets are their own item domain and their integer tokens collide with behaviour
  tokens by accident): behaviours get ids of their own after the targets, never a target's.

Every id past the targets (``candidate_item_num``) is a behaviour-only item: :class:`~recbole_adaptssr.trainer.TaskTrainer`
never ranks it, so every model ranks exactly AdaptSSR's candidates.

* :class:`BaselineTaskDataset`: the task data set (AdaptSSR's split, behaviour sequences, evaluation) in that
  vocabulary, with every user of the behaviour log in its user vocabulary (task users keep their ids).
* :func:`behaviour_interactions` / :func:`with_behaviours`: the behaviour log as (user, item) rows in those ids,
  joined to a task training split: what RecBole's general recommenders train on.
* :class:`BehaviourSequenceDataset`: RecBole's ``SequentialDataset`` of ``NAME.inter`` in the same item ids, for
  the sequential recommenders' next-item pre-training.

Rows of the behaviour log that equal a (user, target) pair of the task file (any split) are left out of what the
baselines train on besides the task's own training split (with ``shared`` domains only): a valid/test user's
targets are never seen in training. The converters already hold the targets out of ``NAME.inter``; the count of
such rows is logged.
"""

from __future__ import annotations

import os
from logging import getLogger

import numpy as np
import pandas as pd
import torch
from recbole.data.dataset import SequentialDataset
from recbole.data.interaction import Interaction

from recbole_adaptssr.data.task_dataset import AdaptSSRTaskDataset

DOMAINS = ("shared", "separate")
BEHAVIOUR_PREFIX = "behaviour:"  # token prefix of behaviour items when they are a domain of their own


def item_domains(config) -> str:
    value = config["baseline_item_domains"]
    if value not in DOMAINS:
        raise ValueError(f"baseline_item_domains must be one of {list(DOMAINS)}, got {value!r}")
    return value


def _pair_keys(users, items) -> pd.Index:
    return pd.Index(pd.Series(users, dtype=str).to_numpy() + "\x1f" + pd.Series(items, dtype=str).to_numpy())


def task_pair_keys(folder: str, name: str, task: str) -> pd.Index:
    """``user \\x1f target`` keys of every row of the task file (every split)."""
    frame = pd.read_csv(os.path.join(folder, f"{name}.{task}"), sep="\t", dtype=str, keep_default_na=False)
    columns = {c.split(":")[0]: c for c in frame.columns}
    return _pair_keys(frame[columns["user_id"]], frame[columns["target_id"]])


class BaselineTaskDataset(AdaptSSRTaskDataset):
    """AdaptSSR's task data set (same split, same target ids, same behaviour sequences, same evaluation) with one
    item vocabulary for targets and behaviours (see the module docstring) and every behaviour-log user."""

    def _remap_ID_all(self):
        super()._remap_ID_all()
        log = self.task_data.behaviours
        self.domains = item_domains(self.config)
        self.candidate_item_num = len(self.field2id_token[self.iid_field])  # [PAD] + the task's targets
        raw = pd.unique(log["item"])
        if self.domains == "separate":
            tokens = np.array([BEHAVIOUR_PREFIX + t for t in raw], dtype=object)
        else:
            tokens = raw
        self.behaviour_token_of = dict(zip(raw, tokens))  # raw behaviour token -> item token of this vocabulary
        self._append_tokens(self.iid_field, tokens)
        self._append_tokens(self.uid_field, pd.unique(log["user"]))
        token2id = self.field2token_id[self.iid_field]
        self.item_vocabulary = {raw: token2id[token] for raw, token in self.behaviour_token_of.items()}

    def _resolve_vocabulary(self, items) -> dict:
        """Raw behaviour token -> item id (the behaviour sequences AdaptSSRTaskDataset builds use it)."""
        return self.item_vocabulary

    def item_tokens(self) -> np.ndarray:
        """Item token of every id (index = id; 0 is padding)."""
        return np.asarray(self.field2id_token[self.iid_field], dtype=object)

    def shared_targets(self) -> int:
        """Number of target items that are also behaviour items (0 with separate domains)."""
        targets = set(self.item_tokens()[1:self.candidate_item_num])
        return sum(1 for token in self.behaviour_token_of.values() if token in targets)


def behaviour_interactions(dataset: BaselineTaskDataset) -> tuple[Interaction, int]:
    """The behaviour log as (user, item) rows in ``dataset``'s ids (file order), without the rows that equal a
    (user, target) pair of the task file when domains are shared; returns the rows and how many were left out."""
    log = dataset.task_data.behaviours
    left_out = np.zeros(len(log), dtype=bool)
    if dataset.domains == "shared":
        keys = task_pair_keys(dataset.task_data.folder, dataset.task_data.name, dataset.task)
        left_out = _pair_keys(log["user"], log["item"]).isin(keys)
    kept = log[~left_out]
    users = kept["user"].map(dataset.field2token_id[dataset.uid_field]).to_numpy(dtype=np.int64)
    items = kept["item"].map(dataset.item_vocabulary).to_numpy(dtype=np.int64)
    rows = Interaction({dataset.uid_field: torch.from_numpy(users), dataset.iid_field: torch.from_numpy(items)})
    return rows, int(left_out.sum())


def with_behaviours(train_split, behaviours: Interaction):
    """A copy of the task's training split whose interactions are its (user, target) rows followed by the
    behaviour rows: the training data of RecBole's general recommenders (the split object itself is unchanged,
    so the evaluation's history masks, built from it, stay AdaptSSR's)."""
    fields = [train_split.uid_field, train_split.iid_field]
    extra = [f for f in train_split.inter_feat.columns if f not in fields]
    if extra:
        raise ValueError(f"a recommendation task's training rows hold only {fields}; found also {extra}")
    inter = train_split.inter_feat
    rows = Interaction({f: torch.cat([inter[f], behaviours[f].to(inter[f].dtype)]) for f in fields})
    return train_split.copy(rows)


class BehaviourSequenceDataset(SequentialDataset):
    """RecBole's ``SequentialDataset`` of the behaviour log ``NAME.inter`` with item ids taken from a baseline
    vocabulary (``item_tokens``: token of every id; ``behaviour_ids``: raw behaviour token -> id), so a sequential
    recommender pre-trained on it loads into the same model on the task. Rows whose (user, item) is in
    ``left_out_pairs`` (``user \\x1f item`` keys) are dropped after loading."""

    def __init__(self, config, item_tokens, behaviour_ids: dict, left_out_pairs=None):
        self._item_tokens = np.asarray(item_tokens, dtype=object)
        self._behaviour_ids = behaviour_ids
        self._left_out_pairs = left_out_pairs
        self.left_out_rows = 0
        super().__init__(config)

    def _load_data(self, token, dataset_path):
        super()._load_data(token, dataset_path)
        if self._left_out_pairs is not None and len(self._left_out_pairs):
            keys = _pair_keys(self.inter_feat[self.uid_field], self.inter_feat[self.iid_field])
            drop = keys.isin(self._left_out_pairs)
            self.left_out_rows = int(drop.sum())
            if self.left_out_rows:
                self.inter_feat = self.inter_feat[~drop].reset_index(drop=True)

    def _remap_ID_all(self):
        super()._remap_ID_all()
        old_tokens = self.field2id_token[self.iid_field]
        missing = [t for t in old_tokens[1:] if t not in self._behaviour_ids]
        if missing:
            raise ValueError(f"{len(missing)} behaviour item(s) of {self.dataset_name}.inter are not in the baseline "
                             f"vocabulary (e.g. {missing[:5]})")
        lookup = np.array([0] + [self._behaviour_ids[t] for t in old_tokens[1:]], dtype=np.int64)
        self.inter_feat[self.iid_field] = lookup[self.inter_feat[self.iid_field].to_numpy()]
        self.field2id_token[self.iid_field] = self._item_tokens
        self.field2token_id[self.iid_field] = {t: i for i, t in enumerate(self._item_tokens)}


def log_vocabulary(dataset: BaselineTaskDataset) -> None:
    logger = getLogger()
    n_targets = dataset.candidate_item_num - 1
    n_items = len(dataset.item_tokens()) - 1
    logger.info(f"baseline vocabulary ({dataset.domains} domains): {n_targets} target items (the candidates), "
                f"{n_items - n_targets} behaviour-only items; {dataset.shared_targets()} targets are also behaviours")
