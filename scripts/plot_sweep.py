"""Turn a finished study's trials table into the paper's Fig. 3 layout: the metric against a swept setting, one
line per method (mean over seeds, with the std as a band when a point has several), plus a markdown table of the
same numbers. A study whose space sweeps a number writes this figure itself (``fig3_sweep.*`` beside its
``trials.csv``); the script draws it again with other choices.

    python scripts/plot_sweep.py saved/hyper/<study>/trials.csv --out fig3.png [--md fig3.md]
        [--x augmentation_proportion] [--y "valid ndcg@10"] [--group method] [--title TITLE] [--include_stopped]

Defaults: x is ``augmentation_proportion`` when the table has it (else the first numeric searched column), y is
the table's ``valid <metric>`` column (a study records validation only), one line per ``method`` and per value of
every other varying searched column except ``seed`` (averaged over). Only completed trials are drawn: a trial a
scheduler stopped early trained less (``--include_stopped`` draws them too); failed and unfinished trials are
listed, not drawn. Writes the PNG named by --out and an SVG beside it (recbole_adaptssr.analysis.sweep).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recbole_adaptssr.analysis.sweep import write_sweep  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("trials", help="trials.csv of a study (its output folder)")
    parser.add_argument("--x", default=None, help="the swept column (default: augmentation_proportion)")
    parser.add_argument("--y", default=None, help="the metric column (default: the 'valid <metric>' column)")
    parser.add_argument("--group", default=None,
                        help="one line per value of this column (default: method and the other varying settings)")
    parser.add_argument("--title", default=None, help="the figure's title")
    parser.add_argument("--out", default=None,
                        help="PNG to write, with an SVG beside it (default: <trials folder>/fig3_sweep.png)")
    parser.add_argument("--md", default=None, help="markdown table to write (default: the PNG's name, .md)")
    parser.add_argument("--include_stopped", action="store_true", help="draw trials a scheduler stopped early too")
    args = parser.parse_args(argv)

    stem = os.path.splitext(args.out)[0] if args.out else None
    try:
        files = write_sweep(args.trials, stem, args.x, args.y, args.group, args.title, args.include_stopped)
    except (ValueError, OSError) as error:
        raise SystemExit(f"plot_sweep: {error}") from None
    if args.md and os.path.abspath(args.md) != os.path.abspath(files["md"]):
        os.replace(files["md"], args.md)
        files["md"] = args.md
    print(files["table"])
    print(f"plot: {files['png']} and {files['svg']}\ntable: {files['md']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
