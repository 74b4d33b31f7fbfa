"""Trainers of recbole-adaptssr, subclasses of RecBole's ``Trainer`` (no patching of RecBole's classes):

* :class:`TaskTrainer`: a downstream task (RecBole's fit/evaluate), ranking only the task's target items, keeping
  the best epoch, stopping by the rule of :mod:`recbole_adaptssr.stopping` (patience in epochs and steps, epoch,
  step and time caps) and recording how it stopped (:attr:`TaskTrainer.stop_record`), and writing checkpoints
  that load with ``weights_only=True``;
* :class:`AdaptSSRTrainer`: one pre-training stage (a pretext task) with its own optimizer, epochs, patience and
  validation statistics; the experiment layer runs the stages in order. After every epoch it can write a resume
  checkpoint (model, optimizer, early-stopping state, RNG states of torch/CUDA/numpy/random and of the data
  loaders' generators), from which :meth:`AdaptSSRTrainer.train_stage` continues exactly where it stopped.

Every checkpoint is written atomically with a content checksum, and verified when read back
(:mod:`recbole_adaptssr.checkpoint`).
"""

from __future__ import annotations

import copy
import random
from time import time

import numpy as np
import torch
from recbole.trainer import TraditionalTrainer, Trainer
from recbole.utils import dict2str, set_color
from torch.nn.utils import clip_grad_norm_
from tqdm import tqdm

from recbole_adaptssr import acceleration, distributed
from recbole_adaptssr import precision as step_precision

from recbole_adaptssr.checkpoint import (FORMAT_VERSION, CheckpointError, save_checkpoint, save_payload,
                                         verify_checkpoint)
from recbole_adaptssr.compat import plain, save_trainer_checkpoint
from recbole_adaptssr.data.fingerprint import checkpoint_record
from recbole_adaptssr.evaluation.full_sort import fast_full_sort
from recbole_adaptssr.pretext.base import SAMPLES, StageSettings
from recbole_adaptssr.row_sparse_adam import build_row_sparse_adam
from recbole_adaptssr.stopping import EarlyStopping, StoppingRule

RESUME_KIND = "pretrain-resume"
#: what RecBole's Collector gathers per evaluation batch (the rest of its data struct describes the whole split)
BATCH_KEYS = ("rec.topk", "rec.meanrank", "rec.score", "rec.items", "data.label")


class TaskTrainer(Trainer):
    """RecBole's ``Trainer`` for our downstream tasks.

    * The all-ranking candidates are the task's target items: when RecBole's own sequential models run on a task,
      behaviours share the target vocabulary and behaviour-only items are appended after the targets
      (``candidate_item_num``); they can never be a positive, so their scores are set to -inf, keeping the
      candidate set identical to the one AdaptSSR ranks.
    * ``best_epoch`` is the epoch of the kept (best validation) model.
    * :meth:`fit` stops by :class:`~recbole_adaptssr.stopping.StoppingRule` (``epochs``, ``stopping_step``,
      ``stopping_steps``, ``max_steps``, ``max_seconds``; the earliest of equal scores is kept) and leaves its
      :class:`~recbole_adaptssr.stopping.StopRecord` in ``stop_record``.
    """

    best_epoch = -1
    stopper = None  # the EarlyStopping of the run in progress (its step and time caps limit each epoch)
    stop_record = None

    def __init__(self, config, model):
        # RecBole's AbstractTrainer wraps the model in DistributedDataParallel (CUDA only, and its forward is never
        # called); here every rank starts from rank 0's weights and gradients are averaged after each backward
        # (:meth:`sync_gradients`), on CPUs (gloo) as on GPUs (NCCL).
        with distributed.single_process_view(config):
            super().__init__(config, model)
        distributed.broadcast_module(self.model)
        #: the training step's arithmetic (``finetune_precision`` / ``precision``; a pre-training stage sets its own)
        self.precision = step_precision.setting(StageSettings(config, "finetune"))

    # ------------------------------------------------------------------ training
    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        """RecBole's epoch loop (progress bar, NaN check, gradient clipping, AMP scaler), one :meth:`_train_step`
        per batch; under ``torch.distributed`` each rank reads its shard (``set_epoch`` reshuffles the shards)."""
        self.model.train()
        loss_func = loss_func or self.model.calculate_loss
        sampler = getattr(train_data, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch_idx)
        source = batches = self._epoch_batches(train_data)
        if show_progress:
            batches = tqdm(batches, total=len(train_data), ncols=100, desc=set_color(f"Train {epoch_idx:>5}", "pink"))
        if self.stopper is not None:  # the step and time caps may end the epoch early
            batches = self.stopper.limit(batches)
        scaler = torch.amp.GradScaler(enabled=self.enable_scaler)
        total_loss = None
        for interaction in batches:
            losses = self._train_step(interaction, loss_func, scaler)
            # summed on the device in float64 (no wait per step): the same value as summing Python floats
            total_loss = acceleration.accumulate_losses(total_loss, losses)
        if hasattr(source, "close"):  # an epoch a cap cut short still runs the end of its batches' generator
            source.close()
        return acceleration.losses_to_float(total_loss) if total_loss is not None else 0.0

    def _epoch_batches(self, train_data):
        """The epoch's batches on the training device (AdaptSSRTrainer: gathered on the device, same batches)."""
        return (interaction.to(self.device) for interaction in train_data)

    def _train_step(self, interaction, loss_func, scaler):
        """One optimisation step: forward (autocast when ``enable_amp``), NaN check, backward, gradient averaging
        over ranks, clipping, optimizer step. Returns the loss (or the tuple of loss parts), detached."""
        self.optimizer.zero_grad()
        with torch.autocast(device_type=self.device.type, enabled=self.enable_amp), \
                step_precision.training_precision(self.device, "float32" if self.enable_amp else self.precision):
            losses = loss_func(interaction)
        loss = sum(losses) if isinstance(losses, tuple) else losses
        self._check_nan(loss)
        scaler.scale(loss).backward()
        self._apply_gradients(scaler)
        if isinstance(losses, tuple):
            return tuple(part.detach() for part in losses)
        return losses.detach()

    def _apply_gradients(self, scaler=None) -> None:
        """What follows a backward: gradient averaging over ranks, clipping, the optimizer step (through the AMP
        ``scaler`` when one is given)."""
        self.sync_gradients()
        if self.clip_grad_norm:
            if scaler is not None:
                scaler.unscale_(self.optimizer)
            clip_grad_norm_(self.model.parameters(), **self.clip_grad_norm)
        if scaler is None:
            self.optimizer.step()
        else:
            scaler.step(self.optimizer)
            scaler.update()

    def sync_gradients(self) -> None:
        """Average the gradients over the ranks of a distributed run (nothing in a single process)."""
        distributed.all_reduce_gradients(self.model.parameters())

    def fit(self, train_data, valid_data=None, verbose=True, saved=True, show_progress=False, callback_fn=None):
        """RecBole's ``fit`` (logs, tensorboard, ``eval_step``, ``callback_fn(epoch, valid_score)``, the best epoch's
        checkpoint) with the stopping rule of :mod:`recbole_adaptssr.stopping`; returns ``(best valid score, best
        valid result)`` and leaves the run's :class:`StopRecord` in :attr:`stop_record`."""
        single_pass = isinstance(self, TraditionalTrainer)  # Pop, ItemKNN, EASE, ...: one exact pass
        rule = StoppingRule.from_settings(self.config, epochs=int(self.epochs), stopping_step=int(self.stopping_step))
        self.stopper = stopper = EarlyStopping(rule, self.valid_metric_bigger,
                                               check_time_per_step=not distributed.is_distributed())
        if saved and self.start_epoch >= self.epochs:
            self._save_checkpoint(-1, verbose=verbose)
        self.eval_collector.data_collect(train_data)
        if self.config["train_neg_sample_args"].get("dynamic", False):
            train_data.get_model(self.model)
        for epoch_idx in range(self.start_epoch, self.epochs):
            began = time()
            train_loss = self._train_epoch(train_data, epoch_idx, show_progress=show_progress)
            self.train_loss_dict[epoch_idx] = sum(train_loss) if isinstance(train_loss, tuple) else train_loss
            if verbose:
                self.logger.info(self._generate_train_loss_output(epoch_idx, began, time(), train_loss))
            self._add_train_loss_to_tensorboard(epoch_idx, train_loss)
            self.wandblogger.log_metrics({"epoch": epoch_idx, "train_loss": train_loss, "train_step": epoch_idx},
                                         head="train")
            if self.eval_step <= 0 or not valid_data or (epoch_idx + 1) % self.eval_step:
                if saved and (self.eval_step <= 0 or not valid_data):  # no validation: the last epoch is kept
                    self._save_checkpoint(epoch_idx, verbose=verbose)
                stopper.end_epoch(epoch_idx, None, may_stop=False)  # only the caps, without a validation
            else:
                valid_score = self._validate_epoch(epoch_idx, valid_data, verbose, saved, show_progress)
                if callback_fn:
                    callback_fn(epoch_idx, valid_score)
            stopper.stopped_by = distributed.broadcast_object(stopper.stopped_by)  # rank 0's time decides
            if stopper.stopped_by is not None:
                break
        self.stopper = None
        self.stop_record = stopper.record()
        if single_pass:
            self.stop_record.still_improving = False
        if verbose:
            self.logger.info(f"stopped by {self.stop_record.stopped_by} after {self.stop_record.epochs_run} epoch(s), "
                             f"{self.stop_record.steps_run} steps ({rule.describe()}); best epoch "
                             f"{self.stop_record.best_epoch}")
        self._add_hparam_to_tensorboard(self.best_valid_score)
        return self.best_valid_score, self.best_valid_result

    def _validate_epoch(self, epoch_idx, valid_data, verbose, saved, show_progress) -> float:
        """Validate, tell the stopping rule, keep (and save) a new best epoch, log as RecBole does; the score."""
        began = time()
        valid_score, valid_result = self._valid_epoch(valid_data, show_progress=show_progress)
        if self.stopper.end_epoch(epoch_idx, valid_score):
            self.best_valid_score, self.best_valid_result = valid_score, valid_result
            if saved:
                self._save_checkpoint(epoch_idx, verbose=verbose)
        self.cur_step = self.stopper.epochs_run - 1 - self.stopper.best_epoch  # RecBole's count of epochs since
        if verbose:
            self.logger.info(set_color(f"epoch {epoch_idx} evaluating", "green")
                             + f" [{set_color('time', 'blue')}: {time() - began:.2f}s, "
                             + f"{set_color('valid_score', 'blue')}: {valid_score:f}]")
            self.logger.info(set_color("valid result", "blue") + ": \n" + dict2str(valid_result))
        self.tensorboard.add_scalar("Vaild_score", valid_score, epoch_idx)
        self.wandblogger.log_metrics(valid_result, head="valid")
        return valid_score

    def _save_checkpoint(self, epoch, verbose=True, **kwargs):
        self.best_epoch = epoch
        if distributed.is_main_process():  # one writer under torch.distributed
            save_trainer_checkpoint(self, epoch, kwargs.pop("saved_model_file", self.saved_model_file), verbose)

    def _full_sort_batch_eval(self, batched_data):
        interaction, scores, positive_u, positive_i = super()._full_sort_batch_eval(batched_data)
        if self.candidate_item_num is not None:
            scores[:, self.candidate_item_num:] = -np.inf
        return interaction, scores, positive_u, positive_i

    @torch.no_grad()
    def evaluate(self, eval_data, load_best_model=True, model_file=None, show_progress=False):
        """RecBole's ``evaluate``; the kept checkpoint it loads (``load_best_model``) is verified first: an empty,
        truncated or altered file is an error naming it, never a silent load of damaged weights."""
        if not eval_data:
            return None
        self.candidate_item_num = getattr(eval_data._dataset, "candidate_item_num", None)
        if load_best_model:
            distributed.barrier()  # rank 0 may still be writing the checkpoint the others load
            checkpoint_file = model_file or self.saved_model_file
            checkpoint = verify_checkpoint(checkpoint_file, map_location=self.device,
                                           require_checksum=model_file is None)
            self.model.load_state_dict(checkpoint["state_dict"])
            self.model.load_other_parameter(checkpoint.get("other_parameter"))
            self.logger.info(f"Loading model structure and parameters from {checkpoint_file}")
        eval_data = fast_full_sort(eval_data, self.config["full_sort_fast_batches"] is not False)  # same batches
        if distributed.is_distributed():
            return self._evaluate_distributed(eval_data, show_progress)
        return super().evaluate(eval_data, False, model_file, show_progress)

    def _evaluate_distributed(self, eval_data, show_progress=False):
        """RecBole's evaluation, exact under ``torch.distributed``: batch k of the (unsharded) evaluation loader is
        scored on rank k mod N, the collected rows (top-k hits, scores, labels) of every batch are gathered and put
        back in batch order, and the metrics are computed once on the whole split, as a single process computes
        them (RecBole averages per-rank metric values, which is approximate for AUC)."""
        from recbole.data.dataloader import FullSortEvalDataLoader
        from recbole.utils import EvaluatorType

        self.model.eval()
        if isinstance(eval_data, FullSortEvalDataLoader):
            eval_func = self._full_sort_batch_eval
            if self.item_tensor is None:
                self.item_tensor = eval_data._dataset.get_item_feature().to(self.device)
        else:
            eval_func = self._neg_sample_batch_eval
        if self.config["eval_type"] == EvaluatorType.RANKING:
            self.tot_item_num = eval_data._dataset.item_num
        ranks, me = distributed.world_size(), distributed.rank()
        batches = tqdm(eval_data, total=len(eval_data), ncols=100, desc=set_color("Evaluate   ", "pink")) \
            if show_progress else eval_data
        rows = {}
        for index, batched_data in enumerate(batches):
            if index % ranks != me:
                continue
            interaction, scores, positive_u, positive_i = eval_func(batched_data)
            self.eval_collector.eval_batch_collect(scores, interaction, positive_u, positive_i)
            struct = self.eval_collector.get_data_struct()  # this batch's rows (and the split's constants)
            rows[index] = {key: struct[key] for key in BATCH_KEYS if key in struct}
        self.eval_collector.model_collect(self.model)
        gathered = {}
        for part in distributed.all_gather_object(rows):
            gathered.update(part)
        for index in sorted(gathered):
            for key, value in gathered[index].items():
                self.eval_collector.data_struct.update_tensor(key, value)
        return self.evaluator.evaluate(self.eval_collector.get_data_struct())

    def resume_checkpoint(self, resume_file):
        """RecBole's ``resume_checkpoint`` on a verified file."""
        verify_checkpoint(str(resume_file))
        super().resume_checkpoint(resume_file)


class AdaptSSRTrainer(TaskTrainer):
    """Trains one pre-training stage of :class:`~recbole_adaptssr.model.adaptssr.AdaptSSR` (:meth:`train_stage`).

    The stage's settings come from its :class:`StageSettings` view: ``<stage>_epochs``, ``<stage>_learning_rate``,
    ``<stage>_weight_decay``, ``<stage>_valid_metric`` and the stopping rule's keys (each falling back to the
    general key). Each stage gets a fresh optimizer, trains with RecBole's ``_train_epoch`` (progress bars, NaN
    check, grad clipping), validates after every epoch, stops by :class:`~recbole_adaptssr.stopping.StoppingRule`,
    restores the best epoch, writes a ``weights_only``-loadable checkpoint of it (with the stage's history and
    :class:`~recbole_adaptssr.stopping.StopRecord`) and reports the task's ``check_end`` warning on the kept
    epoch's statistics.
    """

    def train_stage(self, stage, train_data, valid_data, item_vocabulary, checkpoint_path, show_progress=False,
                    epoch_callback=None, resume_path=None, resume_state=None, stage_index=0, rule=None) -> dict:
        """Train ``stage`` and write its best epoch to ``checkpoint_path``; return the stage's summary (with its
        ``stopping`` record, :class:`~recbole_adaptssr.stopping.StopRecord` as a dict).

        ``rule``: the stage's :class:`StoppingRule` (default: from its settings, ``<stage>_epochs``,
        ``<stage>_stopping_step``, ``<stage>_stopping_steps``, ``<stage>_max_steps``, ``<stage>_max_seconds``,
        ``<stage>_min_epochs``). ``resume_path``: where to write, after every epoch, the resume checkpoint (atomic)
        that ``resume_state`` (that file, loaded) continues from: the next epoch then runs exactly as it would have
        without the interruption. ``epoch_callback(stage, epoch, valid_result)`` runs after an epoch's resume
        checkpoint is written."""
        self.model.set_stage(stage)
        task = self.model.pretext_task
        task.fit_data(train_data.dataset)
        settings = StageSettings(self.config, stage)
        self.optimizer = self._build_stage_optimizer(settings)
        self.close_accelerator()
        self.accelerator = acceleration.StageAccelerator(self, settings)  # device batches, CUDA graph, TF32
        metric = settings.get("valid_metric", "loss")
        bigger = type(task).valid_metrics(settings)[metric]
        rule = rule or StoppingRule.from_settings(settings)
        stopper = EarlyStopping(rule, bigger, check_time_per_step=not distributed.is_distributed())
        loaders = (train_data, valid_data)
        self.logger.info(set_color(f"[{stage}] stopping", "green") + f": valid {metric}, {rule.describe()}")

        if resume_state is None:
            initial = self.evaluate_pretrain(valid_data, show_progress=False)
            self._log_statistics(f"[{stage}] before training", "green", initial)
            initial = _scalars(initial)  # the groups (by_pair) are logged, and kept in each epoch's history
            warning = task.check_start(initial)
            if warning:
                self.logger.warning(warning)
            best_state, best_result, history, last_epoch = None, initial, [], -1
        else:
            self.model.load_state_dict(resume_state["model_state"])
            self.optimizer.load_state_dict(resume_state["optimizer"])
            restore_rng_state(resume_state["rng"], loaders)
            # distributed: the file holds rank 0's random states; each rank continues on a stream of its own
            distributed.seed_rank(self.config["seed"] + 1000 * (resume_state["epoch"] + 1))
            initial = resume_state["initial"]
            best_state, best_result = resume_state["best_state"], resume_state["best_result"]
            history, last_epoch = list(resume_state["history"]), resume_state["epoch"]
            stopper.load_state_dict(resume_stopping_state(resume_state, len(train_data)))
            self.logger.info(set_color(f"[{stage}] resumed", "green") + f" after epoch {last_epoch}")

        data = checkpoint_record(self.config, item_vocabulary)  # the data this stage trains on

        def progress(epoch, finished):
            return {
                "format_version": FORMAT_VERSION, "kind": RESUME_KIND, "stage": stage, "stage_index": stage_index,
                "data": data,
                "epoch": epoch, "finished": finished, "stopped": stopper.stopped_by is not None,
                "model_state": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
                "optimizer": None if finished else self.optimizer.state_dict(),
                "best_score": None if stopper.best_score is None else float(stopper.best_score),
                "best_epoch": stopper.best_epoch, "patience": max(stopper.epochs_run - 1 - stopper.best_epoch, 0),
                "best_state": None if finished else best_state, "best_result": plain(best_result),
                "initial": plain(initial), "history": plain(history), "stopping": stopper.state_dict(),
                "valid_metric": metric, "rng": rng_state(loaders),
            }

        self.stopper = stopper  # its step and time caps limit each epoch (_train_epoch)
        epoch = last_epoch
        while stopper.stopped_by is None and epoch + 1 < rule.epochs:
            epoch += 1
            start, steps_before = time(), stopper.steps_run
            train_loss = self._train_epoch(train_data, epoch, show_progress=show_progress)
            train_loss = sum(train_loss) if isinstance(train_loss, tuple) else train_loss
            train_loss /= max(stopper.steps_run - steps_before, 1)
            trained = time()
            result = self.evaluate_pretrain(valid_data, show_progress=show_progress)
            history.append({"epoch": epoch, "steps": stopper.steps_run, "train_loss": train_loss, **result})
            self.logger.info(
                set_color(f"[{stage}] epoch {epoch} training", "green")
                + f" [time: {trained - start:.2f}s, steps: {stopper.steps_run}, train loss: {train_loss:.4f}]"
            )
            self._log_statistics(f"[{stage}] epoch {epoch} valid", "blue", result,
                                 f" [time: {time() - trained:.2f}s]")
            self.logger.debug(f"[{stage}] epoch {epoch} memory: {_memory(self.device)}")
            self.tensorboard.add_scalar(f"{stage}/train_loss", train_loss, epoch)
            for key, value in _scalars(result).items():
                self.tensorboard.add_scalar(f"{stage}/valid_{key}", value, epoch)
            if stopper.end_epoch(epoch, result[metric], may_stop=task.may_stop(result)):
                best_result, best_state = _scalars(result), copy.deepcopy(self.model.state_dict())
            # rank 0's decision, whatever a rank's floats or clock say
            stopper.stopped_by = distributed.broadcast_object(stopper.stopped_by)
            if resume_path is not None and distributed.is_main_process():
                save_payload(progress(epoch, finished=False), resume_path)
            if epoch_callback is not None:
                epoch_callback(stage, epoch, result)
        self.stopper = None
        self.close_accelerator()
        record = stopper.record()
        if record.stopped_by == "patience":
            self.logger.info(f"[{stage}] early stop: no better valid {metric} for "
                             f"{record.epochs_run - 1 - record.best_epoch} epochs "
                             f"({record.steps_run - stopper.best_steps} steps)")
        if best_state is not None:
            self.model.load_state_dict(best_state)
        summary = {"valid_metric": metric, "initial_valid_result": initial, "history": history,
                   "stopping": record.as_dict(), "stopping_rule": rule.describe()}
        if distributed.is_main_process():  # one writer; the others wait until the files are complete
            save_checkpoint(checkpoint_path, self.model, stage, self.config, item_vocabulary, best_result,
                            record.best_epoch, summary=summary)
            if resume_path is not None:  # the stage's end: its kept epoch, and the RNG states the next stage finds
                save_payload(progress(max(last_epoch, epoch), finished=True), resume_path)
        distributed.barrier()
        warning = task.check_end(best_result) if hasattr(task, "check_end") else None
        if warning:
            self.logger.warning(warning)
        self._log_statistics(f"[{stage}] best epoch {record.best_epoch}", "yellow", best_result,
                             f" (valid {metric}; stopped by {record.stopped_by} after {record.epochs_run} epochs, "
                             f"{record.steps_run} steps)")
        self.logger.info(f"[{stage}] saved {checkpoint_path}")
        return {"best_epoch": record.best_epoch, "valid_metric": metric, "best_valid_result": best_result,
                "initial_valid_result": initial, "history": history, "checkpoint": checkpoint_path,
                "stopping": record.as_dict(), "stopping_rule": rule.describe()}

    def _log_statistics(self, title: str, color: str, result: dict, detail: str = "") -> None:
        """``title detail: key: value ...`` and, for grouped statistics (``by_pair``), one line per group."""
        self.logger.info(set_color(title, color) + f"{detail}: {_fmt(result)}")
        for key, groups in result.items():
            if isinstance(groups, dict):
                self.logger.info(f"{title.split(']')[0]}] {key}: " + "; ".join(
                    f"{name} {_fmt(values)}" for name, values in groups.items()))

    # ------------------------------------------------------------------ accelerated steps (acceleration.py)
    accelerator = None

    def close_accelerator(self) -> None:
        """Release the stage's CUDA graph and device copy of the data, restore the TF32 switches."""
        if self.accelerator is not None:
            self.accelerator.close()
            self.accelerator = None

    def _build_stage_optimizer(self, settings):
        """A stage's own optimizer: RecBole's, or Adam/AdamW with ``fused=True`` when ``fused_optimizer`` is on, or
        the row-sparse Adam of ``sparse_item_update``."""
        learning_rate, weight_decay = settings["learning_rate"], settings["weight_decay"] or 0.0
        if acceleration.flag(settings, "sparse_item_update"):
            return build_row_sparse_adam(self.model, self.learner, learning_rate, weight_decay,
                                         fused=settings.get("fused_optimizer", False) is True,
                                         key=settings.key("sparse_item_update"))
        if settings.get("fused_optimizer", False) is True:
            optimizer = acceleration.build_fused_optimizer(self.model.parameters(), self.learner, learning_rate,
                                                           weight_decay)
            if optimizer is not None:
                return optimizer
        return self._build_optimizer(learning_rate=learning_rate, weight_decay=weight_decay)

    def _epoch_batches(self, train_data):
        batches = self.accelerator.batches(train_data) if self.accelerator is not None else None
        try:
            yield from super()._epoch_batches(train_data) if batches is None else batches
        finally:  # also when a step or time cap closes the generator mid-epoch
            if self.accelerator is not None and self.accelerator.nan_check is not None:
                self.accelerator.nan_check.flush()  # the last replayed step's NaN check

    def _train_step(self, interaction, loss_func, scaler):
        """The eager step, or, for a full batch of a graph-safe task on CUDA (``cuda_graphs``), the replay of its
        captured forward and backward followed by the same eager rest: NaN check, gradient averaging, clipping,
        optimizer step."""
        step = self.accelerator.graphed_step(interaction, loss_func) if self.accelerator is not None else None
        if step is None:
            return super()._train_step(interaction, loss_func, scaler)
        loss = step.run(interaction)  # gradients overwritten (as after zero_grad + backward), not accumulated
        self.accelerator.nan_check.push(loss)  # RecBole's NaN check, read one step later (no wait for the GPU)
        self._apply_gradients()  # no scaler: graphs are not used under AMP
        return loss.detach().clone()

    def restore_stage_end(self, state: dict, train_data, valid_data, new_stages=()) -> None:
        """Put the model and every RNG where a finished stage left them (``state``: its final resume checkpoint),
        so the next stage starts as it would have without the interruption. ``new_stages``: stages whose pretext
        task this model has and the state's model may not have had (a run of the earlier stages alone wrote it):
        their modules keep their initial weights."""
        missing, unexpected = self.model.load_state_dict(state["model_state"], strict=False)
        fresh = tuple(f"pretext.{stage}." for stage in new_stages)
        missing = [key for key in missing if not key.startswith(fresh)]
        if missing or unexpected:
            raise CheckpointError(state.get("path", "the end of the previous stage"),
                                  f"does not fit this model (missing {missing[:5]}, unexpected {unexpected[:5]})")
        restore_rng_state(state["rng"], (train_data, valid_data))
        distributed.seed_rank(self.config["seed"] + 1000 * (state["epoch"] + 1))

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
        totals, count, samples = {}, 0, {}
        ranks, me = distributed.world_size(), distributed.rank()
        seed = self.config["seed"]
        with torch.random.fork_rng(devices=devices), distributed.local_batches():
            torch.manual_seed(seed)
            generator = torch.Generator(device=self.device).manual_seed(seed)
            batches = tqdm(valid_data, desc=set_color("Validate", "pink"), ncols=100) if show_progress else valid_data
            for index, interaction in enumerate(batches):
                if ranks > 1:
                    # distributed: whole batches, batch k on rank k mod N, its random draws seeded by k (so the
                    # statistics do not depend on the number of ranks)
                    if index % ranks != me:
                        continue
                    torch.manual_seed(seed + index)
                    generator.manual_seed(seed + index)
                interaction = interaction.to(self.device)
                seq = interaction[model.ITEM_SEQ]
                if seq.size(0) < task.min_batch_size:
                    continue
                stats = task.validation_step(model.user_model, seq, interaction[model.ITEM_SEQ_LEN], generator=generator)
                n = seq.size(0)
                for key, values in stats.pop(SAMPLES, {}).items():
                    samples.setdefault(key, []).append(values.detach().cpu())
                for key, value in stats.items():
                    totals[key] = totals.get(key, 0.0) + float(value) * n
                count += n
        model.train(was_training)
        samples = {key: torch.cat(parts) for key, parts in samples.items()}
        if ranks > 1:  # every rank gets the same averages, so every rank takes the same decisions
            parts = distributed.all_gather_object((totals, count, samples))  # a rank may have had no batch at all
            count = sum(n for _, n, _ in parts)
            totals = {key: sum(t.get(key, 0.0) for t, _, _ in parts)
                      for key in dict.fromkeys(k for t, _, _ in parts for k in t)}
            samples = {key: torch.cat([p[key] for _, _, p in parts if key in p])
                       for key in dict.fromkeys(k for _, _, p in parts for k in p)}
        if count == 0:
            raise ValueError(f"the validation split holds no batch of at least {task.min_batch_size} sequences")
        result = {key: value / count for key, value in totals.items()}
        return {**result, **(task.summarize_samples(samples) if samples else {})}


def _memory(device) -> str:
    """Resident memory of the process, and the GPU's reserved/allocated memory when training on one."""
    import psutil

    text = f"rss {psutil.Process().memory_info().rss / 2**20:.0f} MiB"
    if torch.device(device).type == "cuda":
        text += (f", cuda reserved {torch.cuda.memory_reserved(device) / 2**20:.0f} MiB, "
                 f"allocated {torch.cuda.memory_allocated(device) / 2**20:.0f} MiB")
    return text


def _scalars(result: dict) -> dict:
    """The numeric statistics of a validation result (not its groups, which only the history keeps)."""
    return {key: value for key, value in result.items() if isinstance(value, (int, float))}


def _fmt(result: dict) -> str:
    return "  ".join(f"{key}: {value:.4f}" if isinstance(value, float) else f"{key}: {value}"
                     for key, value in _scalars(result).items())


def resume_stopping_state(state: dict, steps_per_epoch: int) -> dict:
    """The :class:`EarlyStopping` state of a resume checkpoint; one written without it (before step counting)
    is rebuilt from its best score, best epoch and last epoch, counting ``steps_per_epoch`` steps an epoch."""
    if state.get("stopping") is not None:
        return state["stopping"]
    epochs_run, best_epoch = state["epoch"] + 1, state["best_epoch"]
    return {"best_score": state["best_score"], "best_epoch": best_epoch,
            "best_steps": (best_epoch + 1) * steps_per_epoch, "epochs_run": epochs_run, "steps_run": epochs_run * steps_per_epoch,
            "stopped_by": "patience" if state.get("stopped") else None, "seconds": 0.0}


# ----------------------------------------------------------------------------------------------------- RNG states
def rng_state(loaders=()) -> dict:
    """Every random state a training epoch draws from, as tensors and plain values (``weights_only`` loadable):
    torch (CPU, and every CUDA device when present), numpy's and ``random``'s global generators, and the
    ``torch.Generator`` of each data loader (RecBole's loaders shuffle with ``loader.generator``)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": list(torch.cuda.get_rng_state_all()) if torch.cuda.is_available() else [],
        "numpy": {"name": str(name), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "random": {"version": int(version), "state": [int(v) for v in internal], "gauss_next": gauss_next},
        "loaders": [_generator(loader).get_state() if _generator(loader) is not None else None for loader in loaders],
    }


def restore_rng_state(state: dict, loaders=()) -> None:
    """Inverse of :func:`rng_state`. CUDA states are restored when this machine has as many devices."""
    torch.set_rng_state(state["torch"].cpu())
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([t.cpu() for t in cuda])
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    r = state["random"]
    random.setstate((r["version"], tuple(r["state"]), r["gauss_next"]))
    for loader, saved in zip(loaders, state.get("loaders") or []):
        if saved is not None and _generator(loader) is not None:
            _generator(loader).set_state(saved.cpu())


def _generator(loader):
    return getattr(loader, "generator", None)
