"""One OpenMP and one OpenBLAS thread per streamcl process, unless the environment says otherwise.

The matrices are small, and the learner, the serving replicas and their clients share the
cores. OpenMP (faiss, torch) reads its default once, when the library loads, for every
thread: ``faiss.omp_set_num_threads`` in :mod:`streamcl.models.kernels` sets it only for the
importing thread, not for the loop thread. Idle OpenMP and OpenBLAS workers spin, and a
BLAS pool makes the larger matrices of bigger micro-batches slower, not faster.

Used by the ``streamcl`` command and by every benchmark, so both measure the same process.

:func:`freeze_heap` is the other process-wide setting: once the service is built, the
objects made so far (imported modules, torch, the model, settings: hundreds of thousands)
live as long as the process, and the cyclic garbage collector need not scan them again.
Without it each full collection walks them all: 0.19-0.37 s of collections during the
2 s elec2 run of ``benchmarks/kafka_throughput.py``, 0.02-0.05 s with it.
"""

from __future__ import annotations

import gc
import os

__all__ = ["THREAD_ENV", "freeze_heap", "single_threaded"]

#: The native thread pools' environment variables.
THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def single_threaded() -> None:
    """Default each of :data:`THREAD_ENV` to ``"1"``; call before numpy, faiss or torch load."""
    for name in THREAD_ENV:
        os.environ.setdefault(name, "1")


def freeze_heap() -> None:
    """Move every object tracked by the cyclic GC so far out of its reach (``gc.freeze``).

    Call once per process, after the long-lived objects are built (``streamcl run`` and
    ``streamcl serve``, benchmarks); not in library code that builds and drops services
    (tests): frozen cycles are never collected.
    """
    gc.freeze()
