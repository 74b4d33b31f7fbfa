"""Hyper-parameter search and sweeps with Ray Tune over the experiment layer (docs/tuning.md).

* :mod:`~recbole_adaptssr.tuning.space`       search spaces in RecBole's params-file syntax, plus ``grid`` and ``same``;
* :mod:`~recbole_adaptssr.tuning.study`       what a trial runs (fine-tuning over one checkpoint, or pre-training then
  fine-tuning, or a RecBole model on a task) and the study: Tuner, scheduler, storage, resume, best config, the
  one test evaluation at the end;
* :mod:`~recbole_adaptssr.tuning.results`     the trials table (CSV + markdown), ``best.yaml``, the summary;
* :mod:`~recbole_adaptssr.tuning.ray_compat`  the Ray Tune API, feature-detected across Ray >= 2.40;
* :mod:`~recbole_adaptssr.tuning.cli`         ``run_hyper_adaptssr.py``'s command line.

Importing this package (or :mod:`~recbole_adaptssr.tuning.space`) imports neither Ray nor RecBole.
"""

from recbole_adaptssr.tuning.space import Dimension, SpaceError, parse_space, read_space

__all__ = ["Dimension", "SpaceError", "parse_space", "read_space"]
