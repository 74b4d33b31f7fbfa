"""Command line entry point, as RecBole's ``run_recbole.py``:

    python run_recbole_adaptssr.py --model=AdaptSSR --dataset=ml-100k --config_files="a.yaml b.yaml" --key=value

``--model=AdaptSSR`` runs the whole pipeline (pre-training stages, fine-tuning on every task of the data set,
``--repeat`` seeds each, results table). Any other model name is RecBole's (``--downstream_task=rec`` runs it on
our recommendation task). Every other setting is ``--key=value``.
"""

import argparse

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", "-m", type=str, default="AdaptSSR", help="model name (ours or RecBole's)")
    parser.add_argument("--dataset", "-d", type=str, default="ml-100k", help="data set name")
    parser.add_argument("--config_files", type=str, default=None, help="space-separated YAML files")
    args, _ = parser.parse_known_args()
    config_file_list = args.config_files.strip().split(" ") if args.config_files else None

    import recbole_adaptssr
    from recbole_adaptssr.quick_start import run

    recbole_adaptssr.setup()  # the RecBole compatibility shims, applied once, explicitly
    run(model=args.model, dataset=args.dataset, config_file_list=config_file_list)
