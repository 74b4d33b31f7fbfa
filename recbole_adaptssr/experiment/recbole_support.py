"""Which of RecBole's recommenders run on our recommendation tasks, and why the others do not.

A task run gives a model task records (user, target item) with the user's behaviour sequence as a user feature,
ranks every target item of the task for each test user, and samples training negatives for the models that need
them. RecBole's general, traditional and sequential recommenders fit that, except the models of
:data:`UNSUPPORTED`; context-aware and knowledge-based ones need item features or a knowledge graph that our data
sets do not have. Both ways of running a RecBole model on a task check here before anything runs:
``--model=X --downstream_task=T`` and ``--recbole_baselines=[X, ...]``.
"""

from __future__ import annotations

import importlib.util

from recbole.utils import ModelType

SUPPORTED_TYPES = (ModelType.GENERAL, ModelType.SEQUENTIAL, ModelType.TRADITIONAL)
TYPE_REASONS = {ModelType.CONTEXT: "it is a context-aware recommender (it scores items by their features)",
                ModelType.KNOWLEDGE: "it is a knowledge-based recommender (it needs a knowledge graph)"}
UNSUPPORTED = {
    "S3Rec": "it needs its own pre-training stage and item attributes",
    "RaCT": "it trains in stages of its own (actor_pretrain, critic_pretrain, then finetune from pre_model_path)",
    "FDSA": "it needs item attributes (selected_features)",
    "GRU4RecF": "it needs item attributes (selected_features)",
    "SASRecF": "it needs item attributes (selected_features)",
    "DIN": "it scores (sequence, item) pairs by item features, RecBole's context-aware protocol",
    "DIEN": "it scores (sequence, item) pairs by item features, RecBole's context-aware protocol",
    "FEARec": "its training reads other users' sequences from the interaction table, where a task keeps them per "
              "user",
    "GRU4RecKG": "it needs a knowledge graph's entity embeddings",
    "KSR": "it needs a knowledge graph",
    "GRU4RecCPR": "its full-sort prediction reads the batch's positive item, which an all-ranking evaluation of "
                  "a task's targets does not give",
    "SASRecCPR": "its full-sort prediction reads the batch's positive item, which an all-ranking evaluation of "
                 "a task's targets does not give",
}
# models that run once an optional package is installed: name -> (module, pip requirement)
REQUIRES = {"NCL": ("faiss", "faiss-cpu")}


def unsupported_reason(name: str, model_class) -> str | None:
    """Why RecBole's model ``name`` cannot run on our tasks, or None if it can."""
    if name in UNSUPPORTED:
        return UNSUPPORTED[name]
    if model_class.type not in SUPPORTED_TYPES:
        kind = getattr(model_class.type, "name", str(model_class.type)).lower()
        return TYPE_REASONS.get(model_class.type, f"it is a {kind} recommender")
    if name in REQUIRES and importlib.util.find_spec(REQUIRES[name][0]) is None:
        return f"it needs the {REQUIRES[name][0]} package (pip install {REQUIRES[name][1]})"
    return None
