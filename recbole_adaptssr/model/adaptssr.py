"""AdaptSSR as one RecBole model: the user model (Eq. 2-4), the pretext tasks of its pre-training stages, and a
downstream head; ``train_stage`` selects what ``calculate_loss`` trains (as RecBole's S3Rec).

  * a pretext task name (``mlm``, ``ssr``, ... any task of :mod:`recbole_adaptssr.pretext`): pre-training;
  * ``finetune``: a downstream task (its kind's head from :mod:`recbole_adaptssr.downstream`) on u; the whole
    model is fine-tuned.

In pre-training a sample is one user's sequence (RecBole's SEQUENTIAL type); in ``finetune`` a sample is a task
record whose user's sequence is a joined user feature, so the model declares itself GENERAL there
(:meth:`model_type_for`), which makes RecBole's full-sort evaluation rank per user with history masking.
"""

from __future__ import annotations

import torch
from recbole.model.abstract_recommender import SequentialRecommender
from recbole.utils import InputType, ModelType
from torch import nn

from recbole_adaptssr.encoder.base import build_user_model, check_pretrained
from recbole_adaptssr.model import MODELS
from recbole_adaptssr.pretext.base import StageSettings, get_pretext_task

FINETUNE = "finetune"


class AdaptSSR(SequentialRecommender):
    """User model pre-trained with pretext tasks (default: MLM then AdaptSSR, Yu et al., NeurIPS 2023)."""

    input_type = InputType.POINTWISE
    #: the experiment layer pre-trains and fine-tunes this model (our Config loads its pretext tasks' YAMLs)
    uses_pretext_tasks = True

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        if hasattr(dataset, "behaviour_vocabulary_size"):  # a downstream task: ITEM_ID is the target field
            self.n_items = dataset.behaviour_vocabulary_size()
        self.config = config
        # the backbone named by user_model (default: the paper's Eq. 2-4 transformer; recbole_adaptssr/encoder/)
        self.user_model = build_user_model(config, self.n_items, self.max_seq_length)
        self.mask_token_id = self.user_model.mask_token_id
        self.pretext = nn.ModuleDict()
        self.task_head = None
        task_kind = getattr(dataset, "task_kind", None)
        if task_kind is not None:
            # the behaviour ids of the run (the pre-training checkpoint's): a fine-tune checkpoint carries them in
            # RecBole's other_parameter, so recbole_adaptssr.quick_start.load_data_and_model rebuilds the same data
            self.other_parameter_name = ["behaviour_tokens"]
            self.behaviour_tokens = join_tokens(dataset.item_vocabulary)
            self.task_head = task_kind.build_head(
                config["hidden_size"], config["head_hidden_size"], config["head_dropout_prob"], dataset
            )
        else:
            modules = config["pretext_modules"] or []
            for name in dict.fromkeys(str(s) for s in config["pretrain_stages"] or []):
                task_class = get_pretext_task(name, modules)
                self.pretext[name] = task_class(StageSettings(config, name), self.n_items, config["hidden_size"])
        self.LABEL = config["LABEL_FIELD"]
        self.train_stage = None
        self.set_stage(config["train_stage"])

    # ------------------------------------------------------------------ stages
    def set_stage(self, stage: str) -> None:
        """Select what ``calculate_loss`` trains, and the stage's dropout (``<stage>_hidden_dropout_prob``, ...)."""
        if stage == FINETUNE:
            if self.task_head is None:
                raise ValueError("train_stage=finetune needs a downstream task data set (set downstream_task)")
        elif stage not in self.pretext:
            raise ValueError(
                f"train_stage {stage!r} is neither finetune nor a pretext task of this model {list(self.pretext)}"
            )
        settings = StageSettings(self.config, stage)
        self.user_model.set_dropout(settings["hidden_dropout_prob"], settings["attn_dropout_prob"])
        self.train_stage = stage

    @property
    def pretext_task(self):
        """The pretext task of the current stage (None when fine-tuning)."""
        return self.pretext[self.train_stage] if self.train_stage in self.pretext else None

    @staticmethod
    def model_type_for(train_stage: str) -> ModelType:
        """SEQUENTIAL for pre-training (one sample per sequence), GENERAL for a downstream task."""
        return ModelType.GENERAL if train_stage == FINETUNE else ModelType.SEQUENTIAL

    def load_pretrained(self, state_dict: dict) -> None:
        """Copy the user-model weights of a pre-training checkpoint (pretext and task heads are not copied)."""
        prefix = "user_model."
        weights = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
        if not weights:
            raise ValueError("the checkpoint holds no user_model weights")
        check_pretrained(self.user_model, weights)  # another backbone or pooling: an error naming both
        try:
            self.user_model.load_state_dict(weights, strict=True)
        except RuntimeError as error:
            raise ValueError(
                f"the checkpoint's user model does not fit this configuration (hidden_size, n_layers, "
                f"MAX_ITEM_LIST_LENGTH and the vocabulary must match pre-training): {error}"
            ) from None

    # ------------------------------------------------------------------ encoder and losses
    def forward(self, item_seq: torch.Tensor, item_seq_len: torch.Tensor | None = None) -> torch.Tensor:
        """(B, L) behaviour ids -> (B, d) user representations."""
        return self.user_model(item_seq)

    def calculate_loss(self, interaction):
        item_seq = interaction[self.ITEM_SEQ]
        if self.train_stage == FINETUNE:
            u = self.user_model(item_seq)
            return self.task_head.loss(u, interaction[self.LABEL] if self.LABEL in interaction else None,
                                       interaction[self.ITEM_ID] if self.ITEM_ID in interaction else None)
        task = self.pretext_task
        if item_seq.size(0) < task.min_batch_size:
            # e.g. a lone leftover sequence has no in-batch negatives: it contributes no signal
            return torch.zeros((), device=item_seq.device, requires_grad=True)
        return task.loss(self.user_model, item_seq, interaction[self.ITEM_SEQ_LEN])

    # ------------------------------------------------------------------ RecBole's prediction API
    def predict(self, interaction):
        """Class probabilities (B, C), P(label=1) (B,), or (user, target) scores (B,), by task kind. In a pre-training
        stage: the score of ``interaction[ITEM_ID]``, as :meth:`full_sort_predict`."""
        u = self.user_model(interaction[self.ITEM_SEQ])
        target = interaction[self.ITEM_ID] if self.ITEM_ID in interaction else None
        if self.train_stage == FINETUNE:
            return self.task_head.predict(u, target)
        if target is None:
            raise ValueError(f"AdaptSSR in train_stage={self.train_stage!r} scores behaviour items: predict needs "
                             f"them in field {self.ITEM_ID!r} (full_sort_predict scores all of them)")
        return (u * self.user_model.item_embedding(target)).sum(dim=-1)

    def full_sort_predict(self, interaction):
        """Scores of every target item for each user (all-ranking), flattened as RecBole expects. In a pre-training
        stage: the user representation's dot product with every behaviour item's embedding (RecBole's sequential
        recommenders' scoring; the pretext tasks do not train it, fine-tuning on a task does)."""
        u = self.user_model(interaction[self.ITEM_SEQ])
        if self.train_stage == FINETUNE:
            return self.task_head.full_sort(u).reshape(-1)
        return (u @ self.user_model.item_embedding.weight[: self.n_items].T).reshape(-1)


MODELS.add("AdaptSSR", AdaptSSR)


def join_tokens(vocabulary: dict) -> str:
    """``{token: id}`` (ids 0..n-1) as one string, the tokens in id order (one line each: an atomic file's tokens
    hold no line break); :func:`split_tokens` inverts it."""
    tokens = [""] * len(vocabulary)
    for token, index in vocabulary.items():
        tokens[index] = str(token)
    return "\n".join(tokens)


def split_tokens(text: str) -> dict:
    """The ``{token: id}`` vocabulary :func:`join_tokens` wrote."""
    return {token: index for index, token in enumerate(text.split("\n"))}
