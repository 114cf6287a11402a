# The two commands of the README. Both set themselves up from nothing.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-heavy install tables bench bench-gpu bench-gpu-wheels clean

$(STAMP): setup.py requirements.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first and exactly pinned: the CPU wheel, not the registry's CUDA build.
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -c requirements.lock -e '.[test,tpu_aot]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) -m atm.demo

test: $(STAMP)
	$(PY) -m pytest -n 2 --durations=15 tests

# The tests marked heavy (pytest.ini): TPU compile of the 700M teacher, launcher and SLURM runs, bench-gpu,
# the per-objective SIGKILL reruns (ELECTRA, multi-task, amalgamation, two-process prepared corpora).
test-heavy: $(STAMP)
	$(PY) -m pytest -n 2 --durations=15 -m heavy tests

# Every paper's table in turn (hours on 2 CPU cores; resumable: rerun to continue), then results/README.md.
# TABLES_FLAGS=--scale=20 redoes them larger on a GPU; TABLES_FLAGS=--smoke runs every script at a few steps.
tables: $(STAMP)
	$(PY) -m reproduce all $(TABLES_FLAGS)

bench: $(STAMP)
	$(PY) -m atm.bench --config=configs/bench/bert_small.py --mode=train --peer=hf
	$(PY) -m atm.bench --config=configs/bench/bert_small.py --mode=infer --peer=hf

# The prepared GPU check (atm/bench_gpu.py): runs on the GPU machine's own python3 (jax + CUDA plugin, flax,
# optax, orbax, torch; no TensorFlow, seqio or clu). ml-collections is the one pure-Python package it lacks:
# `make bench-gpu-wheels` here puts its wheel in .whl/ (git-ignored), which travels with the code.
GPU_PY ?= python3
bench-gpu:
	@$(GPU_PY) -c "import ml_collections" 2>/dev/null || { ls .whl/ml_collections-*.whl >/dev/null 2>&1 || \
	  { echo "bench-gpu: ml_collections is missing and .whl/ has no wheel of it: run make bench-gpu-wheels first" >&2; exit 2; }; \
	  $(GPU_PY) -m pip install -q --no-index --no-deps --target .bench_site .whl/ml_collections-*.whl; }
	PYTHONPATH=.bench_site:$$PYTHONPATH $(GPU_PY) -m atm.bench_gpu --out=docs/benchmarks.md

bench-gpu-wheels:
	$(PY) -m pip download --quiet --no-deps --only-binary=:all: -d .whl ml-collections==1.1.0

clean:
	rm -rf $(VENV) workdirs
