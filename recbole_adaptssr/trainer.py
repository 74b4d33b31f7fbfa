"""Trainers of recbole-adaptssr, subclasses of RecBole's ``Trainer`` (no patching of RecBole's classes):

* :class:`TaskTrainer`: a downstream task (RecBole's fit/evaluate), ranking only the task's target items, keeping
  the best epoch, and writing checkpoints that load with ``weights_only=True``;
* :class:`AdaptSSRTrainer`: one pre-training stage (a pretext task) with its own optimizer, epochs, patience and
  validation statistics; the experiment layer runs the stages in order.
"""

from __future__ import annotations

import copy
from time import time

import numpy as np
import torch
from recbole.trainer import Trainer
from recbole.utils import set_color
from tqdm import tqdm

from recbole_adaptssr.checkpoint import save_checkpoint
from recbole_adaptssr.compat import save_trainer_checkpoint
from recbole_adaptssr.pretext.base import StageSettings


class TaskTrainer(Trainer):
    """RecBole's ``Trainer`` for our downstream tasks.

    * The all-ranking candidates are the task's target items: when RecBole's own sequential models run on a task,
      behaviours share the target vocabulary and behaviour-only items are appended after the targets
      (``candidate_item_num``); they can never be a positive, so their scores are set to -inf, keeping the
      candidate set identical to the one AdaptSSR ranks.
    * ``best_epoch`` is the epoch of the kept (best validation) model.
    """

    best_epoch = -1

    def _save_checkpoint(self, epoch, verbose=True, **kwargs):
        self.best_epoch = epoch
        save_trainer_checkpoint(self, epoch, kwargs.pop("saved_model_file", self.saved_model_file), verbose)

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
    """Trains one pre-training stage of :class:`~recbole_adaptssr.model.adaptssr.AdaptSSR` (:meth:`train_stage`).

    The stage's settings come from its :class:`StageSettings` view: ``<stage>_epochs``, ``<stage>_learning_rate``,
    ``<stage>_weight_decay``, ``<stage>_stopping_step``, ``<stage>_valid_metric`` (each falling back to the general
    key). Each stage gets a fresh optimizer, trains with RecBole's ``_train_epoch`` (progress bars, NaN check, grad
    clipping), validates after every epoch, stops early after ``stopping_step`` epochs without improvement,
    restores the best epoch and writes a ``weights_only``-loadable checkpoint of it.
    """

    def train_stage(self, stage, train_data, valid_data, item_vocabulary, checkpoint_path, show_progress=False,
                    epoch_callback=None) -> dict:
        self.model.set_stage(stage)
        task = self.model.pretext_task
        task.fit_data(train_data.dataset)
        settings = StageSettings(self.config, stage)
        self.optimizer = self._build_optimizer(learning_rate=settings["learning_rate"],
                                               weight_decay=settings["weight_decay"] or 0.0)
        epochs, patience_limit = int(settings["epochs"]), int(settings["stopping_step"])
        metric = settings.get("valid_metric", "loss")
        bigger = type(task).valid_metrics(settings)[metric]

        initial = self.evaluate_pretrain(valid_data, show_progress=False)
        self.logger.info(set_color(f"[{stage}] before training", "green") + f": {_fmt(initial)}")
        warning = task.check_start(initial)
        if warning:
            self.logger.warning(warning)
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
                set_color(f"[{stage}] epoch {epoch} valid", "blue") + f" [time: {time() - trained:.2f}s]: {_fmt(result)}"
            )
            self.tensorboard.add_scalar(f"{stage}/train_loss", train_loss, epoch)
            for key, value in result.items():
                self.tensorboard.add_scalar(f"{stage}/valid_{key}", value, epoch)
            if epoch_callback is not None:
                epoch_callback(stage, epoch, result)
            score = result[metric]
            if best_score is None or (score > best_score if bigger else score < best_score):
                best_score, best_epoch, best_result, patience = score, epoch, result, 0
                best_state = copy.deepcopy(self.model.state_dict())
            else:
                patience += 1
                if patience >= patience_limit:
                    self.logger.info(f"[{stage}] early stop: no better valid {metric} for {patience} epochs")
                    break
        if best_state is not None:
            self.model.load_state_dict(best_state)
        save_checkpoint(checkpoint_path, self.model, stage, self.config, item_vocabulary, best_result, best_epoch)
        self.logger.info(
            set_color(f"[{stage}] best epoch {best_epoch}", "yellow")
            + f" (valid {metric}): {_fmt(best_result)}; saved {checkpoint_path}"
        )
        return {"best_epoch": best_epoch, "valid_metric": metric, "best_valid_result": best_result,
                "initial_valid_result": initial, "history": history, "checkpoint": checkpoint_path}

    @torch.no_grad()
    def evaluate_pretrain(self, valid_data, show_progress=False) -> dict:
        """The current stage's validation statistics on held-out sequences, averaged over sequences.

        Dropout stays on (it IS the implicit augmentation); augmentations and dropout masks come from a
        generator seeded with ``seed`` so every epoch is scored on the same views.
        """
        model = self.model
        task = model.pretext_task
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
                if seq.size(0) < task.min_batch_size:
                    continue
                stats = task.validation_step(model.user_model, seq, interaction[model.ITEM_SEQ_LEN], generator=generator)
                n = seq.size(0)
                for key, value in stats.items():
                    totals[key] = totals.get(key, 0.0) + float(value) * n
                count += n
        model.train(was_training)
        if count == 0:
            raise ValueError(f"the validation split holds no batch of at least {task.min_batch_size} sequences")
        return {key: value / count for key, value in totals.items()}


def _fmt(result: dict) -> str:
    return "  ".join(f"{key}: {value:.4f}" for key, value in result.items())
