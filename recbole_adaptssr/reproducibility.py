"""What a run pins so that its numbers do not depend on the machine it runs on, where that can be pinned.

torch splits CPU reductions and matrix products over its intra-op threads; the float results depend on the split,
hence on the thread count (measured: one MLM + ranking pre-training on 300 users changes 35 of 38 weight tensors by
up to 3e-6 between 1 and 2 threads; over hundreds of epochs that reaches the printed metrics). ``torch_threads``
pins the count for every pre-training and fine-tune run where no launcher chose one (``OMP_NUM_THREADS``). What
stays machine-dependent is listed in docs/convergence.md ("Reproducible output"): the CPU's instruction set
(oneDNN / MKL pick kernels by it), the torch build, and CUDA kernels.
"""

from __future__ import annotations

import os

import torch


def pin_threads(config) -> None:
    """``torch.set_num_threads(torch_threads)``, unless ``OMP_NUM_THREADS`` is set: then the launcher (torchrun,
    ``--nproc``, the execution's worker processes, Ray) or the user chose this process's thread count, and it stays.
    ``torch_threads: 0`` leaves torch's own choice (one thread per core: fastest, machine-dependent numbers)."""
    threads = config["torch_threads"]
    if threads and "OMP_NUM_THREADS" not in os.environ and torch.get_num_threads() != int(threads):
        torch.set_num_threads(int(threads))
