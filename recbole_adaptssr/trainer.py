"""Trainers of recbole-adaptssr: pre-training stages on top of RecBole's ``Trainer``."""

from __future__ import annotations

import copy
import os
from time import time

import numpy as np
import torch
from recbole.trainer import Trainer
from recbole.utils import set_color
from tqdm import tqdm

from recbole_adaptssr.checkpoint import save_checkpoint

# mean fusion coefficient below which the ranking stage starts from nearly collapsed representations
COLLAPSE_LAMBDA = 0.05

# validation metric of each pre-training stage -> whether bigger is better
STAGE_METRICS = {
    "mlm": {"loss": False, "mlm_acc": True},
    "ssr": {"loss": False, "acc_implicit": True, "acc_explicit": True},
}


class TaskTrainer(Trainer):
    """RecBole's ``Trainer`` for our downstream tasks: the all-ranking candidates are the task's target items.

    When RecBole's own sequential models run on a task, behaviours share the target vocabulary and
    behaviour-only items are appended after the targets (``candidate_item_num``); they can never be a positive,
    so their scores are set to -inf, keeping the candidate set identical to the one AdaptSSR ranks.
    """

    def _full_sort_batch_eval(self, batched_data):
        interaction, scores, positive_u, positive_i = super()._full_sort_batch_eval(batched_data)
        if self.candidate_item_num is not None:
            scores[:, self.candidate_item_num:] = -np.inf
        return interaction, scores, positive_u, positive_i

    @torch.no_grad()
    def evaluate(self, eval_data, load_best_model=True, model_file=None, show_progress=False):
        self.candidate_item_num = getattr(eval_data._dataset, "candidate_item_num", None)
        return super().evaluate(eval_data, load_best_model, model_file, show_progress)


class AdaptSSRTrainer(TaskTrainer):
    """Runs the pre-training stages of :class:`~recbole_adaptssr.model.adaptssr.AdaptSSR`.

    Each stage gets a fresh optimizer (``learner``, ``learning_rate``), trains for at most
    ``<stage>_epochs`` epochs with RecBole's ``_train_epoch`` (progress bars, NaN check, grad clipping),
    validates after every epoch, stops early after ``stopping_step`` epochs without improvement, restores
    the best epoch and writes a ``weights_only``-loadable checkpoint of it.
    """

    def pretrain(self, train_data, valid_data, item_vocabulary, stages=None, show_progress=False) -> dict:
        """Run ``stages`` (default ``pretrain_stages``) in order; return each stage's summary."""
        stages = list(stages if stages is not None else self.config["pretrain_stages"])
        unknown = [s for s in stages if s not in STAGE_METRICS]
        if unknown:
            raise ValueError(f"pretrain_stages may only hold {list(STAGE_METRICS)}, got {unknown}")
        return {
            stage: self.train_stage(stage, train_data, valid_data, item_vocabulary, show_progress)
            for stage in stages
        }

    def train_stage(self, stage, train_data, valid_data, item_vocabulary, show_progress=False) -> dict:
        self.model.set_stage(stage)
        self.optimizer = self._build_optimizer()
        epochs = int(self.config[f"{stage}_epochs"])
        metric = "loss" if stage == "mlm" else self.config["ssr_valid_metric"]
        if metric not in STAGE_METRICS[stage]:
            raise ValueError(f"ssr_valid_metric must be one of {list(STAGE_METRICS[stage])}, got {metric!r}")
        bigger = STAGE_METRICS[stage][metric]

        initial = self.evaluate_pretrain(valid_data, show_progress=False)
        self.logger.info(set_color(f"[{stage}] before training", "green") + f": {_fmt(initial)}")
        if stage == "ssr" and initial.get("lambda", 1.0) < COLLAPSE_LAMBDA and self.config["lambda_mode"] == "adaptive":
            self.logger.warning(
                f"[ssr] mean lambda {initial['lambda']:.4f} < {COLLAPSE_LAMBDA}: the two augmented views are "
                "almost identical (cross-view cosine ~1), typically because the MLM warm-up leaves the pooled "
                "representations of all users nearly parallel. The ranking loss then starts near log 2 and may "
                "stay there on small data (see README, 'Known behaviour'); compare with pretrain_stages=[ssr]."
            )
        best_score, best_epoch, best_state, best_result = None, -1, None, initial
        history, patience = [], 0
        for epoch in range(epochs):
            start = time()
            train_loss = self._train_epoch(train_data, epoch, show_progress=show_progress)
            train_loss = sum(train_loss) if isinstance(train_loss, tuple) else train_loss
            train_loss /= max(len(train_data), 1)
            trained = time()
            result = self.evaluate_pretrain(valid_data, show_progress=show_progress)
            history.append({"epoch": epoch, "train_loss": train_loss, **result})
            self.logger.info(
                set_color(f"[{stage}] epoch {epoch} training", "green")
                + f" [time: {trained - start:.2f}s, train loss: {train_loss:.4f}]"
            )
            self.logger.info(
                set_color(f"[{stage}] epoch {epoch} valid", "blue")
                + f" [time: {time() - trained:.2f}s]: {_fmt(result)}"
            )
            self.tensorboard.add_scalar(f"{stage}/train_loss", train_loss, epoch)
            for key, value in result.items():
                self.tensorboard.add_scalar(f"{stage}/valid_{key}", value, epoch)
            score = result[metric]
            if best_score is None or (score > best_score if bigger else score < best_score):
                best_score, best_epoch, best_result, patience = score, epoch, result, 0
                best_state = copy.deepcopy(self.model.state_dict())
            else:
                patience += 1
                if patience >= self.config["stopping_step"]:
                    self.logger.info(f"[{stage}] early stop: no better valid {metric} for {patience} epochs")
                    break
        if best_state is not None:
            self.model.load_state_dict(best_state)
        path = os.path.join(
            self.config["checkpoint_dir"], f"{self.config['model']}-{self.config['dataset']}-{stage}.pth"
        )
        save_checkpoint(path, self.model, stage, self.config, item_vocabulary, best_result, best_epoch)
        self.logger.info(
            set_color(f"[{stage}] best epoch {best_epoch}", "yellow")
            + f" (valid {metric}): {_fmt(best_result)}; saved {path}"
        )
        return {"best_epoch": best_epoch, "valid_metric": metric, "best_valid_result": best_result,
                "initial_valid_result": initial, "history": history, "checkpoint": path}

    @torch.no_grad()
    def evaluate_pretrain(self, valid_data, show_progress=False) -> dict:
        """Loss and ranking accuracies of the current stage on held-out sequences.

        Dropout stays on (it IS the implicit augmentation); augmentations and dropout masks come from a
        generator seeded with ``seed`` so every epoch is scored on the same views.
        """
        model = self.model
        was_training = model.training
        model.train()
        devices = [self.device] if self.device.type == "cuda" else []
        totals, count = {}, 0
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.config["seed"])
            generator = torch.Generator(device=self.device).manual_seed(self.config["seed"])
            batches = tqdm(valid_data, desc=set_color("Validate", "pink"), ncols=100) if show_progress else valid_data
            for interaction in batches:
                interaction = interaction.to(self.device)
                seq = interaction[model.ITEM_SEQ]
                seq_len = interaction[model.ITEM_SEQ_LEN]
                if seq.size(0) < 2:
                    continue
                if model.train_stage == "mlm":
                    loss, acc = model.mlm_loss(seq, seq_len, generator=generator)
                    stats = {"loss": float(loss), "mlm_acc": float(acc)}
                else:
                    loss, views = model.ssr_loss(seq, seq_len, generator=generator)
                    stats = {"loss": float(loss), **model.ssr_statistics(views)}
                n = seq.size(0)
                for key, value in stats.items():
                    totals[key] = totals.get(key, 0.0) + value * n
                count += n
        model.train(was_training)
        if count == 0:
            raise ValueError("the validation split holds no batch of at least 2 sequences")
        return {key: value / count for key, value in totals.items()}


def _fmt(result: dict) -> str:
    return "  ".join(f"{key}: {value:.4f}" for key, value in result.items())
