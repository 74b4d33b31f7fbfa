#!/usr/bin/env python
"""Merge the results of several runs into one table (same format as a pipeline's results.md/.json/.csv).

  python scripts/merge_results.py --out merged saved/AdaptSSR-.../results.json saved/RecBoleBaselines-.../

Each argument is a ``results.json`` (or the run folder holding it) written by the AdaptSSR pipeline or by the
RecBole baselines' runner (``--recbole_baselines=[...]``). Rows are labelled with their model (``AdaptSSR (ssr)``,
``SASRec (behaviours)``); a (row, task, seed) found in two files is an error. Comparable rows need the same
data set, task split and seeds (``--seed``, ``--repeat``): the merge reports the seeds of every row. A path that is
not such a file or folder (a comparison's run folder, ``comparison.json``, is another format) is an ``error:`` line
naming it, exit status 2, nothing written.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from recbole_adaptssr.data.validation import DataError  # noqa: E402
from recbole_adaptssr.experiment.recbole_baselines import merge_results  # noqa: E402
from recbole_adaptssr.experiment.results import SPLITS, markdown_table, write_results  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", nargs="+", help="results.json files or run folders")
    parser.add_argument("--out", required=True, help="folder for results.md/.json/.csv of the merge")
    parser.add_argument("--split", default="test", choices=SPLITS, help="the split the table reports (test)")
    args = parser.parse_args(argv)
    try:
        rows, runs = merge_results(args.results, args.split)
    except DataError as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 2
    seeds = {}
    for r in rows:
        seeds.setdefault(r["start_point"], sorted(set(r["seeds"])))
    notes = "\nSeeds per row: " + "; ".join(f"{k}: {v}" for k, v in seeds.items()) + "\n\nMerged from: " + \
        ", ".join(args.results)
    paths = write_results(rows, runs, args.out, notes=notes)
    print(markdown_table(rows) + "\n" + notes)
    print(f"written: {paths['md']}, {paths['json']}, {paths['csv']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
