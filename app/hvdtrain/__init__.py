"""hvdtrain: shortest time-to-train for image classifiers on Xeon CPU clusters.

How TensorFlow is reached (tests/test_structure.py checks it): thread settings must be exported
before TensorFlow loads, so only ``model`` and ``input_pipeline`` import it at module level, and
they are imported inside functions that run after ``runtime.start()``. Every other module imports
no TensorFlow when imported; code that needs it after start-up uses ``rt.tf`` / ``rt.hvd`` or a
function-local ``import tensorflow as tf``. ``import hvdtrain.cli`` therefore loads no TensorFlow.

``tf.keras`` is Keras 2 (the tf-keras package): TensorFlow 2.16+ default to Keras 3, whose
variables Horovod 0.28.1 cannot reduce (horovod#4290). TensorFlow reads TF_USE_LEGACY_KERAS when it
is imported, so it is set here, the first thing any ``import hvdtrain...`` runs; the processes
hvdtrain starts (mpirun ranks, prep workers) inherit it. ``runtime.start`` checks that it held.
"""

import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"

__version__ = "0.1.0"
