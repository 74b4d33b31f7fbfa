#!/usr/bin/env bash
# Create .venv (if needed) and install recbole-adaptssr with everything it needs, on a machine with only python3.
#   TORCH_SPEC   torch requirement (default torch==2.13.0: this workplace's local CPU build; see README for GPU)
#   TORCH_INDEX  optional --index-url for torch (e.g. https://download.pytorch.org/whl/cu126)
#   VENV         virtualenv folder (default .venv)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
PY="$VENV/bin/python"
pip_q() { "$PY" -m pip install -q --disable-pip-version-check "$@"; }
# 1. torch first, so no later requirement pulls the registry's multi-GB CUDA build.
if ! "$PY" -c "import torch, sys; v=tuple(int(x) for x in torch.__version__.split('+')[0].split('.')[:2]); sys.exit(v < (2, 6))" 2>/dev/null; then
  if [ -n "${TORCH_INDEX:-}" ]; then pip_q "$TORCH_SPEC" --index-url "$TORCH_INDEX"; else pip_q "$TORCH_SPEC"; fi
fi
# 2. RecBole 1.2.1 without its dependency pins (ray<=2.6.3 breaks on numpy 2 / setuptools>=81).
"$PY" -c "import importlib.metadata as m; assert m.version('recbole') == '1.2.1'" 2>/dev/null || pip_q --no-deps recbole==1.2.1
# 3. This package (editable: properties/ lives beside it) with RecBole's other requirements and ray[tune]>=2.40;
#    the extras: pytest (test) and Ray Tune's model-based searchers, optuna and hyperopt (search).
pip_q -e ".[test,search]"
"$PY" -c "import recbole_adaptssr, recbole, torch, numpy; print(f'recbole-adaptssr ready: recbole {recbole.__version__}, torch {torch.__version__}, numpy {numpy.__version__}')"
