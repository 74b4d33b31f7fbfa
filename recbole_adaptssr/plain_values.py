"""Settings values as plain builtin types: what ``torch.load(..., weights_only=True)`` and JSON accept.

Imports neither torch nor RecBole (a tensor is recognised when torch is already imported).
"""

from __future__ import annotations

import enum
import sys
from typing import Any

import numpy as np


def plain(value: Any) -> Any:
    """Convert a settings value to types that ``torch.load(weights_only=True)`` accepts.

    Containers are converted recursively; enums become their name; numpy scalars become Python numbers;
    anything else that is not a builtin scalar becomes its ``str``.
    """
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, enum.Enum):
        return value.name
    if _is_tensor(value):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [plain(v) for v in value]
    if hasattr(value, "final_config_dict"):  # a recbole Config
        return plain(value.final_config_dict)
    return str(value)


def _is_tensor(value) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.Tensor)
