"""Pre-training data: one sample per user, not RecBole's one-sample-per-prefix sequential augmentation."""

from __future__ import annotations

import os

import numpy as np
import torch
from recbole.data.dataset import SequentialDataset
from recbole.data.interaction import Interaction
from recbole.utils import FeatureSource, FeatureType

from recbole_adaptssr.data import sequence_cache


def dropping_duplicates(config) -> bool:
    """Whether ``duplicate_rows: drop`` applies to ``config``'s behaviour log: set, and the log not known (from
    this process's data check) to hold none. The sequence cache keeps every row, so it is then not used."""
    if config["duplicate_rows"] != "drop":
        return False
    from recbole_adaptssr.data.validation import known_duplicates

    return known_duplicates(config) != 0


def recent_behaviours(uids: np.ndarray, items: np.ndarray, max_len: int):
    """Each user's most recent ``max_len`` behaviours, from a log already sorted by (user, time).

    Returns ``(users, matrix, lengths, counts)``: the distinct users in order, their (n_users, max_len) item
    matrix (chronological, left-aligned, 0-padded), the kept lengths and the full behaviour counts.
    """
    users, first, counts = np.unique(uids, return_index=True, return_counts=True)
    lengths = np.minimum(counts, max_len)
    start = first + counts - lengths
    offsets = np.arange(max_len)
    valid = offsets[None, :] < lengths[:, None]
    gathered = items[np.minimum(start[:, None] + offsets[None, :], len(items) - 1)]
    return users, np.where(valid, gathered, 0), lengths, counts


class AdaptSSRDataset(SequentialDataset):
    """Each user becomes ONE row: ``item_id_list`` holds the user's most recent ``MAX_ITEM_LIST_LENGTH``
    behaviours in chronological order (left-aligned, 0-padded) and ``item_length`` their number.

    The behaviour log (``.inter``) is sorted by user and ``TIME_FIELD`` (compared as float64, as the downstream
    tasks do: never at RecBole's float32, whose 128-second steps at Unix-second scale reorder a user's behaviours);
    ties keep file order. With ``duplicate_rows: drop`` the first of each exact duplicate row is kept.

    With ``sequence_cache`` (default on) the log comes from its cached, memory-mapped per-user copy
    (:mod:`recbole_adaptssr.data.sequence_cache`) instead of RecBole's parser, whenever that is exact: the
    settings keep RecBole's processing to loading and remapping the three fields (see :meth:`_cache_gate`). The
    data set is then the same object, attribute for attribute (``tests/test_sequence_cache.py``).
    """

    _pending_log = None  # the cached log, until _change_feat_format turns it into the one-row-per-user sequences

    # ------------------------------------------------------------------ the sequence cache
    def _from_scratch(self):
        data = self._cached_log()
        if data is None:
            return super()._from_scratch()
        self.logger.debug(f"Loading {self.__class__} from the sequence cache.")
        self._get_preset()
        self._get_field_from_config()
        self._header_fields(self._inter_path())
        self.inter_feat = self.user_feat = self.item_feat = None
        for field, source in ((self.uid_field, FeatureSource.USER), (self.iid_field, FeatureSource.ITEM)):
            if field in self.field2source:  # as RecBole's _load_user_or_item_feat marks them
                self.field2source[field] = FeatureSource(source.value + "_id")
        self._init_alias()
        self.feat_name_list = ["inter_feat"]
        for field, tokens in ((self.uid_field, data.users), (self.iid_field, data.items)):
            id_token = np.array(["[PAD]"] + list(tokens))
            self.field2id_token[field] = id_token
            self.field2token_id[field] = {t: i for i, t in enumerate(id_token)}
        self._pending_log = data

    def _inter_path(self):
        return os.path.join(self.config["data_path"], f"{self.config['dataset']}.inter")

    def _cached_log(self):
        if not self.config["sequence_cache"]:
            return None
        if type(self).data_augmentation is not AdaptSSRDataset.data_augmentation:
            return None  # a subclass that builds its sequences otherwise gets them its own way
        why = self._cache_gate()
        if why:
            self.logger.info(f"sequence cache not used: {why}")
            return None
        return sequence_cache.load_behaviour_log(self._inter_path(), self.config["sequence_cache_dir"])

    def _cache_gate(self):
        """Why RecBole's processing of this log could differ from loading + remapping (None when it cannot)."""
        config = self.config
        if not os.path.isfile(self._inter_path()):
            return f"{self._inter_path()} not found"
        expected = {"USER_ID_FIELD": sequence_cache.USER_FIELD, "ITEM_ID_FIELD": sequence_cache.ITEM_FIELD,
                    "TIME_FIELD": sequence_cache.TIME_FIELD, "field_separator": "\t"}
        for key, value in expected.items():
            if config[key] != value:
                return f"{key}={config[key]!r} (the cache reads {value!r})"
        if str(config["encoding"] or "utf-8").lower().replace("_", "-") not in ("utf-8", "utf8"):
            return f"encoding={config['encoding']!r}"
        for key in ("benchmark_filename", "additional_feat_suffix", "rm_dup_inter", "val_interval", "preload_weight",
                    "normalize_field", "normalize_all", "discretization", "threshold", "seq_len", "unused_col",
                    "alias_of_user_id", "alias_of_item_id", "alias_of_entity_id", "alias_of_relation_id"):
            if config[key]:
                return f"{key} is set"
        for key in ("user_inter_num_interval", "item_inter_num_interval"):
            if config[key] not in (None, "[0,inf)"):
                return f"{key}={config[key]!r}"
        if dropping_duplicates(config):
            return "duplicate_rows=drop and the log may hold duplicate rows (the cache keeps every row)"
        fields = (sequence_cache.USER_FIELD, sequence_cache.ITEM_FIELD, sequence_cache.TIME_FIELD)
        if set(fields) & set(config["numerical_features"] or []):
            return "numerical_features names a field of the log"
        for source in (FeatureSource.USER, FeatureSource.ITEM):
            feat_path = os.path.join(config["data_path"], f"{config['dataset']}.{source.value}")
            if os.path.isfile(feat_path) and self._get_load_and_unload_col(source) != set():
                return f"{feat_path} would be loaded"
        loaded = self._header_fields(self._inter_path(), dry_run=True)
        if loaded is None or sorted(loaded) != sorted(fields) or loaded[sequence_cache.TIME_FIELD] != "float" \
                or loaded[sequence_cache.USER_FIELD] != "token" or loaded[sequence_cache.ITEM_FIELD] != "token":
            return f"the loaded fields of the .inter are {loaded}, not user_id:token item_id:token timestamp:float"
        return None

    def _header_fields(self, path, dry_run=False):
        """Set the field properties of the .inter's loaded fields as RecBole's ``_load_feat`` does (``dry_run``:
        only return ``{field: type}``, or None for a header RecBole would reject)."""
        load_col, unload_col = self._get_load_and_unload_col(FeatureSource.INTERACTION)
        loaded = {}
        for field_type in sequence_cache.read_header(path):
            parts = field_type.split(":")
            if len(parts) != 2 or parts[1] not in {t.value for t in FeatureType}:
                return None
            field, ftype = parts[0], FeatureType(parts[1])
            if (load_col is not None and field not in load_col) or (unload_col is not None and field in unload_col):
                continue
            loaded[field] = ftype.value
            if dry_run:
                continue
            self.field2source[field] = FeatureSource.INTERACTION
            self.field2type[field] = ftype
            if not ftype.value.endswith("seq"):
                self.field2seqlen[field] = 1
            if "float" in ftype.value:
                self.field2bucketnum[field] = 2
        return loaded

    def _change_feat_format(self):
        if self._pending_log is None:
            self._order_behaviours()
            return super()._change_feat_format()
        data = self.__dict__.pop("_pending_log")  # back to the class's None: no trace of the cache
        self._check_field("uid_field", "iid_field", "time_field")
        self._sequence_fields(self.max_item_list_len)
        matrix, lengths, counts = data.recent(self.max_item_list_len)
        users = np.arange(1, data.n_users + 1, dtype=np.int64)
        self._set_sequences(users, matrix, lengths, counts, data.n_behaviours)

    def _order_behaviours(self):
        """Sort the log by (user, timestamp as float64), ties in file order, while it is a DataFrame of float64
        timestamps (RecBole's ``Interaction`` holds them as float32; its stable sort in :meth:`data_augmentation`
        then keeps this order, float32 rounding being monotone); drop exact duplicates under
        ``duplicate_rows: drop``."""
        import pandas as pd

        feat = self.inter_feat
        if not isinstance(feat, pd.DataFrame) or self.time_field not in feat:
            return
        if self.config["duplicate_rows"] == "drop":
            feat = feat.drop_duplicates(subset=[self.uid_field, self.iid_field, self.time_field], keep="first")
        order = np.lexsort((feat[self.time_field].to_numpy(dtype=np.float64), feat[self.uid_field].to_numpy()))
        self.inter_feat = feat.iloc[order].reset_index(drop=True)

    # the statistics RecBole prints before ``build`` count behaviours, which the cached log knows without rows
    @property
    def inter_num(self):
        return self._pending_log.n_behaviours if self._pending_log is not None else super().inter_num

    @property
    def avg_actions_of_users(self):
        if self._pending_log is None:
            return super().avg_actions_of_users
        return np.float64(self._pending_log.n_behaviours) / self._pending_log.n_users

    @property
    def avg_actions_of_items(self):
        if self._pending_log is None:
            return super().avg_actions_of_items
        return np.float64(self._pending_log.n_behaviours) / len(self._pending_log.items)

    # ------------------------------------------------------------------ sequences
    def data_augmentation(self):
        self._check_field("uid_field", "iid_field", "time_field")
        max_len = self.max_item_list_len
        self._sequence_fields(max_len)
        self.sort(by=[self.uid_field, self.time_field], ascending=True)
        items = self.inter_feat[self.iid_field].numpy()
        users, item_matrix, lengths, counts = recent_behaviours(
            self.inter_feat[self.uid_field].numpy(), items, max_len
        )
        self._set_sequences(users, item_matrix, lengths, counts, int(len(items)))

    def _sequence_fields(self, max_len):
        list_field = self.iid_field + self.config["LIST_SUFFIX"]
        self.item_id_list_field = list_field
        self.set_field_property(list_field, FeatureType.TOKEN_SEQ, FeatureSource.INTERACTION, max_len)
        self.set_field_property(self.item_list_length_field, FeatureType.TOKEN, FeatureSource.INTERACTION, 1)

    def _set_sequences(self, users, item_matrix, lengths, counts, behaviour_count):
        list_field = self.item_id_list_field
        self.behaviour_count = behaviour_count
        self.truncated_behaviours = int((counts - lengths).sum())
        self.inter_feat = Interaction(
            {
                self.uid_field: torch.from_numpy(users.astype(np.int64)),
                list_field: torch.from_numpy(np.asarray(item_matrix, dtype=np.int64)),  # no copy when int64
                self.item_list_length_field: torch.from_numpy(lengths.astype(np.int64)),
            }
        )

    def build(self):
        """Random 90/10 (``pretrain_valid_ratio``) split of the user sequences, seeded by ``seed``."""
        self._change_feat_format()
        return list(self.split_users(self.config["pretrain_valid_ratio"], self.config["seed"]))

    def split_users(self, valid_ratio: float, seed: int):
        """Return (train, valid) copies holding disjoint random subsets of the user sequences."""
        if not 0.0 < valid_ratio < 1.0:
            raise ValueError(f"pretrain_valid_ratio must be in (0, 1), got {valid_ratio}")
        n = len(self.inter_feat)
        n_valid = int(round(n * valid_ratio))
        if n_valid < 2 or n - n_valid < 2:
            raise ValueError(
                f"{n} user sequences are too few to split {1 - valid_ratio:.0%}/{valid_ratio:.0%} "
                "with at least 2 sequences on each side (the in-batch ranking needs 2)"
            )
        order = torch.from_numpy(np.random.RandomState(seed).permutation(n))
        return self.copy(self.inter_feat[order[n_valid:]]), self.copy(self.inter_feat[order[:n_valid]])

    def item_vocabulary(self) -> list:
        """Item tokens indexed by internal id (index 0 is RecBole's ``[PAD]``)."""
        return [str(token) for token in self.field2id_token[self.iid_field]]

    def __str__(self):
        info = [super().__str__()]
        if hasattr(self, "behaviour_count"):
            info.append(
                f"Pre-training sequences: {len(self.inter_feat)} users, {self.behaviour_count} behaviours "
                f"({self.truncated_behaviours} older than the last {self.max_item_list_len} dropped)"
            )
        return "\n".join(info)
