"""Downstream task data: the samples of one task file plus each user's behaviour sequence.

Atomic layout (see README "Data layout"): ``NAME.inter`` is the behaviour log
(``user_id:token item_id:token timestamp:float``); ``NAME.<task>`` holds the task's samples; ``NAME.tasks.json``
says each task's kind. The task samples become RecBole's interactions (user, label | target); the behaviour
sequence becomes a user feature ``<ITEM_ID_FIELD>_list`` (+ ``ITEM_LIST_LENGTH_FIELD``) joined into every batch.

Behaviour ids come from a vocabulary (token -> id): the pre-training checkpoint's, so pretrained embedding
rows land on the right tokens whatever order the fine-tune files list them in. Behaviours unseen in
pre-training map to the OOV id, which is the model's learned mask token (id = vocabulary size): "a behaviour
the model cannot identify". Without a checkpoint the vocabulary is built from the behaviour log. RecBole's
own sequential models (SASRec, ...) score their item table, so for them behaviours share the target vocabulary.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import torch
from recbole.data.dataset import Dataset
from recbole.data.interaction import Interaction
from recbole.utils import FeatureSource, FeatureType

from recbole_adaptssr.data import sequence_cache
from recbole_adaptssr.data.dataset import dropping_duplicates, recent_behaviours
from recbole_adaptssr.names import check_plain_name
from recbole_adaptssr.downstream.base import get_task_kind
from recbole_adaptssr.setting_errors import MissingFileError, SettingError

PAD = "[PAD]"


def read_task_manifest(folder: str, name: str) -> dict:
    """Return ``{task: {"kind": ..., ...}}`` from ``NAME.tasks.json`` of a converted data set. A missing manifest is
    a :class:`~recbole_adaptssr.setting_errors.MissingFileError` (also a ``FileNotFoundError``), one that cannot be
    used a :class:`~recbole_adaptssr.data.validation.DataError` naming it."""
    from recbole_adaptssr.data.validation import DataError

    path = os.path.join(folder, f"{name}.tasks.json")
    if not os.path.isfile(path):
        raise MissingFileError(
            f"{path} not found: a downstream data set needs the task manifest written by dataset_converters"
        )
    with open(path, encoding="utf-8") as f:
        try:
            tasks = json.load(f).get("tasks", {})
        except (json.JSONDecodeError, AttributeError) as error:
            raise DataError(path, None, f"not a task manifest ({error})") from None
    if not isinstance(tasks, dict) or not all(isinstance(info, dict) for info in tasks.values()):
        raise DataError(path, None, "\"tasks\" must map each task name to its description ({\"kind\": ...})")
    for task, info in tasks.items():
        try:
            check_plain_name(task, "task")  # it names a file beside the manifest, and the runs' files
            get_task_kind(info.get("kind"))
        except ValueError as error:
            raise DataError(path, None, f"task {task!r}: {error}") from None
    return tasks


class TaskData:
    """What every downstream run of a data set shares, read once per pipeline: the task manifest and the
    behaviour log (``NAME.inter``)."""

    def __init__(self, folder: str, name: str):
        self.folder, self.name = folder, name
        self.manifest = read_task_manifest(folder, name)
        self._behaviours = None
        self._sequence_logs = {}

    @property
    def behaviours(self) -> pd.DataFrame:
        """The behaviour log, read on first use (a pipeline that fine-tunes nothing never reads it)."""
        if self._behaviours is None:
            self._behaviours = read_behaviour_log(os.path.join(self.folder, f"{self.name}.inter"))
        return self._behaviours

    def sequence_log(self, cache_dir=None):
        """The behaviour log's cached per-user copy (:mod:`~recbole_adaptssr.data.sequence_cache`; built on first
        use), or None where it could differ from :attr:`behaviours`, which is then read instead."""
        if cache_dir not in self._sequence_logs:
            from recbole_adaptssr.data import sequence_cache

            self._sequence_logs[cache_dir] = sequence_cache.load_behaviour_log(
                os.path.join(self.folder, f"{self.name}.inter"), cache_dir)
        return self._sequence_logs[cache_dir]

    def kind(self, task: str):
        """The :class:`~recbole_adaptssr.downstream.base.TaskKind` of ``task``."""
        if task not in self.manifest:
            raise SettingError(f"unknown downstream task {task!r}; {self.name}.tasks.json has {sorted(self.manifest)}")
        return get_task_kind(self.manifest[task]["kind"])


def read_behaviour_log(path: str, user_field: str = "user_id", item_field: str = "item_id",
                       time_field: str = "timestamp") -> pd.DataFrame:
    """Read a behaviour ``.inter`` file as strings (user, item) and float time, in file order. A row whose user or
    item is empty or a word pandas reads as missing is left out, as RecBole's loader leaves it out of pre-training
    (the data check refuses such a log before a pipeline runs)."""
    from recbole_adaptssr.data.validation import MISSING

    if not os.path.isfile(path):
        raise FileNotFoundError(f"behaviour log not found: {path}")
    frame = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, engine="c")
    columns = {c.split(":")[0]: c for c in frame.columns}
    missing = [f for f in (user_field, item_field, time_field) if f not in columns]
    if missing:
        raise ValueError(f"{path}: header lacks field(s) {missing}; found {list(frame.columns)}")
    ids = frame[[columns[user_field], columns[item_field]]]
    frame = frame[~ids.isin(MISSING).any(axis=1).to_numpy()]
    return pd.DataFrame(
        {
            "user": frame[columns[user_field]].to_numpy(),
            "item": frame[columns[item_field]].to_numpy(),
            "time": pd.to_numeric(frame[columns[time_field]], errors="raise").to_numpy(),
        }
    )


def vocabulary_from_log(items) -> dict:
    """``[PAD]`` -> 0, then tokens in order of first appearance (RecBole's remapping order)."""
    tokens = pd.unique(pd.Series(items, dtype=str))
    vocab = {PAD: 0}
    for token in tokens:
        vocab.setdefault(token, len(vocab))
    return vocab


class AdaptSSRTaskDataset(Dataset):
    """A downstream task of a converted data set (``downstream_task`` names the task file suffix)."""

    def __init__(self, config, item_vocabulary: dict | None = None, task_data: TaskData | None = None):
        self.task = config["downstream_task"]
        self.task_data = task_data if task_data is not None else TaskData(config["data_path"], config["dataset"])
        self.task_kind = self.task_data.kind(self.task)
        self.item_vocabulary = dict(item_vocabulary) if item_vocabulary is not None else None
        self.label_tokens = None
        self.candidate_item_num = None  # set when behaviour-only items are appended after the targets
        super().__init__(config)

    # ------------------------------------------------------------------ loading
    def _load_data(self, token, dataset_path):
        path = os.path.join(dataset_path, f"{token}.{self.task}")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"task file not found: {path}")
        self.inter_feat = self._load_feat(path, FeatureSource.INTERACTION)
        self.user_feat = None
        self.item_feat = None
        self._check_task_fields(path)
        if self.config["duplicate_rows"] == "drop":
            self.inter_feat = self.inter_feat.drop_duplicates(ignore_index=True)
        if self.task_kind.class_labels:
            self._encode_class_labels(path)
        if not self.task_kind.has_targets():
            # RecBole needs an item field beside the user field; a profiling sample's "item" is the task itself
            self.inter_feat[self.iid_field] = self.task
            self.set_field_property(self.iid_field, FeatureType.TOKEN, FeatureSource.INTERACTION, 1)

    def _check_task_fields(self, path):
        fields = {"label": self.label_field, "target": self.iid_field}
        for field in [self.uid_field] + [fields[role] for role in self.task_kind.fields]:
            if field not in self.inter_feat:
                raise ValueError(
                    f"{path}: a {self.task_kind.name} task file needs field {field!r}; found {list(self.inter_feat)}"
                )
        if len(self.inter_feat) == 0:
            raise ValueError(f"{path}: the task file holds no sample")

    def _encode_class_labels(self, path):
        """Label tokens -> class index 0..C-1 in sorted order (numeric when all tokens are numbers); a missing
        label is an error naming its line, never a class ``'nan'``."""
        missing = np.flatnonzero(self.inter_feat[self.label_field].isna().to_numpy())
        if len(missing):
            from recbole_adaptssr.data.validation import DataError, line_numbers

            raise DataError(path, line_numbers(path, missing[:1]).get(int(missing[0])),
                            f"empty or missing label ({len(missing)} row(s)): every sample needs one")
        labels = self.inter_feat[self.label_field].astype(str)
        tokens = sorted(labels.unique(), key=lambda t: (0, float(t), t) if _is_number(t) else (1, 0.0, t))
        expected = self.task_kind.num_classes
        if expected is not None and len(tokens) != expected:
            raise ValueError(f"{path}: a {self.task_kind.name} task needs exactly {expected} label values, found {tokens}")
        if len(tokens) < 2:
            raise ValueError(f"{path}: a classification task needs at least 2 label values, found {tokens}")
        index = {token: i for i, token in enumerate(tokens)}
        self.label_tokens = [str(t) for t in tokens]
        self.inter_feat[self.label_field] = labels.map(index).astype(np.float32)
        self.field2type[self.label_field] = FeatureType.FLOAT
        self.field2seqlen[self.label_field] = 1

    # ------------------------------------------------------------------ split
    def build(self):
        """RecBole's seeded random split of the samples (``task_split_by: row``), or the paper's split of the USERS
        (``task_split_by: user``: every sample of a user lands in one split, so a test user is cold: none of its
        targets is in training, and the full-sort evaluation masks nothing for it). Then, for a low-label regime,
        only a seeded share ``task_train_share`` of the training split's users is kept (valid and test unchanged)."""
        split_by = self.config["task_split_by"] or "row"
        datasets = super().build() if split_by == "row" else self._split_users(self.config["eval_args"]["split"]["RS"])
        share = float(self.config["task_train_share"] if self.config["task_train_share"] is not None else 1.0)
        if share < 1.0:
            datasets[0] = self._keep_users(datasets[0], share)
        return datasets

    def _split_users(self, ratios):
        self._change_feat_format()
        uids = self.inter_feat[self.uid_field].numpy()
        users = np.unique(uids)
        shuffled = users[np.random.RandomState(self.config["seed"]).permutation(len(users))]
        bounds = self._calcu_split_ids(len(users), ratios)
        part = np.zeros(self.user_num, dtype=np.int64)
        part[shuffled] = np.searchsorted(bounds, np.arange(len(users)), side="right")
        row_part = part[uids]
        return [self.copy(self.inter_feat[torch.from_numpy(np.flatnonzero(row_part == k))]) for k in range(len(ratios))]

    def _keep_users(self, dataset, share):
        uids = dataset.inter_feat[self.uid_field].numpy()
        users = np.unique(uids)
        keep = max(1, int(np.ceil(share * len(users))))
        kept = np.random.RandomState(self.config["seed"] + 1).permutation(users)[:keep]
        return dataset.copy(dataset.inter_feat[torch.from_numpy(np.flatnonzero(np.isin(uids, kept)))])

    # ------------------------------------------------------------------ behaviour sequences
    def _change_feat_format(self):
        super()._change_feat_format()
        if self.user_feat is None:
            self.user_feat = self._behaviour_user_feat()

    def _behaviour_user_feat(self) -> Interaction:
        """(user_num, L) behaviour ids of each user's most recent ``MAX_ITEM_LIST_LENGTH`` behaviours."""
        max_len = self.config["MAX_ITEM_LIST_LENGTH"]
        list_field = self.iid_field + self.config["LIST_SUFFIX"]
        length_field = self.config["ITEM_LIST_LENGTH_FIELD"]
        use_cache = self.config["sequence_cache"] and not dropping_duplicates(self.config)
        cached = self.task_data.sequence_log(self.config["sequence_cache_dir"]) if use_cache else None
        if cached is not None:  # the same sequences, vocabulary and OOV count from the cache (sequence_cache.py)
            users, recent, lengths, _, self.oov_behaviours = sequence_cache.task_behaviours(
                cached, self.field2id_token[self.uid_field], max_len, self._resolve_vocabulary)
            return self._behaviour_feat(users, recent, lengths, max_len, list_field, length_field)
        log = self.task_data.behaviours
        if self.config["duplicate_rows"] == "drop":
            log = log.drop_duplicates(["user", "item", "time"])
        token2uid = self.field2token_id[self.uid_field]
        uids = log["user"].map(token2uid)
        log = log.assign(uid=uids).dropna(subset=["uid"])
        log = log.assign(uid=log["uid"].astype(np.int64)).sort_values(["uid", "time"], kind="stable")

        vocab = self._resolve_vocabulary(log["item"].to_numpy())
        oov_id = len(vocab)
        ids = log["item"].map(vocab)
        self.oov_behaviours = int(ids.isna().sum())
        item_ids = ids.fillna(oov_id).astype(np.int64).to_numpy()

        users, recent, lengths, _ = recent_behaviours(log["uid"].to_numpy(), item_ids, max_len)
        return self._behaviour_feat(users, recent, lengths, max_len, list_field, length_field)

    def _behaviour_feat(self, users, recent, lengths, max_len, list_field, length_field) -> Interaction:
        user_num = self.user_num
        matrix = np.zeros((user_num, max_len), dtype=np.int64)
        matrix[users] = recent
        length = np.zeros(user_num, dtype=np.int64)
        length[users] = lengths

        no_history = np.setdiff1d(np.unique(self.inter_feat[self.uid_field].numpy()), users)
        if len(no_history):
            names = [str(self.field2id_token[self.uid_field][u]) for u in no_history[:5]]
            raise ValueError(
                f"{len(no_history)} user(s) of task {self.task!r} have no behaviour in {self.dataset_name}.inter "
                f"(e.g. {names})"
            )
        self.set_field_property(list_field, FeatureType.TOKEN_SEQ, FeatureSource.USER, max_len)
        self.set_field_property(length_field, FeatureType.TOKEN, FeatureSource.USER, 1)
        return Interaction({
            self.uid_field: torch.arange(user_num),
            list_field: torch.from_numpy(matrix),
            length_field: torch.from_numpy(length),
        })

    def _resolve_vocabulary(self, items) -> dict:
        if self.item_vocabulary is not None:  # the checkpoint's ids
            return self.item_vocabulary
        if self.config["behaviour_vocabulary"] == "targets":
            # RecBole's sequential models score their own item table: behaviours and targets share ids
            if not self.task_kind.has_targets():
                raise ValueError(
                    f"behaviour_vocabulary=targets needs a target field; task {self.task!r} "
                    f"({self.task_kind.name}) has none"
                )
            self.candidate_item_num = len(self.field2id_token[self.iid_field])  # targets (+ padding) come first
            # behaviours that are never targets still need an id (and become candidates)
            self._append_tokens(self.iid_field, pd.unique(pd.Series(items, dtype=str)))
            self.item_vocabulary = dict(self.field2token_id[self.iid_field])
            return self.item_vocabulary
        self.item_vocabulary = vocabulary_from_log(items)
        return self.item_vocabulary

    def _append_tokens(self, field, tokens) -> None:
        """Give each of ``tokens`` that ``field`` does not know the next free id, in order."""
        token2id = self.field2token_id[field]
        new = [t for t in dict.fromkeys(tokens) if t not in token2id]
        start = len(self.field2id_token[field])
        for offset, token in enumerate(new):
            token2id[token] = start + offset
        self.field2id_token[field] = np.concatenate(
            [np.asarray(self.field2id_token[field], dtype=object), np.asarray(new, dtype=object)])

    def behaviour_vocabulary_size(self) -> int:
        """Number of behaviour ids including ``[PAD]`` (the OOV / mask id equals this number)."""
        return len(self.item_vocabulary)

    def num_classes(self) -> int:
        return len(self.label_tokens) if self.label_tokens is not None else 0

    def num_targets(self) -> int:
        """Target items including padding (0 for profiling tasks, which have none)."""
        return self.num(self.iid_field) if self.task_kind.has_targets() else 0

    def __str__(self):
        info = [f"[{self.dataset_name}] task {self.task!r} ({self.task_kind.name}): {len(self.inter_feat)} samples, "
                f"{self.user_num - 1} users"]
        if self.label_tokens is not None:
            info.append(f"classes (index order): {self.label_tokens}")
        if self.task_kind.has_targets():
            info.append(f"target items: {self.num_targets() - 1}")
        if getattr(self, "oov_behaviours", None) is not None:
            info.append(f"behaviours outside the vocabulary (mapped to the OOV id): {self.oov_behaviours}")
        return "\n".join(info)


def _is_number(token: str) -> bool:
    try:
        float(token)
        return True
    except ValueError:
        return False
