"""``hvdtrain info``: what a cluster user checks first inside an image.

Versions (hvdtrain, Python, TensorFlow with oneDNN on/off, Horovod with its built frameworks,
controllers and tensor operations), the MPI library actually linked, the CPU's model and the ISA
extensions that matter for training speed (AVX-512, VNNI, BF16, AMX), and the thread plan.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

from hvdtrain import __version__
from hvdtrain.cluster import topology

ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")


def cpu_summary() -> tuple[str, list[str]]:
    model = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    flags = topology.cpu_flags()
    return model, [f for f in ISA_FLAGS if f in flags]


def mpi_library_version() -> str:
    try:
        import mpi4py

        mpi4py.rc.initialize = False  # MPI_Get_library_version is legal before MPI_Init
        from mpi4py import MPI

        return MPI.Get_library_version().strip().splitlines()[0]
    except Exception as exc:  # pragma: no cover - reported, not fatal
        return f"unavailable ({exc})"


def supported_stack() -> str:
    """What this hvdtrain was built for, from its own package metadata (i.e. pyproject.toml)."""
    from importlib import metadata

    try:
        meta = metadata.metadata("hvdtrain")
    except metadata.PackageNotFoundError:  # pragma: no cover - run from a source tree
        return "unknown (hvdtrain is not installed)"
    pins = [r for r in meta.get_all("Requires-Dist") or []
            if r.split("=")[0] in ("tensorflow-cpu", "tf-keras", "horovod")]
    return f"Python {meta['Requires-Python']}, " + ", ".join(pins) + ", Open MPI 4.1/5.0 or Intel MPI"


def collect() -> dict:
    settings = topology.decide()
    topology.apply(settings)
    import tensorflow as tf

    onednn = topology.describe_onednn(topology.onednn_enabled()).removeprefix("oneDNN: ")
    import horovod
    import horovod.tensorflow as hvd

    model, isa = cpu_summary()
    return {
        "hvdtrain": __version__,
        "supported": supported_stack(),
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "onednn": onednn,
        "onednn_fpmath_mode": os.environ.get("ONEDNN_DEFAULT_FPMATH_MODE", "default"),
        "horovod": horovod.__version__,
        "horovod_controllers": [n for n, f in (("MPI", hvd.mpi_built), ("Gloo", hvd.gloo_built)) if f()],
        "horovod_operations": [n for n, f in (("MPI", hvd.mpi_built), ("Gloo", hvd.gloo_built),
                                              ("NCCL", hvd.nccl_built), ("CCL", hvd.ccl_built),
                                              ("DDL", hvd.ddl_built)) if f()],
        "mpi": mpi_library_version(),
        "cpu": model,
        "cpu_isa": isa,
        "cores_visible": topology.node_cores(),
        "threads": settings.describe(),
    }


def render(info: dict) -> str:
    width = max(len(k) for k in info)
    lines = []
    for k, v in info.items():
        if isinstance(v, list):
            v = ", ".join(v) or "none"
        elif v is None:
            v = "unknown"
        elif isinstance(v, bool):
            v = "on" if v else "off"
        lines.append(f"{k:<{width}}  {v}")
    return "\n".join(lines)
