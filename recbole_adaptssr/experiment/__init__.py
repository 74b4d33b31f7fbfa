"""The experiment layer: small pieces that compose into the commands.

* :func:`pretrain` ``(config) -> {stage: StageResult}``: the pretext tasks of ``pretrain_stages`` in order;
* :func:`finetune` ``(config, task, start_point, seed) -> RunResult``: one downstream run (best validation
  metrics, test metrics at that epoch, where it wrote), through :mod:`~recbole_adaptssr.experiment.train_test`;
* :func:`summarize` / :func:`markdown_table` / :func:`write_results`: mean +- std on ``valid`` or ``test``;
* :func:`run_pipeline`: validate everything, compile a plan of units (:mod:`~recbole_adaptssr.experiment.units`),
  run it in the run folder (:mod:`~recbole_adaptssr.experiment.lifecycle`), write the table; the comparison
  (:mod:`~recbole_adaptssr.experiment.comparison`) and RecBole's baselines (:mod:`~recbole_adaptssr.experiment.
  recbole_baselines`) the same way.
"""

from recbole_adaptssr.experiment.finetuning import finetune
from recbole_adaptssr.experiment.pipeline import run_pipeline
from recbole_adaptssr.experiment.pretraining import StageResult, pretrain
from recbole_adaptssr.experiment.results import RunResult, markdown_table, summarize, write_results

__all__ = ["finetune", "pretrain", "run_pipeline", "RunResult", "StageResult", "summarize", "markdown_table",
           "write_results"]
