"""The flags of `hvdtrain export` and `hvdtrain predict` (one config object per command)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from hvdtrain.cluster.topology import ThreadFlags
from hvdtrain.errors import ConfigError
from hvdtrain.flags import REQUIRED, Validated, flag

FORMATS = ("savedmodel", "onnx", "openvino")
EXPORT_PRECISIONS = ("fp32", "bf16")


@dataclass
class ExportConfig(Validated):
    """`hvdtrain export`: one checkpoint as a new numbered version of an export dir."""

    model_dir: Path = flag(REQUIRED, "--model-dir", help="Model dir of a `hvdtrain train` run.")
    output_dir: Path = flag(REQUIRED, "--output-dir",
                            help="The export dir (TF Serving's model base path): the model goes "
                                 "to OUTPUT_DIR/<version>/, one higher than any version there.")
    checkpoint: Path | None = flag(None, "--checkpoint",
                                   help="A checkpoint directory (default: the newest valid one).")
    format: str = flag("savedmodel", "--format", choices=FORMATS,
                       help="savedmodel | onnx | openvino. The SavedModel is always written; onnx "
                            "and openvino add a converted copy beside it (pip extras: "
                            "hvdtrain[onnx], hvdtrain[openvino]).")
    precision: str = flag("fp32", "--precision", choices=EXPORT_PRECISIONS,
                          help="fp32 | bf16 (bfloat16 compute; needs a CPU with bf16 kernels; "
                               "SavedModel only).")
    threads: ThreadFlags = field(default_factory=ThreadFlags)

    def check(self) -> None:
        if self.precision == "bf16" and self.format != "savedmodel":
            # measured: tf2onnx writes bf16 Conv inputs ONNX Runtime rejects as an invalid graph;
            # OpenVINO cannot compile the bf16 casts. An fp32 export converts cleanly.
            raise ConfigError(f"--precision bf16 --format {self.format}: the {self.format} converter "
                              "cannot read TensorFlow's bfloat16 graph; export bf16 as a SavedModel, "
                              f"or fp32 for {self.format}")


@dataclass
class PredictConfig(Validated):
    """`hvdtrain predict`: top-k classes of image files, from an export or a checkpoint."""

    model_dir: Path | None = flag(None, "--model-dir",
                                  help="Predict with the newest valid checkpoint of this run.")
    export: Path | None = flag(None, "--export",
                               help="Predict with an export (its newest version, or a version dir).")
    top_k: int = flag(5, "--top-k", low=1, help="Classes shown per image.")
    batch_size: int = flag(32, "--batch-size", low=1, help="Images per call of the model.")
    threads: ThreadFlags = field(default_factory=ThreadFlags)

    def check(self) -> None:
        if (self.model_dir is None) == (self.export is None):
            raise ConfigError("give exactly one of --model-dir M (a checkpoint) or --export E")


@dataclass
class ExportEvalFlags(Validated):
    """What `hvdtrain eval` and `hvdtrain bench --eval` add to score or time an export."""

    export: Path | None = flag(None, "--export",
                               help="An export dir (its newest version) or a version dir, instead "
                                    "of a checkpoint.")
    format: str = flag("savedmodel", "--format", choices=FORMATS,
                       help="Which copy of the export to use: savedmodel | onnx | openvino.")
