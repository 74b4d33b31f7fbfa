"""The embedded default data set: RecBole's bundled ml-100k, converted once into our task layout."""

from __future__ import annotations

import os
from logging import getLogger

from filelock import FileLock

EMBEDDED_DATASET = "ml-100k"
EMBEDDED_TASKS_NAME = "ml-100k-tasks"


def prepare_embedded_default(dataset: str, data_path: str | None) -> tuple[str, str | None]:
    """``ml-100k`` -> ``ml-100k-tasks`` under ``data_path`` (default ``dataset``), converted from the copy inside
    RecBole's wheel on first use; any other name is returned as it is.

    Concurrent pipelines convert once: the conversion holds a lock file beside the data set folder.
    """
    if dataset != EMBEDDED_DATASET:
        return dataset, data_path
    import recbole

    from dataset_converters.movielens import convert_movielens

    root = data_path or "dataset"
    folder = os.path.join(root, EMBEDDED_TASKS_NAME)
    manifest = os.path.join(folder, f"{EMBEDDED_TASKS_NAME}.tasks.json")
    if not os.path.isfile(manifest):
        os.makedirs(root, exist_ok=True)
        with FileLock(os.path.join(root, f".{EMBEDDED_TASKS_NAME}.lock")):
            if not os.path.isfile(manifest):  # another process may have converted it while we waited
                source = os.path.join(os.path.dirname(recbole.__file__), "dataset_example", EMBEDDED_DATASET)
                getLogger().info(f"converting RecBole's bundled {EMBEDDED_DATASET} into {folder}")
                convert_movielens(source, root, name=EMBEDDED_TASKS_NAME)
    return EMBEDDED_TASKS_NAME, root
