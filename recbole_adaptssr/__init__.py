"""recbole-adaptssr: AdaptSSR (NeurIPS 2023) user-model pre-training as RecBole components.

Importing the package applies the compatibility shims for RecBole 1.2.1 on numpy 2 / torch >= 2.6 / ray >= 2.40
(see :mod:`recbole_adaptssr.compat`) and registers the ``Acc`` metric in RecBole's metric registry.
"""

from recbole_adaptssr import compat

compat.apply()

from recbole_adaptssr import metrics  # noqa: E402  (needs the shims; registers Acc with RecBole)

metrics.register_metrics()

__version__ = "0.1.0"
