"""``ccl``: CCL's contrastive pre-training with mask-and-fill views (Bian et al., "Contrastive Curriculum Learning for
Sequential User Behavior Modeling via Data Augmentation", CIKM 2021) on the user representation u.

A data generator, a small masked-behaviour-prediction (MLM) model of its own, makes the views: for each view, a
share rho of each sequence's valid positions (``mask`` operator counts: ``min(ceil(rho n), n - 1)``) is masked and
every masked position is filled with an item sampled from the generator's predicted distribution at that position
(padding and the mask token are never drawn). The two views of each sequence are encoded in one forward pass and
contrasted with symmetric InfoNCE, the 2(B-1) other views of the batch as negatives
(:class:`recbole_adaptssr.pretext.cl4srec.InBatchContrastive`).

The generator (a 1-layer Transformer over its own item embeddings, output tied to them plus a bias) is trained in
the same stage with its MLM loss on the masked positions of the views it fills (ELECTRA-style, no gradient through
the discrete fills): the stage's loss is ``InfoNCE + ccl_generator_weight * MLM``. During the first
``ccl_generator_warmup_epochs`` epochs only the generator trains, so that the encoder first sees fills from a
generator that has learnt something; CCL trains its generator first and then uses it.

Curriculum: rho rises linearly from ``ccl_mask_ratio_start`` to ``ccl_mask_ratio_end`` over
``ccl_curriculum_epochs`` epochs after the warm-up, then stays (easy views, few replaced behaviours, first). The task
counts its own training steps (:meth:`CCL.loss` calls; a buffer, so it is saved and resumed with the model) and knows
the steps of an epoch from the training split it sees in :meth:`CCL.fit_data` (ceil(sequences / train_batch_size));
outside the pipeline, without ``fit_data``, every step counts as an epoch. Validation always uses
``ccl_mask_ratio_end``, so the epochs are scored on one task.

Deviations (docs/pretext-tasks-b.md): CCL's generator conditions on user attributes (fused attribute embeddings),
which pre-training data here does not have; its curriculum is driven by a learnable difficulty evaluator that scores
augmented sequences and schedules them from easy to hard, here replaced by the replaced-share schedule above.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from recbole_adaptssr.augment.sequence import mask
from recbole_adaptssr.encoder.user_model import UserModel
from recbole_adaptssr.item_softmax import DEFAULT_BLOCK_ITEMS, item_cross_entropy
from recbole_adaptssr.pretext.base import StageSettings
from recbole_adaptssr.pretext.cl4srec import InBatchContrastive, check_number


def sample_items(hidden: torch.Tensor, item_weight: torch.Tensor, bias: torch.Tensor, generator=None,
                 block_items: int | None = None) -> torch.Tensor:
    """One item per row of ``hidden (N, d)`` drawn from ``softmax(hidden @ item_weight.T + bias)`` over the rows of
    ``item_weight (V, d)``, by the Gumbel-max trick in blocks of items (no (N, V) tensor). Returns indices (N,)."""
    n, vocabulary = hidden.shape[0], item_weight.shape[0]
    if block_items is None:
        block_items = DEFAULT_BLOCK_ITEMS.get(hidden.device.type, DEFAULT_BLOCK_ITEMS["cpu"])
    best = torch.full((n,), float("-inf"), device=hidden.device)
    choice = torch.zeros(n, dtype=torch.long, device=hidden.device)
    for first in range(0, vocabulary, block_items):
        scores = (hidden @ item_weight[first:first + block_items].T + bias[first:first + block_items]).float()
        u = torch.rand(scores.shape, generator=generator, device=scores.device).clamp_(min=1e-20)
        perturbed = scores - torch.log(-torch.log(u))
        value, index = perturbed.max(dim=1)
        better = value > best
        best = torch.where(better, value, best)
        choice = torch.where(better, index + first, choice)
    return choice


class CCL(InBatchContrastive):
    name = "ccl"

    def __init__(self, settings: StageSettings, n_items: int, hidden_size: int):
        super().__init__(settings, n_items, hidden_size)
        size = int(settings["generator_hidden_size"])
        self.generator_model = UserModel(
            n_items=n_items,
            max_seq_length=int(settings["MAX_ITEM_LIST_LENGTH"]),
            hidden_size=size,
            n_layers=int(settings["generator_layers"]),
            n_heads=int(settings["generator_heads"]),
            inner_size=4 * size,
            hidden_dropout_prob=settings["hidden_dropout_prob"],
            attn_dropout_prob=settings["attn_dropout_prob"],
            hidden_act=settings["hidden_act"],
            layer_norm_eps=settings["layer_norm_eps"],
            initializer_range=settings["initializer_range"],
        )
        self.generator_bias = nn.Parameter(torch.zeros(n_items))
        self.generator_weight = float(settings["generator_weight"])
        self.warmup_epochs = int(settings["generator_warmup_epochs"])
        self.ratio_start = float(settings["mask_ratio_start"])
        self.ratio_end = float(settings["mask_ratio_end"])
        self.curriculum_epochs = int(settings["curriculum_epochs"])
        self.steps_per_epoch = 1
        self.register_buffer("curriculum_step", torch.zeros((), dtype=torch.long))
        self._view_ratio = self.ratio_end  # replaced share of the next views: set by loss() and validation_step()
        self._generator_stats = None  # (MLM loss, share of fills equal to the original) of the last views

    @classmethod
    def check_settings(cls, settings):
        for key in ("mask_ratio_start", "mask_ratio_end"):
            check_number(settings, key, 0, strict=True)
            if settings[key] > 1:
                raise ValueError(f"{settings.key(key)} must be in (0, 1], got {settings[key]!r}")
        if settings["mask_ratio_start"] > settings["mask_ratio_end"]:
            raise ValueError(
                f"{settings.key('mask_ratio_start')}={settings['mask_ratio_start']} must not exceed "
                f"{settings.key('mask_ratio_end')}={settings['mask_ratio_end']} (the curriculum goes from easy to hard)"
            )
        for key in ("curriculum_epochs", "generator_warmup_epochs"):
            check_number(settings, key, 0, integer=True)
        for key in ("generator_hidden_size", "generator_layers", "generator_heads"):
            check_number(settings, key, 1, integer=True)
        if settings["generator_hidden_size"] % settings["generator_heads"]:
            raise ValueError(
                f"{settings.key('generator_hidden_size')}={settings['generator_hidden_size']} must be a multiple of "
                f"{settings.key('generator_heads')}={settings['generator_heads']}"
            )
        check_number(settings, "generator_weight", 0, strict=True)
        super().check_settings(settings)

    def fit_data(self, dataset) -> None:
        """The number of training steps of an epoch, which paces the curriculum."""
        self.steps_per_epoch = max(1, math.ceil(len(dataset) / int(dataset.config["train_batch_size"])))

    # ------------------------------------------------------------------ curriculum
    def epoch_progress(self) -> float:
        """Epochs trained so far (fractional), from the step count."""
        return float(self.curriculum_step) / self.steps_per_epoch

    def mask_ratio(self) -> float:
        """The current replaced share rho: linear from start to end over the curriculum epochs after the warm-up."""
        done = self.epoch_progress() - self.warmup_epochs
        if self.curriculum_epochs == 0:
            return self.ratio_end
        share = min(max(done / self.curriculum_epochs, 0.0), 1.0)
        return self.ratio_start + share * (self.ratio_end - self.ratio_start)

    # ------------------------------------------------------------------ mask-and-fill views
    def mask_and_fill(self, item_seq, item_seq_len, ratio, generator=None):
        """Two mask-and-fill views of each sequence (stacked: (2B, L)), the generator's MLM loss on their masked
        positions and the share of fills equal to the original behaviour."""
        seq2 = torch.cat([item_seq, item_seq], dim=0)
        len2 = torch.cat([item_seq_len, item_seq_len], dim=0)
        masked, _ = mask(seq2, len2, self.n_items, ratio, generator)
        chosen = masked == self.n_items
        targets = seq2[chosen]
        if targets.numel() == 0:  # only length-1 sequences: nothing is masked, the views are the sequences
            zero = self.generator_bias.sum() * 0.0
            return seq2, zero, torch.ones((), device=seq2.device)
        hidden, _ = self.generator_model.encode(masked)
        hidden = hidden[chosen]
        item_weight = self.generator_model.item_embedding.weight[: self.n_items]
        generator_loss = item_cross_entropy(hidden, item_weight, targets, self.generator_bias,
                                            **self.item_softmax_options)
        with torch.no_grad():  # fills among items 1..n_items-1 (0 is padding)
            fills = sample_items(hidden.detach(), item_weight[1:].detach(), self.generator_bias[1:].detach(),
                                 generator) + 1
        filled = masked.masked_scatter(chosen, fills)
        return filled, generator_loss, (fills == targets).float().mean()

    def views(self, encoder, item_seq, item_seq_len, generator=None):
        filled, generator_loss, match = self.mask_and_fill(item_seq, item_seq_len, self._view_ratio, generator)
        self._generator_stats = (generator_loss, match)
        u1, u2 = encoder(filled).chunk(2, dim=0)
        return u1, u2, None

    def loss(self, encoder, item_seq, item_seq_len, generator=None):
        in_warmup = self.epoch_progress() < self.warmup_epochs
        self._view_ratio = self.mask_ratio()
        contrastive = super().loss(encoder, item_seq, item_seq_len, generator)
        generator_loss = self._generator_stats[0]
        self.curriculum_step += 1
        if in_warmup:  # the generator alone learns; the contrastive term carries no gradient
            return self.generator_weight * generator_loss + contrastive.detach() * 0.0
        return contrastive + self.generator_weight * generator_loss

    def validation_step(self, encoder, item_seq, item_seq_len, generator=None):
        self._view_ratio = self.ratio_end
        stats = super().validation_step(encoder, item_seq, item_seq_len, generator)
        generator_loss, match = self._generator_stats
        stats["cl_loss"] = stats["loss"]
        stats["generator_loss"] = float(generator_loss)
        stats["fill_match"] = float(match)
        stats["loss"] = stats["cl_loss"] + self.generator_weight * stats["generator_loss"]
        return stats

    def check_end(self, statistics):
        """Part A's collapse warning, and one when the generator predicts no better than a uniform draw."""
        warnings = [super().check_end(statistics)]
        uniform = math.log(self.n_items - 1)  # fills are drawn among items 1..n_items-1
        loss = statistics.get("generator_loss")
        if loss is not None and loss >= uniform:
            warnings.append(
                f"[{self.name}] generator_loss {loss:.4f} >= log({self.n_items - 1}) = {uniform:.4f}, a uniform "
                "guess: the generator learnt nothing, so its fills are random items (random substitution, not "
                "mask-and-fill). Train longer, or raise ccl_learning_rate or ccl_generator_warmup_epochs."
            )
        return " ".join(w for w in warnings if w) or None
