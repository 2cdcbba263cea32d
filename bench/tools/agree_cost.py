"""What an allreduce of its own costs per step, against riding on the step's (engine.step):

    mpirun -np 2 .venv/bin/python bench/tools/agree_cost.py

Times 50 eager Horovod allreduces (op Max) of 2 int32s after 5 untimed ones; prints ms per call.
Such a call waits for Horovod's next cycle (HOROVOD_CYCLE_TIME, 20 ms in hvdtrain's defaults).
"""

import os
import time

os.environ.setdefault("HOROVOD_CYCLE_TIME", "20")
os.environ["TF_USE_LEGACY_KERAS"] = "1"

import horovod.tensorflow as hvd
import tensorflow as tf


def main() -> None:
    hvd.init()
    x = tf.constant([0, 1], tf.int32)
    for _ in range(5):
        hvd.allreduce(x, op=hvd.Max, name="agree").numpy()
    t = time.perf_counter()
    for _ in range(50):
        hvd.allreduce(x, op=hvd.Max, name="agree").numpy()
    dt = (time.perf_counter() - t) / 50
    if hvd.rank() == 0:
        print(f"eager allreduce int32[2] Max: {dt * 1e3:.1f} ms per call "
              f"(HOROVOD_CYCLE_TIME={os.environ['HOROVOD_CYCLE_TIME']})")


if __name__ == "__main__":
    main()
