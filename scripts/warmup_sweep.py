"""Pre-train with several settings and tabulate what the MLM warm-up reached and how the ranking stage started.

    python scripts/warmup_sweep.py --dataset ml-100k --variants '[{"mlm_learning_rate": 1e-3}, {...}]' [--key=value ...]

Each variant runs the pre-training stages only (downstream_tasks: []) on top of the common --key=value settings;
the table has, per variant: the MLM stage's best epoch, validation loss and hit@10 against the popularity
baseline's, and the ranking stage's mean lambda and loss before its first epoch and at its kept epoch.
"""

from __future__ import annotations

import argparse
import json
import sys
import time


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--variants", required=True, help="JSON list of setting dicts")
    parser.add_argument("--out", default=None, help="write the rows as JSON here")
    args, rest = parser.parse_known_args(argv)
    common = {}
    for arg in rest:
        key, _, value = arg.lstrip("-").partition("=")
        try:
            common[key] = json.loads(value)
        except json.JSONDecodeError:
            common[key] = value
    sys.argv = sys.argv[:1]  # RecBole would read --key=value again

    import recbole_adaptssr
    from recbole_adaptssr.quick_start import run

    recbole_adaptssr.setup()
    rows = []
    for variant in json.loads(args.variants):
        start = time.time()
        out = run("AdaptSSR", args.dataset, config_dict={**common, **variant, "downstream_tasks": []})
        row = {"variant": variant, "seconds": round(time.time() - start, 1)}
        mlm, ssr = out["pretrain"].get("mlm"), out["pretrain"].get("ssr")
        if mlm is not None:
            row.update(mlm_best_epoch=mlm.best_epoch, mlm_epochs=len(mlm.history), **{
                f"mlm_{k}": round(v, 4) for k, v in mlm.valid.items()})
        if ssr is not None:
            row.update(ssr_lambda_start=round(ssr.initial.get("lambda", float("nan")), 4),
                       ssr_loss_start=round(ssr.initial["loss"], 4), ssr_best_epoch=ssr.best_epoch,
                       ssr_lambda_best=round(ssr.valid.get("lambda", float("nan")), 4),
                       ssr_loss_best=round(ssr.valid["loss"], 4),
                       ssr_acc_implicit=round(ssr.valid.get("acc_implicit", float("nan")), 4))
        rows.append(row)
        print("ROW " + json.dumps(row), flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=2)
    keys = list(dict.fromkeys(k for r in rows for k in r))
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for r in rows:
        print("| " + " | ".join(str(r.get(k, "")) for k in keys) + " |")


if __name__ == "__main__":
    main()
