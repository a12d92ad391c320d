"""One OpenMP and one OpenBLAS thread per streamcl process, unless the environment says otherwise.

The matrices are small, and the learner, the serving replicas and their clients share the
cores. OpenMP (faiss, torch) reads its default once, when the library loads, for every
thread: ``faiss.omp_set_num_threads`` in :mod:`streamcl.models.kernels` sets it only for the
importing thread, not for the loop thread. Idle OpenMP and OpenBLAS workers spin, and a
BLAS pool makes the larger matrices of bigger micro-batches slower, not faster.

Used by the ``streamcl`` command and by every benchmark, so both measure the same process.
"""

from __future__ import annotations

import os

__all__ = ["THREAD_ENV", "single_threaded"]

#: The native thread pools' environment variables.
THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def single_threaded() -> None:
    """Default each of :data:`THREAD_ENV` to ``"1"``; call before numpy, faiss or torch load."""
    for name in THREAD_ENV:
        os.environ.setdefault(name, "1")
