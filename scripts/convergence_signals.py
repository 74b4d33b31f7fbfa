"""Which validation signal tells that a pre-training stage has converged? (docs/convergence.md)

Pre-trains ``--stages`` (default ``mlm,ssr``) with the package defaults and the settings given as ``--key=value``;
the last stage runs ``--epochs`` epochs without early stopping. After every epoch of that stage the script also
measures what the stage is for, on held-out users: a ridge-regression probe of the frozen user representation u
(eval mode) on every downstream task of the data set that labels users (multiclass: accuracy of the argmax of a
one-hot regression; binary: AUC; recommendation: NDCG@10 over all targets of a multi-hot regression), labelled users
split 60/40 with ``--seed``. Tasks of other kinds (cvr labels (user, target) pairs) have no probe: they are named
and left out. Then, for each candidate stopping signal of the stage (its validation statistics) and each patience,
it reports where the rule "no better value for P epochs" would stop, the epoch it would keep, and the probe's
value there against the probe's best.

    python scripts/convergence_signals.py --dataset=ml-100k --epochs=120 --out=/tmp/signals
    python scripts/convergence_signals.py --dataset=ml-100k --stages=ssr --init=saved/RUN/units/UNIT/pretrain/mlm.pth --epochs=60
    python scripts/convergence_signals.py --dataset=synth --data_path=data --epochs=100 --mlm_learning_rate=0.002

Writes ``<out>/history.csv`` (one row per epoch: every statistic and every probe) and ``<out>/stops.csv``
(signal, patience, stop epoch, kept epoch, probe values); prints both summaries.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

PATIENCES = (5, 10, 20, 30)
#: the task kinds a probe of u alone measures (a cvr label belongs to a (user, target) pair)
PROBED_KINDS = ("multiclass", "binary", "recommendation")
#: candidate signals: statistic -> whether bigger is better
SIGNALS = {"loss": False, "loss_fixed": False, "acc_explicit": True, "acc_implicit": True,
           "hard_acc_explicit": True, "hard_acc_implicit": True, "acc_top1": True}


def ridge_probe(x_train, y_train, x_test, alpha=1.0):
    """Scores of a ridge regression (with bias) fitted on (x_train, y_train), on x_test."""
    def with_bias(x):
        return np.hstack([x, np.ones((len(x), 1))])

    a, b = with_bias(x_train), with_bias(x_test)
    weights = np.linalg.solve(a.T @ a + alpha * np.eye(a.shape[1]), a.T @ y_train)
    return b @ weights


def auc(scores, labels):
    order = np.argsort(scores)
    ranks = np.empty(len(scores))
    ranks[order] = np.arange(1, len(scores) + 1)
    pos = labels == 1
    n_pos, n_neg = pos.sum(), (~pos).sum()
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / max(n_pos * n_neg, 1))


def ndcg_at_10(scores, targets):
    top = np.argsort(-scores, axis=1)[:, :10]
    gains = np.take_along_axis(targets, top, axis=1) / np.log2(np.arange(2, 12))
    ideal = np.array([(1 / np.log2(np.arange(2, 2 + min(int(t.sum()), 10)))).sum() for t in targets])
    return float(np.mean(gains.sum(axis=1) / np.maximum(ideal, 1e-12)))


class Probes:
    """Every downstream task of the data set as a frozen ridge probe on held-out labelled users."""

    def __init__(self, data_path, dataset, seed):
        from recbole_adaptssr.analysis.similarity import read_user_log
        from recbole_adaptssr.data.task_dataset import TaskData

        self.data_path, self.dataset, self.seed = data_path, dataset, seed
        self.log, self.tokens = read_user_log(data_path, dataset)
        self.tasks = {}
        task_data = TaskData(os.path.join(data_path, dataset), dataset)
        for task in task_data.manifest:
            kind = task_data.kind(task).name
            if kind not in PROBED_KINDS:
                print(f"no probe for task {task!r} ({kind}: the probes cover {', '.join(PROBED_KINDS)})")
                continue
            path = os.path.join(data_path, dataset, f"{dataset}.{task}")
            rows = [line.rstrip("\n").split("\t") for line in open(path, encoding="utf-8")][1:]
            self.tasks[task] = (kind, rows)

    def measure(self, user_model, vocabulary) -> dict:
        from recbole_adaptssr.analysis.similarity import encode, user_sequences

        out = {}
        was_training = user_model.training
        user_model.eval()
        for task, (kind, rows) in self.tasks.items():
            known = set(self.tokens)
            users = list(dict.fromkeys(r[0] for r in rows if r[0] in known))
            names, seq, _ = user_sequences(self.log, self.tokens, vocabulary, user_model.max_seq_length, users)
            u = encode(user_model, seq.to(next(user_model.parameters()).device)).cpu().double().numpy()
            index = {name: i for i, name in enumerate(names)}
            rng = np.random.RandomState(self.seed)
            order = rng.permutation(len(names))
            train, test = order[: int(0.6 * len(names))], order[int(0.6 * len(names)):]
            if kind == "recommendation":
                targets = sorted({r[1] for r in rows})
                col = {t: j for j, t in enumerate(targets)}
                y = np.zeros((len(names), len(targets)))
                for r in rows:
                    y[index[r[0]], col[r[1]]] = 1.0
                out[task] = ndcg_at_10(ridge_probe(u[train], y[train], u[test], alpha=10.0), y[test])
            else:
                labels = {r[0]: r[1] for r in rows}
                classes = sorted(set(labels.values()))
                y = np.array([classes.index(labels[n]) for n in names])
                if len(classes) == 2:
                    scores = ridge_probe(u[train], y[train].astype(float), u[test])
                    out[task] = auc(scores, y[test])
                else:
                    onehot = np.eye(len(classes))[y]
                    scores = ridge_probe(u[train], onehot[train], u[test])
                    out[task] = float((scores.argmax(axis=1) == y[test]).mean())
        user_model.train(was_training)
        return out


def stops(history: list, signal: str, bigger: bool, patience: int) -> tuple:
    """(stop epoch, kept epoch) of the rule 'no better value of ``signal`` for ``patience`` epochs'."""
    best, best_epoch = None, -1
    for row in history:
        value = row[signal]
        if best is None or (value > best if bigger else value < best):
            best, best_epoch = value, row["epoch"]
        elif row["epoch"] - best_epoch >= patience:
            return row["epoch"], best_epoch
    return history[-1]["epoch"], best_epoch


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--data_path", default=None)
    parser.add_argument("--stages", default="mlm,ssr")
    parser.add_argument("--init", default=None,
                        help="a stage checkpoint the first stage starts from (e.g. a finished run's mlm.pth, with "
                             "--stages=ssr), instead of training the earlier stages again")
    parser.add_argument("--epochs", type=int, default=100, help="epochs of the last stage (no early stopping)")
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--out", default="convergence-signals")
    parser.add_argument("--analyse", default=None, help="only analyse this history.csv of an earlier run")
    args, rest = parser.parse_known_args(argv)
    if args.analyse:
        return analyse(args.analyse)
    extra = {}
    for item in rest:
        key, _, value = item.lstrip("-").partition("=")
        import yaml

        extra[key] = yaml.safe_load(value)

    import recbole_adaptssr
    from recbole_adaptssr.config import Config
    from recbole_adaptssr.data.embedded import prepare_embedded_default
    from recbole_adaptssr.experiment import pretraining
    from recbole_adaptssr.execution.logs import init_run_logger

    recbole_adaptssr.setup()
    sys.argv = sys.argv[:1]
    stages = args.stages.split(",")
    last = stages[-1]
    settings = {"pretrain_stages": stages, f"{last}_epochs": args.epochs, f"{last}_stopping_step": args.epochs + 1,
                "seed": args.seed, "show_progress": False, "checkpoint_dir": os.path.join(args.out, "saved"),
                "downstream_tasks": [], **extra}
    if args.data_path:
        settings["data_path"] = args.data_path
    dataset, root = prepare_embedded_default(args.dataset, args.data_path)
    settings["data_path"] = root
    config = Config(model="AdaptSSR", dataset=dataset, config_dict=settings)
    os.makedirs(args.out, exist_ok=True)
    init_run_logger(args.out, config["state"])
    probes = Probes(root, dataset, args.seed)

    trainers = []
    get_trainer = pretraining.get_trainer

    def capture(*a, **k):  # the trainer pretrain() builds, to probe its model after each epoch
        cls = get_trainer(*a, **k)

        def build(cfg, net):
            if args.init:
                net.load_state_dict(torch.load(args.init, weights_only=True)["state_dict"], strict=False)
            trainers.append(cls(cfg, net))
            return trainers[-1]
        return build

    pretraining.get_trainer = capture
    probe_rows = {}
    history_csv = os.path.join(args.out, "history.csv")
    if os.path.exists(history_csv):
        os.remove(history_csv)

    def append(row):
        new = not os.path.exists(history_csv)
        with open(history_csv, "a", newline="") as f:
            writer = csv.DictWriter(f, list(row))
            if new:
                writer.writeheader()
            writer.writerow(row)

    previous = args.init or (os.path.join(args.out, "saved", "pretrain", f"{stages[-2]}.pth") if len(stages) > 1
                             else None)
    if previous is None:
        raise SystemExit("probing needs the checkpoint the last stage starts from: two stages, or --init")

    def on_epoch(stage, epoch, result):
        if stage != last:
            return
        vocabulary = torch.load(previous, weights_only=True)["item_vocabulary"]
        if not probe_rows:  # the start of the last stage: the previous stage's kept epoch
            from recbole_adaptssr.analysis.similarity import load_user_model

            start, _ = load_user_model(previous)
            probe_rows[-1] = probes.measure(start, vocabulary)
            print(f"[{stage}] probe before: " + "  ".join(f"{k}={v:.4f}" for k, v in probe_rows[-1].items()))
            append(history_row(-1, {k: float("nan") for k in result if isinstance(result[k], float)}, probe_rows[-1]))
        probe_rows[epoch] = probes.measure(trainers[-1].model.user_model, vocabulary)
        append(history_row(epoch, result, probe_rows[epoch]))
        print(f"[{stage}] epoch {epoch}: " + "  ".join(f"{k}={v:.4f}" for k, v in result.items()
                                                       if isinstance(v, float)) + " | probe " +
              "  ".join(f"{k}={v:.4f}" for k, v in probe_rows[epoch].items()), flush=True)

    pretraining.pretrain(config, os.path.join(args.out, "saved"), epoch_callback=on_epoch)
    analyse(os.path.join(args.out, "history.csv"), os.path.join(args.out, "stops.csv"))


def history_row(epoch: int, result: dict, probe: dict) -> dict:
    return {"epoch": epoch, **{k: v for k, v in result.items() if isinstance(v, (int, float))},
            **{f"probe_{k}": v for k, v in probe.items()}}


def analyse(history_csv: str, out_csv: str | None = None) -> list:
    """For every candidate signal and patience of :data:`PATIENCES`: the stop epoch, the kept epoch and the probes
    there, against each probe's best over the run (the first row, epoch -1, is the stage's start)."""
    with open(history_csv, newline="") as f:
        rows = [{k: float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(f)]
    start, history = rows[0], [r for r in rows if r["epoch"] >= 0]
    probes_keys = [k for k in start if k.startswith("probe_")]
    best = {k: max(row[k] for row in history) for k in probes_keys}
    argbest = {k: int(max(history, key=lambda row: row[k])["epoch"]) for k in probes_keys}
    lines = [["signal", "patience", "stop_epoch", "kept_epoch", *probes_keys]]
    lines.append(["(start)", "", "", -1, *(f"{start[k]:.4f}" for k in probes_keys)])
    lines.append(["(best probe)", "", "", "/".join(str(argbest[k]) for k in probes_keys),
                  *(f"{best[k]:.4f}" for k in probes_keys)])
    for signal, bigger in SIGNALS.items():
        if signal not in history[0]:
            continue
        for patience in PATIENCES:
            stop, kept = stops(history, signal, bigger, patience)
            row = next(r for r in history if r["epoch"] == kept)
            lines.append([signal, patience, int(stop), int(kept), *(f"{row[k]:.4f}" for k in probes_keys)])
    if out_csv:
        with open(out_csv, "w", newline="") as f:
            csv.writer(f).writerows(lines)
    for line in lines:
        print(",".join(str(v) for v in line))
    return lines


if __name__ == "__main__":
    main()
