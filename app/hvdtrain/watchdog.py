"""A progress watchdog: no step for ``timeout`` seconds ends the process, and so the MPI job.

Horovod's stall check runs in its background thread, which itself blocks inside MPI when a peer
is frozen (SIGSTOP, a dead NFS mount, a wedged node); then nothing ever reports. This thread
does not talk to MPI: when the training loop stops making progress it prints why and exits
non-zero, and mpirun takes the other ranks down. Paused around long, step-free work (saves,
evaluation) and armed only after the first step (graph tracing can take minutes).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from contextlib import contextmanager


class Watchdog:
    def __init__(self, timeout: float, rank: int, exit_code: int = 70):
        self.timeout, self.rank, self.exit_code = timeout, rank, exit_code
        self._last = None  # None: not armed
        self._paused = 0
        self._stop = threading.Event()
        self._step = 0
        if timeout > 0:
            threading.Thread(target=self._watch, name="hvdtrain-watchdog", daemon=True).start()

    def kick(self, step: int) -> None:
        self._step, self._last = step, time.monotonic()

    @contextmanager
    def paused(self):
        self._paused += 1
        try:
            yield
        finally:
            self._paused -= 1
            if self._last is not None:
                self._last = time.monotonic()

    def stop(self) -> None:
        self._stop.set()

    def _watch(self) -> None:
        while not self._stop.wait(min(1.0, self.timeout / 4)):
            last = self._last
            if last is None or self._paused:
                continue
            idle = time.monotonic() - last
            if idle > self.timeout:
                sys.stderr.write(
                    f"hvdtrain: error (rank {self.rank}): no training step finished for {idle:.0f} s "
                    f"after step {self._step} (--stall-timeout {self.timeout:g}); a rank is stalled "
                    f"or dead. Stopping the job; rerun to resume from the last checkpoint.\n")
                sys.stderr.flush()
                os._exit(self.exit_code)
