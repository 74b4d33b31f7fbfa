"""User models: the paper's (Eq. 2-4, ``user_model.py``, the default ``transformer``) and RecBole's sequential
models' layers as backbones (``sasrec``, ``bert4rec``, ``gru4rec``, ``nextitnet``), found by the ``user_model``
setting through the registry of ``base.py``; readouts in ``pooling.py``."""
