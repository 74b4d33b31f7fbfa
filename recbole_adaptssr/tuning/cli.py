"""``run_hyper_adaptssr.py``: hyper-parameter search and sweeps with Ray Tune (docs/tuning.md).

    recbole-adaptssr-hyper --model=AdaptSSR --dataset=ml-100k --params_file=hyper/finetune.hyper \\
        --num_samples=4 --finetune_epochs=10      (or: python run_hyper_adaptssr.py ...)

Settings of the runs are given as for run_recbole_adaptssr.py: --config_files="a.yaml b.yaml" and any
--key=value (one token each); the searched keys of the space file are drawn per trial above them. The options
below are the study's own, RecBole's run_hyper.py flags among them (--params_file, --tool, --output_file).

What is searched:
  * fine-tuning settings over ONE start point (--finetune_from=PATH|STAGE|none; a stage of pretrain_stages is
    pre-trained once, before the search, and shared with the trials): the default when the space has no
    pre-training setting;
  * pre-training settings (pretrain_stages, pretrain_method, augmentation_proportion, <stage>_*, mask_ratio, ...,
    or the user model's size): every trial pre-trains, then fine-tunes; selected with --search=pretrain or
    automatically when the space has such a key;
  * a RecBole model (--model=SASRec) on a recommendation task of our data (same split and metric).

Selection is on validation only: the objective is the tuned task's valid metric, reported every epoch (ASHA
stops bad trials early). The best trial's settings are written as best.yaml and rerun ONCE at the end through
the main entry point: that rerun checks the validation metric and gives the study's only test metrics.

Exit status: 0 done; 2 a bad input (a setting, the space, a data file, a checkpoint), printed as "error: <message>"
before Ray starts (--state=DEBUG prints its traceback instead); 3 interrupted (--resume continues); 4 every
trial failed.
"""

from __future__ import annotations

import argparse
import os
import sys

from recbole_adaptssr.tuning.searchers import SEARCH_ALGS, from_recbole_tool
from recbole_adaptssr.tuning.study import SCHEDULERS, SEARCH_MODES, StudyOptions

EXIT_INTERRUPTED = 3
EXIT_ALL_FAILED = 4


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, allow_abbrev=False,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    what = parser.add_argument_group("what to search")
    what.add_argument("--model", "-m", default="AdaptSSR", help="model name, ours or RecBole's (default AdaptSSR)")
    what.add_argument("--dataset", "-d", default="ml-100k",
                      help="data set (default ml-100k: the embedded copy, converted to ml-100k-tasks)")
    what.add_argument("--config_files", default=None, help="space-separated YAML files of fixed settings")
    what.add_argument("--params_file", default=None,
                      help="the search space: one 'KEY KIND VALUES' per line, KIND one of choice, grid, uniform, "
                           "loguniform (bounds are natural logs, as RecBole), quniform, randint, same "
                           "(see docs/tuning.md)")
    what.add_argument("--space", action="append", default=[], metavar="'KEY KIND VALUES'",
                      help="one more line of the space, replacing the file's line for KEY (repeatable), e.g. "
                           "--space 'pretrain_method grid [adaptssr, cl4srec]'")
    what.add_argument("--search", choices=SEARCH_MODES, default="auto",
                      help="finetune: fine-tuning settings over one start point; pretrain: each trial pre-trains "
                           "then fine-tunes; auto (default): pretrain iff the space has a pre-training setting")
    what.add_argument("--finetune_from", default=None, type=one_start_point,
                      help="the start point of a fine-tune search: a checkpoint PATH, a STAGE of pretrain_stages "
                           "(pre-trained once before the search) or none (default: the finetune_from setting)")
    what.add_argument("--tune_task", default=None,
                      help="the task whose validation metric is the objective (default: downstream_task, else "
                           "the first task of the data set)")
    how = parser.add_argument_group("how to search")
    how.add_argument("--num_samples", type=int, default=1,
                     help="samples of the space (a grid is run whole per sample; default 1)")
    how.add_argument("--search_alg", choices=SEARCH_ALGS, default=None,
                     help="how trials are drawn: random (default: grid lines whole, the others drawn at random), "
                          "grid (every combination of finite values), optuna or hyperopt (model-based TPE "
                          "searchers: choice, uniform, loguniform, quniform, randint, same; no grid lines); "
                          "seeded by --search_seed")
    how.add_argument("--tool", default=None, metavar="Hyperopt|Ray",
                     help="RecBole's run_hyper.py flag: Hyperopt = its exhaustive search (--search_alg=grid), "
                          "Ray = random draws with ASHA (--search_alg=random)")
    how.add_argument("--scheduler", choices=SCHEDULERS, default="asha",
                     help="asha (default: stops trials whose validation lags after grace_period, "
                          "grace_period*reduction_factor, ... epochs) or fifo (every trial runs to its end)")
    how.add_argument("--grace_period", type=int, default=1, help="ASHA: epochs before a trial can be stopped")
    how.add_argument("--reduction_factor", type=float, default=2, help="ASHA: keep the top 1/factor at each rung")
    how.add_argument("--max_concurrent_trials", type=int, default=None,
                     help="at most this many trials at once (default: as many as the resources allow)")
    how.add_argument("--search_seed", type=int, default=None,
                     help="seed of the random draws of the space (default: the seed setting)")
    where = parser.add_argument_group("where it runs")
    where.add_argument("--cpus_per_trial", type=float, default=1,
                       help="CPUs reserved per trial; also its torch threads (default 1)")
    where.add_argument("--gpus_per_trial", type=float, default=0,
                       help="GPUs per trial, fractions allowed (0.5: two trials share a GPU; default 0: CPU)")
    where.add_argument("--address", default=None,
                       help="an existing Ray cluster: auto (this node belongs to it) or ray://HEAD:10001; "
                            "default: a local Ray on this machine's CPUs/GPUs")
    where.add_argument("--num_cpus", type=int, default=None, help="local Ray only: CPUs it may use")
    where.add_argument("--num_gpus", type=int, default=None, help="local Ray only: GPUs it may use")
    out = parser.add_argument_group("output and resume")
    out.add_argument("--storage_path", default=None,
                     help="Ray's storage for the experiment (default CHECKPOINT_DIR/ray_results, i.e. "
                          "saved/ray_results); on a cluster a path every node shares (NFS) or a URI (s3://bucket/path)")
    out.add_argument("--name", default=None, help="the study's name (default MODEL-DATASET-PARAMSFILE)")
    out.add_argument("--output_dir", default=None,
                     help="trials table, best.yaml and summary (default CHECKPOINT_DIR/hyper/NAME, i.e. "
                          "saved/hyper/NAME)")
    out.add_argument("--output_file", default=None,
                     help="RecBole's run_hyper.py result file: every finished trial's parameters and validation "
                          "result, and the best configuration's test result (default: none; an existing file is "
                          "kept unless --resume)")
    out.add_argument("--resume", action="store_true",
                     help="continue the interrupted study NAME (Tuner.restore): finished trials are kept, "
                          "unfinished ones run again")
    out.add_argument("--retry_failed", action="store_true", help="with --resume: run the failed trials again")
    out.add_argument("--no_final_test", action="store_true",
                     help="do not rerun best.yaml at the end (no test metrics)")
    out.add_argument("--keep_trial_dirs", action="store_true",
                     help="keep each trial's checkpoints in its unit folder, OUTPUT_DIR/units/trial-<id>/ (default: "
                          "removed when the trial ends; its log and result stay)")
    out.add_argument("--no_reuse_actors", action="store_true", help="a fresh Ray worker per trial")
    out.add_argument("--verbose", type=int, choices=(0, 1, 2), default=1, help="Ray's progress output (default 1)")
    return parser


def one_start_point(value: str) -> str:
    """``--finetune_from`` in the forms the main command takes (``ssr``, ``[ssr]``, ``'[none]'``): one start point."""
    from recbole_adaptssr.config import as_list

    points = as_list(value)
    if len(points) != 1:
        raise argparse.ArgumentTypeError(f"a fine-tune search has one start point, got {value!r}")
    return str(points[0])


def parse(argv=None) -> tuple:
    """``(StudyOptions, settings_args)``: the study's options, and the ``--key=value`` settings of the runs."""
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    bad = [a for a in rest if not (a.startswith("--") and len(a[2:].split("=")) == 2)]
    if bad:
        parser.error(f"settings are given as --key=value (one token each, as run_recbole_adaptssr.py): {bad}")
    if args.params_file is None and not args.space:
        parser.error("give the search space: --params_file=FILE and/or --space 'KEY KIND VALUES'")
    search_alg = args.search_alg
    if args.tool is not None:
        try:
            search_alg = from_recbole_tool(args.tool)
        except ValueError as error:
            parser.error(str(error))
        if args.search_alg not in (None, search_alg):
            parser.error(f"--tool={args.tool} is --search_alg={search_alg}, not --search_alg={args.search_alg}")
    if args.output_file and os.path.exists(args.output_file) and not args.resume:
        parser.error(f"--output_file {args.output_file} exists: name another file, or remove it")
    options = StudyOptions(
        params_file=args.params_file, space_lines=list(args.space), model=args.model, dataset=args.dataset,
        config_files=args.config_files.strip().split() if args.config_files else [], search=args.search,
        finetune_from=args.finetune_from, tune_task=args.tune_task, num_samples=args.num_samples,
        scheduler=args.scheduler, search_alg=search_alg or "random", grace_period=args.grace_period,
        reduction_factor=args.reduction_factor, max_concurrent_trials=args.max_concurrent_trials,
        search_seed=args.search_seed,
        cpus_per_trial=args.cpus_per_trial, gpus_per_trial=args.gpus_per_trial, address=args.address,
        num_cpus=args.num_cpus, num_gpus=args.num_gpus, storage_path=args.storage_path, name=args.name,
        output_dir=args.output_dir, resume=args.resume, retry_failed=args.retry_failed,
        final_test=not args.no_final_test, keep_trial_dirs=args.keep_trial_dirs,
        reuse_actors=not args.no_reuse_actors, verbose=args.verbose, output_file=args.output_file)
    return options, rest


def main(argv=None, config_dict=None, callbacks=None):
    """Run a study from command-line arguments; returns the :class:`~recbole_adaptssr.tuning.study.StudyOutcome`.
    ``config_dict`` (fixed settings below the command line) and ``callbacks`` (Ray Tune callbacks) are for
    programmatic use."""
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")  # every trial's warnings, not "repeated Nx across cluster"
    options, settings_args = parse(argv)
    from recbole_adaptssr.tuning.study import run_study

    return run_study(options, settings_args, config_dict=config_dict, callbacks=callbacks)


def console_main(argv=None) -> int:
    """The script's exit status: 0 done, 3 interrupted (resume with --resume), 4 every trial failed (the first error
    is printed; the trials table has each). A bad input (a setting, the search space, a data file, a checkpoint)
    raises before Ray starts: :func:`recbole_adaptssr.commands.hyper` prints it (exit status 2)."""
    outcome = main(argv)
    if outcome.all_failed:
        print(f"run_hyper_adaptssr.py: error: every trial of study {outcome.name} failed "
              f"({len(outcome.rows)} trial(s); the first: {outcome.rows[0]['error']}); see "
              f"{outcome.files.get('trials_md', outcome.output_dir)}", file=sys.stderr)
        return EXIT_ALL_FAILED
    return EXIT_INTERRUPTED if outcome.interrupted else 0
