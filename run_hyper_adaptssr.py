"""Hyper-parameter search and sweeps with Ray Tune, as RecBole's ``run_hyper.py`` (docs/tuning.md):

    python run_hyper_adaptssr.py --model=AdaptSSR --dataset=ml-100k --params_file=hyper/finetune.hyper \\
        --num_samples=4 --key=value ...

``--help`` lists the study's options; every other ``--key=value`` is a fixed setting of the runs, as for
``run_recbole_adaptssr.py``.
"""

import sys

if __name__ == "__main__":
    from recbole_adaptssr.tuning.cli import console_main

    sys.exit(console_main())
