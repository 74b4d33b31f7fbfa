"""The experiment layer: small pieces that compose into the pipeline.

* :func:`pretrain` ``(config) -> {stage: StageResult}``: the pretext tasks of ``pretrain_stages`` in order;
* :func:`finetune` ``(config, task, start_point, seed) -> RunResult``: one downstream run (best validation
  metrics, test metrics at that epoch, where it wrote);
* :func:`run_grid`: every (start point x task x seed), sharing one :class:`TaskData`;
* :func:`summarize` / :func:`markdown_table` / :func:`write_results`: mean +- std on ``valid`` or ``test``;
* :func:`run_pipeline`: validate everything, make the run folder, pre-train, run the grid, write the table.
"""

from recbole_adaptssr.experiment.finetuning import finetune
from recbole_adaptssr.experiment.pipeline import run_grid, run_pipeline
from recbole_adaptssr.experiment.pretraining import StageResult, pretrain
from recbole_adaptssr.experiment.results import RunResult, markdown_table, summarize, write_results

__all__ = ["finetune", "pretrain", "run_grid", "run_pipeline", "RunResult", "StageResult", "summarize",
           "markdown_table", "write_results"]
