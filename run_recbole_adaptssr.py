"""Command line entry point, as RecBole's ``run_recbole.py``:

    python run_recbole_adaptssr.py --model=AdaptSSR --dataset=ml-100k --config_files="a.yaml b.yaml" --key=value

``--model=AdaptSSR`` (the default) runs the whole pipeline: pre-training stages, fine-tuning on every task of the
data set, ``--repeat`` seeds each, results table; ``--pretrain_methods=[none,mlm,adaptssr]`` compares pre-training
methods. Any other model name is RecBole's (``--downstream_task=rec`` runs it on our recommendation task). Every
other setting is ``--key=value``.

Several processes (data-parallel, NCCL on GPUs, gloo on CPUs): ``torchrun --nproc_per_node=N
run_recbole_adaptssr.py ...`` (torchrun's rendezvous settings for several machines), or RecBole's convention
``--nproc=N`` (with ``--world_size``, ``--ip``, ``--port``, ``--offset`` for several machines). ``model`` and ``dataset`` may also come from a config file (e.g. a best.yaml
written by run_hyper_adaptssr.py); without either, they are AdaptSSR and the embedded ml-100k.
"""

import argparse

DEFAULTS = {"model": "AdaptSSR", "dataset": "ml-100k"}


def from_config_files(files, key):
    """``key`` as the last of ``files`` that sets it (None if none does)."""
    import yaml

    value = None
    for path in files or []:
        try:
            with open(path, encoding="utf-8") as f:
                loaded = yaml.safe_load(f)
        except (OSError, yaml.YAMLError):
            continue  # our Config reports the file and its problem
        if isinstance(loaded, dict) and loaded.get(key) is not None:
            value = loaded[key]
    return value


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)  # RecBole's Config reads every --key=value as written
    parser.add_argument("--model", "-m", type=str, default=None, help="model name, ours or RecBole's (AdaptSSR)")
    parser.add_argument("--dataset", "-d", type=str, default=None, help="data set name (ml-100k: the embedded one)")
    parser.add_argument("--config_files", type=str, default=None, help="space-separated YAML files")
    parser.add_argument("--nproc", type=int, default=1, help="processes on this machine (RecBole's convention; "
                        "or launch with torchrun --nproc_per_node=N)")
    parser.add_argument("--world_size", type=int, default=-1, help="processes on all machines (default: nproc)")
    parser.add_argument("--ip", type=str, default="localhost", help="address of the machine of rank 0")
    parser.add_argument("--port", type=str, default="29500", help="free port on the machine of rank 0")
    parser.add_argument("--offset", type=int, default=0, help="global rank of this machine's first process")
    args, _ = parser.parse_known_args()
    config_file_list = args.config_files.strip().split(" ") if args.config_files else None
    model, dataset = (getattr(args, key) or from_config_files(config_file_list, key) or DEFAULTS[key]
                      for key in ("model", "dataset"))

    import recbole_adaptssr
    from recbole_adaptssr.quick_start import run

    recbole_adaptssr.setup()  # the RecBole compatibility shims, applied once, explicitly
    from recbole_adaptssr import distributed

    if (args.nproc > 1 or args.world_size > 1) and not distributed.launched_distributed():
        distributed.spawn(run, args.nproc, str(model), str(dataset), config_file_list,
                          world_size=args.world_size if args.world_size > 0 else args.nproc, ip=args.ip,
                          port=args.port, offset=args.offset)
    else:
        run(model=str(model), dataset=str(dataset), config_file_list=config_file_list)
