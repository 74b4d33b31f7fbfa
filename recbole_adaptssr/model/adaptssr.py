"""AdaptSSR as one RecBole model whose ``train_stage`` selects the task it trains on.

Stages (configuration, not scripts; as RecBole's S3Rec):
  * ``mlm``: masked behaviour prediction warm-up (PeterRec's MLM; Algorithm 1 line 1);
  * ``ssr``: augmentation-adaptive self-supervised ranking (Eq. 6-7), or with ``ranking: False`` the
    InfoNCE contrastive task on the two explicit views (the paper's "w/o SSR" ablation);
  * ``finetune``: a downstream task (user profiling, CVR or cold recommendation) with a two-layer MLP head;
    the whole model is fine-tuned.

In the pre-training stages a sample is one user's sequence (RecBole's SEQUENTIAL type); in ``finetune`` a sample
is a task record whose user's sequence is a joined user feature, so the model declares itself GENERAL there
(:meth:`model_type_for`), which makes RecBole's full-sort evaluation rank per user with history masking.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from recbole.model.abstract_recommender import SequentialRecommender
from recbole.utils import InputType, ModelType
from torch import nn

from recbole_adaptssr.losses import adaptssr_lambda, adaptssr_loss, ranking_accuracies
from recbole_adaptssr.model.augmentation import SequenceAugmenter
from recbole_adaptssr.model.heads import TaskHead
from recbole_adaptssr.model.user_model import UserModel

PRETRAIN_STAGES = ("mlm", "ssr")
STAGES = PRETRAIN_STAGES + ("finetune",)


class MaskedItemHead(nn.Module):
    """BERT-style MLM head: transform, then scores against the (tied) item embedding table."""

    def __init__(self, hidden_size: int, n_items: int, layer_norm_eps: float):
        super().__init__()
        self.transform = nn.Sequential(
            nn.Linear(hidden_size, hidden_size), nn.GELU(), nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        )
        self.bias = nn.Parameter(torch.zeros(n_items))

    def forward(self, hidden: torch.Tensor, item_weight: torch.Tensor) -> torch.Tensor:
        return self.transform(hidden) @ item_weight.t() + self.bias


class AdaptSSR(SequentialRecommender):
    """User model pre-trained with MLM then AdaptSSR (Yu et al., NeurIPS 2023)."""

    input_type = InputType.POINTWISE

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        if hasattr(dataset, "behaviour_vocabulary_size"):  # a downstream task: ITEM_ID is the target field
            self.n_items = dataset.behaviour_vocabulary_size()
        self.user_model = UserModel(
            n_items=self.n_items,
            max_seq_length=self.max_seq_length,
            hidden_size=config["hidden_size"],
            n_layers=config["n_layers"],
            n_heads=config["n_heads"],
            inner_size=config["inner_size"],
            hidden_dropout_prob=config["hidden_dropout_prob"],
            attn_dropout_prob=config["attn_dropout_prob"],
            hidden_act=config["hidden_act"],
            layer_norm_eps=config["layer_norm_eps"],
            initializer_range=config["initializer_range"],
        )
        self.mask_token_id = self.user_model.mask_token_id
        self.mlm_head = MaskedItemHead(config["hidden_size"], self.n_items, config["layer_norm_eps"])
        self.mlm_mask_ratio = _ratio(config["mlm_mask_ratio"], "mlm_mask_ratio")
        self.augmenter = SequenceAugmenter(
            mask_token_id=self.mask_token_id,
            operators=tuple(config["augmentations"]),
            mask_ratio=config["mask_ratio"],
            crop_ratio=config["crop_ratio"],
            reorder_ratio=config["reorder_ratio"],
        )
        self.loss_options = dict(
            lambda_mode=config["lambda_mode"],
            fixed_lambda=config["fixed_lambda"],
            lambda_estimate=config["lambda_estimate"],
            hard_negative=config["hard_negative"],
            ranking=config["ranking"],
            infonce_temperature=config["infonce_temperature"],
        )
        self.task_head = None
        if getattr(dataset, "task_kind", None) is not None:
            self.task_head = TaskHead(
                dataset.task_kind,
                config["hidden_size"],
                config["head_hidden_size"],
                config["head_dropout_prob"],
                num_classes=dataset.num_classes(),
                num_targets=dataset.num_targets(),
            )
        self.LABEL = config["LABEL_FIELD"]
        self.train_stage = None
        self.set_stage(config["train_stage"])

    # ------------------------------------------------------------------ stages
    def set_stage(self, stage: str) -> None:
        """Select the task ``calculate_loss`` trains."""
        if stage not in STAGES:
            raise ValueError(f"train_stage must be one of {list(STAGES)}, got {stage!r}")
        if stage == "finetune" and self.task_head is None:
            raise ValueError("train_stage=finetune needs a downstream task data set (set downstream_task)")
        self.train_stage = stage

    @staticmethod
    def model_type_for(train_stage: str) -> ModelType:
        """SEQUENTIAL for pre-training (one sample per sequence), GENERAL for a downstream task."""
        return ModelType.GENERAL if train_stage == "finetune" else ModelType.SEQUENTIAL

    def load_pretrained(self, state_dict: dict) -> None:
        """Copy the user-model weights of a pre-training checkpoint (heads are task specific)."""
        prefix = "user_model."
        weights = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
        if not weights:
            raise ValueError("the checkpoint holds no user_model weights")
        try:
            self.user_model.load_state_dict(weights, strict=True)
        except RuntimeError as error:
            raise ValueError(
                f"the checkpoint's user model does not fit this configuration (hidden_size, n_layers, "
                f"MAX_ITEM_LIST_LENGTH and the vocabulary must match pre-training): {error}"
            ) from None

    # ------------------------------------------------------------------ encoder
    def forward(self, item_seq: torch.Tensor, item_seq_len: torch.Tensor | None = None) -> torch.Tensor:
        """(B, L) behaviour ids -> (B, d) user representations."""
        return self.user_model(item_seq)

    def calculate_loss(self, interaction):
        item_seq = interaction[self.ITEM_SEQ]
        item_seq_len = interaction[self.ITEM_SEQ_LEN]
        if self.train_stage == "finetune":
            u = self.user_model(item_seq)
            return self.task_head.loss(u, interaction[self.LABEL] if self.LABEL in interaction else None,
                                       interaction[self.ITEM_ID] if self.ITEM_ID in interaction else None)
        if self.train_stage == "mlm":
            return self.mlm_loss(item_seq, item_seq_len)[0]
        if item_seq.size(0) < 2:
            # a lone leftover sequence has no in-batch negatives: it contributes no ranking signal
            return torch.zeros((), device=item_seq.device, requires_grad=True)
        return self.ssr_loss(item_seq, item_seq_len)[0]

    # ------------------------------------------------------------------ MLM warm-up
    def mlm_loss(self, item_seq, item_seq_len, generator=None):
        """Masked behaviour prediction: returns (loss, accuracy on the masked positions)."""
        valid = item_seq != 0
        noise = torch.rand(item_seq.shape, generator=generator, device=item_seq.device)
        noise = noise.masked_fill(~valid, 2.0)
        chosen = noise < self.mlm_mask_ratio
        # every sequence predicts at least one behaviour: its position with the smallest noise
        first = F.one_hot(noise.argmin(dim=1), item_seq.size(1)).bool()
        chosen = chosen | first
        masked_seq = item_seq.masked_fill(chosen, self.mask_token_id)
        hidden, _ = self.user_model.encode(masked_seq)
        logits = self.mlm_head(hidden[chosen], self.user_model.item_embedding.weight[: self.n_items])
        targets = item_seq[chosen]
        loss = F.cross_entropy(logits, targets)
        accuracy = (logits.argmax(dim=-1) == targets).float().mean()
        return loss, accuracy

    # ------------------------------------------------------------------ self-supervised ranking
    def augmented_views(self, item_seq, item_seq_len, generator=None):
        """Two explicit views per sequence, encoded in ONE forward pass.

        With ``ranking`` the batch is [f(S); f(S); g(S); g(S)] so each view passes twice with independent
        dropout masks (the implicit augmentation): returns u^, u^+, u~, u~+. Without it: u^, None, u~, None.
        """
        pair = self.augmenter(item_seq, item_seq_len, generator=generator)
        if self.loss_options["ranking"]:
            stacked = torch.cat([pair.seq_a, pair.seq_a, pair.seq_b, pair.seq_b], dim=0)
            u_hat, u_hat_pos, u_tilde, u_tilde_pos = self.user_model(stacked).chunk(4, dim=0)
            return u_hat, u_hat_pos, u_tilde, u_tilde_pos
        u_hat, u_tilde = self.user_model(torch.cat([pair.seq_a, pair.seq_b], dim=0)).chunk(2, dim=0)
        return u_hat, None, u_tilde, None

    def ssr_loss(self, item_seq, item_seq_len, generator=None):
        """AdaptSSR loss of a batch and its four representation tensors."""
        views = self.augmented_views(item_seq, item_seq_len, generator=generator)
        return adaptssr_loss(*views, **self.loss_options), views

    @torch.no_grad()
    def ssr_statistics(self, views) -> dict:
        """Ranking accuracies of the authors' release and the mean fusion coefficient of a batch."""
        u_hat, u_hat_pos, u_tilde, u_tilde_pos = views
        if u_hat_pos is None:  # contrastive ablation: no implicit views, rankings undefined
            return {}
        acc_implicit, acc_explicit = ranking_accuracies(*views)
        lam_hat, lam_tilde = adaptssr_lambda(
            *views,
            lambda_mode=self.loss_options["lambda_mode"],
            fixed_lambda=self.loss_options["fixed_lambda"],
            lambda_estimate=self.loss_options["lambda_estimate"],
        )
        return {
            "acc_implicit": float(acc_implicit),
            "acc_explicit": float(acc_explicit),
            "lambda": float((lam_hat.mean() + lam_tilde.mean()) / 2),
        }

    # ------------------------------------------------------------------ RecBole's prediction API
    def _check_finetune(self):
        if self.train_stage != "finetune":
            raise ValueError(
                f"AdaptSSR in train_stage={self.train_stage!r} is a pre-training task and scores nothing; "
                "fine-tune it on a downstream task (train_stage=finetune) to predict."
            )

    def predict(self, interaction):
        """Class probabilities (B, C), P(label=1) (B,), or (user, target) scores (B,), by task kind."""
        self._check_finetune()
        u = self.user_model(interaction[self.ITEM_SEQ])
        target = interaction[self.ITEM_ID] if self.ITEM_ID in interaction else None
        return self.task_head.predict(u, target)

    def full_sort_predict(self, interaction):
        """Scores of every target item for each user (all-ranking), flattened as RecBole expects."""
        self._check_finetune()
        return self.task_head.full_sort(self.user_model(interaction[self.ITEM_SEQ])).reshape(-1)


def _ratio(value, name: str) -> float:
    value = float(value)
    if not 0.0 < value <= 1.0:
        raise ValueError(f"{name} must be in (0, 1], got {value}")
    return value
