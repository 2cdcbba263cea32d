"""The exported model's graph: a trained network behind tensorflow/tpu's serving interface.

``serving_default`` takes encoded images (key ``input``, ``tf.string [None]``: JPEG or PNG bytes)
and runs ``hvdtrain eval``'s preprocessing inside the graph, so a client written for tpu's ResNet
export works unchanged. ``predict_tensor`` takes the preprocessed batch (``float32 [None, S, S,
3]``): what converters (ONNX, OpenVINO) and benchmarks feed. Both return the same outputs. Nothing
here touches Horovod: a SavedModel must load where Horovod is not installed (horovod#4028).
"""

from __future__ import annotations

import tensorflow as tf

from hvdtrain.engine import input_pipeline

BYTES_SIGNATURE, TENSOR_SIGNATURE = "serving_default", "predict_tensor"
BYTES_INPUT, TENSOR_INPUT = "input", "images"
OUTPUTS = ("probabilities", "classes", "top_k_classes", "top_k_probabilities", "synsets")


class ServingModel(tf.Module):
    """``net`` (restored weights, inference mode) with its two signatures; ``classes`` names the
    network's outputs in index order (a 0-based index = a record's label minus label_offset)."""

    def __init__(self, net, image_size: int, crop_padding: int, classes: list[str], top_k: int = 5):
        super().__init__(name="hvdtrain_serving")
        self.net, self.image_size, self.crop_padding = net, image_size, crop_padding
        self.class_names = tf.constant(classes, tf.string)
        self.top_k = min(top_k, len(classes))
        self.serving_default = tf.function(self._from_bytes, input_signature=[
            tf.TensorSpec([None], tf.string, name=BYTES_INPUT)])
        self.predict_tensor = tf.function(self._from_tensor, input_signature=[
            tf.TensorSpec([None, image_size, image_size, 3], tf.float32, name=TENSOR_INPUT)])

    def _from_bytes(self, input):
        images = tf.map_fn(lambda b: input_pipeline.serving_preprocess(b, self.image_size, self.crop_padding),
                           input, fn_output_signature=tf.TensorSpec(
                               [self.image_size, self.image_size, 3], tf.float32))
        return self._outputs(images)

    def _from_tensor(self, images):
        return self._outputs(images)

    def _outputs(self, images) -> dict:
        probabilities = tf.nn.softmax(tf.cast(self.net(images, training=False), tf.float32))
        classes = tf.argmax(probabilities, axis=-1, output_type=tf.int64)
        top = tf.math.top_k(probabilities, k=self.top_k)
        return {"probabilities": probabilities, "classes": classes,
                "top_k_classes": tf.cast(top.indices, tf.int64), "top_k_probabilities": top.values,
                "synsets": tf.gather(self.class_names, classes)}

    def save(self, path: str) -> None:
        tf.saved_model.save(self, path, signatures={BYTES_SIGNATURE: self.serving_default,
                                                    TENSOR_SIGNATURE: self.predict_tensor})


def warmup_records(path: str, model_name: str, image_size: int, count: int = 3) -> None:
    """TF Serving's warm-up file (``assets.extra/tf_serving_warmup_requests``): ``count``
    PredictionLog records, each a ``serving_default`` request of one mid-grey JPEG at the trained
    size, so the first real request does not pay for tracing and oneDNN's kernel choice."""
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

    jpeg = tf.io.encode_jpeg(tf.fill([image_size, image_size, 3], tf.constant(128, tf.uint8))).numpy()
    with tf.io.TFRecordWriter(path) as out:
        for _ in range(count):
            request = predict_pb2.PredictRequest()
            request.model_spec.name = model_name
            request.model_spec.signature_name = BYTES_SIGNATURE
            request.inputs[BYTES_INPUT].CopyFrom(tf.make_tensor_proto([jpeg], dtype=tf.string))
            log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
            out.write(log.SerializeToString())
