"""How a study draws its trials (``run_hyper_adaptssr.py --search_alg``), and RecBole's ``--tool`` as one of them.

* ``random`` (default): Ray's ``BasicVariantGenerator``: each ``grid`` line runs whole, every other line is drawn
  at random (``choice``, ``uniform``, ...), ``--num_samples`` times;
* ``grid``: every combination of the space's values, as RecBole's ``--tool=Hyperopt`` (its exhaustive search):
  ``choice`` lines run every value too, as do ``randint`` and integer ``quniform`` lines; a continuous line
  (``uniform``, ``loguniform``, a float ``quniform``) has no finite list and is refused;
* ``optuna``, ``hyperopt``: model-based searchers (Ray's ``OptunaSearch``, TPE; ``HyperOptSearch``, TPE after
  random start points) that pick each trial's values from the results of the finished ones; ``--num_samples`` is
  the number of trials. They take ``choice`` (as a categorical over the values, so lists and ``None`` are fine),
  ``uniform``, ``loguniform``, ``quniform``, ``randint`` and ``same``; a ``grid`` line (every value, one trial
  each) is not a searcher's choice and is refused: write ``choice`` to let the searcher pick, or use
  ``--search_alg=grid|random``.

Every searcher is seeded by ``--search_seed`` (default: the ``seed`` setting), so a study's trials repeat; ASHA
(``--scheduler=asha``) stops lagging trials whichever searcher drew them. Everything is checked before Ray starts,
with the file and line of the space; a missing library says how to install it.
"""

from __future__ import annotations

import importlib

from recbole_adaptssr.setting_errors import SettingError
from recbole_adaptssr.tuning.space import SpaceError, grid_size, same_roots, to_param_space

SEARCH_ALGS = ("random", "grid", "optuna", "hyperopt")
#: model-based searchers: (Ray module, class, the library it needs)
MODEL_BASED = {"optuna": ("ray.tune.search.optuna", "OptunaSearch", "optuna"),
               "hyperopt": ("ray.tune.search.hyperopt", "HyperOptSearch", "hyperopt")}
#: RecBole's ``run_hyper.py --tool``: Hyperopt runs its exhaustive search, Ray draws at random with ASHA
RECBOLE_TOOLS = {"hyperopt": "grid", "ray": "random"}
FINITE = ("choice", "grid", "randint", "quniform")  # kinds with a finite list of values (quniform: integer bounds)
INSTALL = "pip install 'recbole-adaptssr[search]' (or: pip install optuna hyperopt)"


def from_recbole_tool(tool: str) -> str:
    """The search algorithm of RecBole's ``--tool=Hyperopt|Ray`` (case as RecBole's or lower)."""
    name = str(tool).lower()
    if name not in RECBOLE_TOOLS:
        raise SettingError(f"--tool must be Hyperopt or Ray (RecBole's run_hyper.py), got {tool!r}")
    return RECBOLE_TOOLS[name]


def check_search(name: str, dims: list) -> None:
    """Refuse a search algorithm this space cannot run (naming the space's line), or whose library is missing."""
    if name not in SEARCH_ALGS:
        raise SettingError(f"--search_alg must be one of {list(SEARCH_ALGS)}, got {name!r}")
    if name == "grid":
        for d in dims:
            if d.kind != "same" and d.values() is None:
                raise SpaceError(f"{d.where}: --search_alg=grid runs every combination of the values, but {d.name} "
                                 f"{d.describe()} has no finite list of values: write it as choice or grid, or "
                                 "use --search_alg=random|optuna|hyperopt")
    if name in MODEL_BASED:
        for d in dims:
            if d.kind == "grid":
                raise SpaceError(f"{d.where}: {d.name} grid runs every value, one trial each, which the "
                                 f"model-based searcher {name} does not: write '{d.name} choice {list(d.args[0])}' "
                                 "to let it pick among the values, or use --search_alg=grid|random")
        module, _, library = MODEL_BASED[name]
        try:
            importlib.import_module(library)
        except ImportError:
            raise SettingError(f"--search_alg={name} needs the {library} package: {INSTALL}") from None


def trials_per_sample(name: str, dims: list) -> int:
    """Trials one sample of the space makes under ``name``: the grid's size (``random``: the ``grid`` lines;
    ``grid``: every finite line), one for a model-based searcher."""
    if name == "grid":
        size = 1
        for d in dims:
            if d.kind != "same":
                size *= len(d.values())
        return size
    return 1 if name in MODEL_BASED else grid_size(dims)


def make_search(name: str, dims: list, seed: int, max_concurrent: int | None, metric: str, mode: str) -> tuple:
    """``(search_alg, param_space)`` for Ray's ``TuneConfig`` and ``Tuner`` (checked by :func:`check_search`)."""
    from ray import tune
    from ray.tune.search import BasicVariantGenerator, ConcurrencyLimiter

    check_search(name, dims)
    if name not in MODEL_BASED:
        space = to_param_space(dims)
        if name == "grid":
            space.update({d.name: tune.grid_search(d.values()) for d in dims if d.kind != "same"})
        # Ray's random/grid generator limits concurrency itself (TuneConfig.max_concurrent_trials is ignored with
        # a SearchGenerator such as this one)
        return BasicVariantGenerator(random_state=seed, max_concurrent=int(max_concurrent or 0)), space
    module, class_name, _ = MODEL_BASED[name]
    searcher_class = getattr(importlib.import_module(module), class_name)
    choices = {d.name: list(d.args[0]) for d in dims if d.kind == "choice"}
    drawn = [d for d in dims if d.kind not in ("same", "choice")]
    space = {**to_param_space(drawn), **{key: tune.choice(list(range(len(v)))) for key, v in choices.items()}}
    space = searcher_class.convert_search_space(space)
    seeded = {"seed": seed} if name == "optuna" else {"random_state_seed": seed}
    inner = searcher_class(space=space, metric=metric, mode=mode, **seeded)
    from recbole_adaptssr.tuning.space_searcher import SpaceSearcher

    searcher = SpaceSearcher(inner, choices, same_roots(dims), metric, mode)
    return (ConcurrencyLimiter(searcher, int(max_concurrent)) if max_concurrent else searcher), {}
