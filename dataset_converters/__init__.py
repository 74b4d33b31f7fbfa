"""Converters from the AdaptSSR data sets (TTL, App, MovieLens) to RecBole atomic files.

Each converter writes ``OUTPUT/NAME/`` holding ``NAME.inter`` (the behaviour log: pre-training corpus and input
sequence of every task), one ``NAME.<task>`` file per downstream task, the manifest ``NAME.tasks.json``, the
statistics ``NAME.stats.json`` / ``NAME.stats.md`` and the marker ``NAME.converted.json`` listing the files
written (only such a folder is ever replaced, and only with ``overwrite``).  See ``dataset_converters/README.md``
and ``python -m dataset_converters --help``.
"""

from .app import convert_app
from .common import EXIT_BAD_INPUT, ConversionError
from .movielens import convert_movielens
from .ttl import convert_ttl

__all__ = ["ConversionError", "EXIT_BAD_INPUT", "convert_app", "convert_movielens", "convert_ttl"]
