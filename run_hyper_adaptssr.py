"""Hyper-parameter search and sweeps with Ray Tune, as RecBole's ``run_hyper.py`` (docs/tuning.md); the same as the
console command ``recbole-adaptssr-hyper`` (``--help`` lists its options; the code is
:func:`recbole_adaptssr.commands.hyper`):

    python run_hyper_adaptssr.py --model=AdaptSSR --dataset=ml-100k --params_file=hyper/finetune.hyper \\
        --num_samples=4 --key=value ...
"""

if __name__ == "__main__":
    from recbole_adaptssr.commands import console, hyper

    console(hyper)
