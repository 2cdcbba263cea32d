"""Share file-at-a-time work across MPI ranks and, within a rank, a process pool.

``prep`` (one job = one shard to write) and ``index`` (one job = one shard to read) both work
this way: rank r takes jobs r, r+N, ..., runs them in spawned worker processes (the parent never
loads TensorFlow; forking an MPI process is unsafe), and the results are allgathered so that rank
0 can write the manifest. A failing job stops the rank's pool, and every rank learns of it, so no
rank waits forever for a failed one.
"""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait

from hvdtrain.cluster.world import world


class Comm:
    """mpi4py when launched under mpirun, a no-op stand-in for one process."""

    def __init__(self):
        self.comm = None
        w = world()
        w.check_launch()
        if w.size > 1:
            from mpi4py import MPI
            self.comm = MPI.COMM_WORLD
            w.check_size(self.comm.Get_size(), "MPI (mpi4py)")
        self.rank = self.comm.Get_rank() if self.comm else 0
        self.size = self.comm.Get_size() if self.comm else 1

    def allgather(self, obj):
        return self.comm.allgather(obj) if self.comm else [obj]

    def barrier(self):
        if self.comm:
            self.comm.Barrier()


def run_jobs(fn: Callable, jobs: Sequence, workers: int, done: Callable = lambda job: None) -> list:
    """``[fn(job) for job in jobs]`` in ``workers`` processes; ``done(job)`` after each (progress).

    The first exception cancels what has not started and is raised here."""
    if workers <= 1 or len(jobs) <= 1:
        results = []
        for job in jobs:
            results.append(fn(job))
            done(job)
        return results
    results: dict[int, object] = {}
    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
        pending = {pool.submit(fn, job): i for i, job in enumerate(jobs)}
        while pending:
            finished, _ = wait(pending, return_when=FIRST_EXCEPTION)
            for fut in finished:
                i = pending.pop(fut)
                if fut.exception() is not None:
                    for f in pending:
                        f.cancel()
                    raise fut.exception()
                results[i] = fut.result()
                done(jobs[i])
    return [results[i] for i in range(len(jobs))]


def gather_results(comm: Comm, run: Callable[[], list], error_type: type = RuntimeError) -> list:
    """Run this rank's share (``run()``); return every rank's results, or raise every rank's
    error as one ``error_type``."""
    error, results = None, []
    try:
        results = run()
    except Exception as exc:  # gathered below so that no rank waits forever for a failed one
        error = f"rank {comm.rank}: {exc}" if comm.size > 1 else str(exc)
    gathered = comm.allgather((error, results))
    errors = [e for e, _ in gathered if e]
    if errors:
        raise error_type("; ".join(errors))
    return [r for _, rs in gathered for r in rs]
