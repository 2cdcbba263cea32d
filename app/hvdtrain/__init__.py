"""hvdtrain: shortest time-to-train for image classifiers on Xeon CPU clusters.

How TensorFlow is reached (tests/test_structure.py checks it): thread settings must be exported
before TensorFlow loads, so only ``model`` and ``input_pipeline`` import it at module level, and
they are imported inside functions that run after ``runtime.start()``. Every other module imports
no TensorFlow when imported; code that needs it after start-up uses ``rt.tf`` / ``rt.hvd`` or a
function-local ``import tensorflow as tf``. ``import hvdtrain.cli`` therefore loads no TensorFlow.
"""

__version__ = "0.1.0"
