"""Using a trained model: export (TF Serving's layout, ONNX, OpenVINO), predict, and the accuracy
and speed of an export. TensorFlow comes in through ``engine`` inside functions, as elsewhere."""
