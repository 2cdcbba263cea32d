"""Input pipeline alone: images/s of ``train_dataset`` at 224 px, batch 32, one rank, no model.

Usage: python bench/tools/input_rate.py PREP_OUTPUT_DIR [BATCHES]
"""

import sys
import time

from hvdtrain.data import manifest
from hvdtrain.engine import input_pipeline


def main(data_dir: str, batches: int = 20, batch: int = 32) -> None:
    man = manifest.load(data_dir)
    it = iter(input_pipeline.train_dataset(man, 0, 1, batch=batch, image_size=224))
    for _ in range(3):  # fill the prefetch buffers first
        next(it)
    start = time.perf_counter()
    for _ in range(batches):
        next(it)
    print(f"{batches * batch / (time.perf_counter() - start):.1f} images/s input pipeline alone")


if __name__ == "__main__":
    main(sys.argv[1], *map(int, sys.argv[2:3]))
