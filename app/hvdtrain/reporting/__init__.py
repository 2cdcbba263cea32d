"""What a run tells people: the event log and TensorBoard, curves, the MLPerf log, and
``hvdtrain report``."""
