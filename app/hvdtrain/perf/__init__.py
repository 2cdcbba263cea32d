"""Speed: ``hvdtrain bench``, the cost model behind ``hvdtrain plan`` (scaling), Horovod timeline
reading, ``hvdtrain info``, and the benchmark suite behind ``make bench``."""
