"""A Ray Tune searcher over a study's space as written (:func:`recbole_adaptssr.tuning.searchers.make_search`)."""

from __future__ import annotations

import copy

from ray.tune.search import Searcher


class SpaceSearcher(Searcher):
    """A model-based searcher over the space as written: its ``choice`` lines are drawn as indices (a categorical
    the searcher models, whatever the values: lists, ``None``) and turned back into values, and its ``same`` lines
    take the value of their key. Everything else is the wrapped searcher's (suggestions, results, saved state)."""

    def __init__(self, searcher, choices: dict, same: dict, metric: str, mode: str):
        super().__init__(metric=metric, mode=mode)
        self.searcher, self.choices, self.same = searcher, dict(choices), dict(same)

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return self.searcher.set_search_properties(metric, mode, config, **spec)

    def suggest(self, trial_id: str):
        config = self.searcher.suggest(trial_id)
        if not isinstance(config, dict):  # None (wait) or Searcher.FINISHED
            return config
        config = dict(config)
        for key, values in self.choices.items():
            config[key] = values[int(config[key])]
        for key, root in self.same.items():
            config[key] = config[root]
        return config

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        self.searcher.on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result=None, error: bool = False) -> None:
        self.searcher.on_trial_complete(trial_id, result=result, error=error)

    def set_max_concurrency(self, max_concurrent: int) -> bool:
        return self.searcher.set_max_concurrency(max_concurrent)

    def get_state(self) -> dict:
        """This wrapper's own state (Ray saves the wrapped searcher's apart, as for its ConcurrencyLimiter)."""
        state = self.__dict__.copy()
        del state["searcher"]
        return copy.deepcopy(state)

    def set_state(self, state: dict) -> None:
        self.__dict__.update(state)

    def save(self, checkpoint_path: str):
        self.searcher.save(checkpoint_path)

    def restore(self, checkpoint_path: str):
        self.searcher.restore(checkpoint_path)
