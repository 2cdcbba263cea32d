"""The TensorFlow side: the ResNet model, the tf.data input pipeline, the compiled step and the
optimizers. The only package that imports TensorFlow at module level: import it after
``cluster.runtime.start`` has set threads."""
