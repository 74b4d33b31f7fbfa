"""Pre-training data: one sample per user, not RecBole's one-sample-per-prefix sequential augmentation."""

from __future__ import annotations

import numpy as np
import torch
from recbole.data.dataset import SequentialDataset
from recbole.data.interaction import Interaction
from recbole.utils import FeatureSource, FeatureType


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

    The behaviour log (``.inter``) is sorted by user and ``TIME_FIELD``; ties keep file order.
    """

    def data_augmentation(self):
        self._check_field("uid_field", "iid_field", "time_field")
        max_len = self.max_item_list_len
        list_field = self.iid_field + self.config["LIST_SUFFIX"]
        self.item_id_list_field = list_field
        self.set_field_property(list_field, FeatureType.TOKEN_SEQ, FeatureSource.INTERACTION, max_len)
        self.set_field_property(self.item_list_length_field, FeatureType.TOKEN, FeatureSource.INTERACTION, 1)

        self.sort(by=[self.uid_field, self.time_field], ascending=True)
        items = self.inter_feat[self.iid_field].numpy()
        users, item_matrix, lengths, counts = recent_behaviours(
            self.inter_feat[self.uid_field].numpy(), items, max_len
        )
        self.behaviour_count = int(len(items))
        self.truncated_behaviours = int((counts - lengths).sum())
        self.inter_feat = Interaction(
            {
                self.uid_field: torch.from_numpy(users.astype(np.int64)),
                list_field: torch.from_numpy(item_matrix.astype(np.int64)),
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
