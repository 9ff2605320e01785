# Every target sets up the venv first (pip: it takes torch from this machine's disk).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
DEMO_ENV := SEARCHCORE_MILVUS_URI=./data/demo/milvus.db SEARCHCORE_DB_URL=./data/demo/images.db \
	SEARCHCORE_MODEL=demo/tiny_clip.pt SEARCHCORE_LIBRARY=demo

.PHONY: setup test lint format run demo bench bench-gpu-prepare bench-scale loadtest clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	$(PIP) install torch==2.14.1 torchvision==0.29.1
	$(PIP) install -e ".[dev]"
	touch $@

test: setup
	$(PY) -m pytest

lint: setup
	$(VENV)/bin/ruff check searchcore app.py tests bench demo
	$(VENV)/bin/mypy searchcore

format: setup
	$(VENV)/bin/ruff format searchcore app.py tests bench demo

# The real RN50 model; cn_clip downloads it into SEARCHCORE_MODEL_DIR on first start.
run: setup
	$(PY) app.py $(ARGS)

# Fully offline: the tiny model and a generated sample library of coloured shapes.
demo: setup
	$(DEMO_ENV) $(PY) -m demo.make_demo
	$(DEMO_ENV) $(PY) app.py $(ARGS)

bench: setup
	$(PY) -m bench.run_all

# Downloads the wheels the GPU machine lacks into bench/wheels; then run bench/gpu_bench.sh there.
bench-gpu-prepare:
	bash bench/gpu_bench.sh --prepare

bench-scale: setup
	$(PY) -m bench.bench_scale

loadtest: setup
	$(PY) -m bench.loadtest --clients 8 --seconds 60
	$(PY) -m bench.loadtest --clients 32 --seconds 60

clean:
	rm -rf $(VENV) data .pytest_cache .mypy_cache .ruff_cache
