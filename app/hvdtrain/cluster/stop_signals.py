"""Save on a signal. SIGTERM, SIGUSR1 or SIGINT (a batch system's warning or time limit, mpirun
forwarding one, a person's Ctrl-C) is only noted here, in the handler; the training loop acts on
it once every rank agrees, which the next step's own allreduce settles (``engine.step``), so at the
end of the step after the signal (``training.train.loop``): rank 0 saves a checkpoint and every
process exits with ``EX_TEMPFAIL`` (75: saved, not finished). A signal that
comes during an evaluation or a checkpoint write is noted and honoured when that finishes; a second
one changes nothing, so it cannot corrupt the save."""

from __future__ import annotations

import signal

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)
EX_TEMPFAIL = 75  # sysexits.h: the job can be run again and will continue


class StopSignals:
    def __init__(self):
        self.signum = 0  # the first stop signal this process received (0: none)

    def install(self) -> StopSignals:
        """Note the stop signals from now on (main thread only, as Python requires)."""
        for s in STOP_SIGNALS:
            signal.signal(s, self._note)
        return self

    def _note(self, signum, frame) -> None:
        self.signum = self.signum or signum


def name(signum: int) -> str:
    return signal.Signals(signum).name
