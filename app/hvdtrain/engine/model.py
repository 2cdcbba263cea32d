"""ResNet v1.5 (18/34/50/101/152), channels-last, as tf.keras 2 functional models.

v1.5 puts the stride on the 3x3 convolution of a bottleneck (not the first 1x1). BN uses the
seed's decay (0.95 by default) and epsilon 1e-5; the last BN of every residual block starts with
gamma = 0, so each block starts as the identity — this is what lets very large batches train.
Weight decay is applied by the training step to the variables ``decayed_variables`` returns.
"""

from __future__ import annotations

import tensorflow as tf

layers = tf.keras.layers

# blocks per stage, and whether the block is a bottleneck
ARCHS = {
    "resnet18": ([2, 2, 2, 2], False),
    "resnet34": ([3, 4, 6, 3], False),
    "resnet50": ([3, 4, 6, 3], True),
    "resnet101": ([3, 4, 23, 3], True),
    "resnet152": ([3, 8, 36, 3], True),
}
BN_EPSILON = 1e-5


def _conv(filters: int, kernel: int, stride: int, name: str):
    return layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False,
                         kernel_initializer=tf.keras.initializers.VarianceScaling(2.0, "fan_out"),
                         name=name)


def _bn(decay: float, name: str, zero_gamma: bool = False):
    return layers.BatchNormalization(momentum=decay, epsilon=BN_EPSILON, name=name,
                                     gamma_initializer="zeros" if zero_gamma else "ones")


def _block(x, filters: int, stride: int, bottleneck: bool, decay: float, name: str):
    out_filters = filters * 4 if bottleneck else filters
    shortcut = x
    if stride != 1 or x.shape[-1] != out_filters:
        shortcut = _conv(out_filters, 1, stride, name + "_proj")(x)
        shortcut = _bn(decay, name + "_proj_bn")(shortcut)
    if bottleneck:
        y = layers.ReLU()(_bn(decay, name + "_bn1")(_conv(filters, 1, 1, name + "_conv1")(x)))
        y = layers.ReLU()(_bn(decay, name + "_bn2")(_conv(filters, 3, stride, name + "_conv2")(y)))
        y = _bn(decay, name + "_bn3", zero_gamma=True)(_conv(out_filters, 1, 1, name + "_conv3")(y))
    else:
        y = layers.ReLU()(_bn(decay, name + "_bn1")(_conv(filters, 3, stride, name + "_conv1")(x)))
        y = _bn(decay, name + "_bn2", zero_gamma=True)(_conv(filters, 3, 1, name + "_conv2")(y))
    return layers.ReLU()(layers.Add()([y, shortcut]))


def build_resnet(name: str, num_classes: int, image_size: int = 224,
                 bn_decay: float = 0.95) -> tf.keras.Model:
    """The network; its logits are float32 even under a mixed-precision policy."""
    if name not in ARCHS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(ARCHS)}")
    blocks, bottleneck = ARCHS[name]
    inputs = tf.keras.Input((image_size, image_size, 3), name="images")
    x = _conv(64, 7, 2, "stem_conv")(inputs)
    x = layers.ReLU()(_bn(bn_decay, "stem_bn")(x))
    x = layers.MaxPool2D(3, 2, padding="same")(x)
    for stage, n in enumerate(blocks):
        for b in range(n):
            stride = 2 if stage > 0 and b == 0 else 1
            x = _block(x, 64 * 2 ** stage, stride, bottleneck, bn_decay, f"s{stage + 1}b{b + 1}")
    x = layers.GlobalAveragePooling2D()(x)
    logits = layers.Dense(num_classes, name="logits",
                          kernel_initializer=tf.keras.initializers.RandomNormal(stddev=0.01))(x)
    logits = layers.Activation("linear", dtype="float32", name="logits_fp32")(logits)
    return tf.keras.Model(inputs, logits, name=name)


def decayed_variables(model: tf.keras.Model) -> list:
    """Conv and dense kernels: L2 weight decay applies to these only (not BN, not biases)."""
    return [v for v in model.trainable_variables if "kernel" in v.name]
