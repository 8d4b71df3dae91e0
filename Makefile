# Two commands on a fresh machine:
#   make demo   create .venv, install the pinned stack, run the main job
#   make test   run the test suite (creates .venv first when needed)
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-long bench docs clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -c constraints.txt -e '.[dev,dask,onnx,openvino,docs]'
	# labelme's own rasterizer is the reference of the conformance test; its GUI deps are not needed
	$(VENV)/bin/pip install -q --no-deps labelme==6.3.1
	# Label Studio's brush codec is the reference of the brush RLE tests; its converter's deps are not needed
	$(VENV)/bin/pip install -q --no-deps label-studio-converter==0.0.59
	# Debian's chromium opens the nightly report in its browser test; as root it is installed,
	# elsewhere that one test skips and says so
	command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && { apt-get install -y -q chromium \
	  || { apt-get update -q && apt-get install -y -q chromium; }; } >/dev/null 2>&1; } \
	  || echo "chromium not installed: the report's browser test will be skipped"
	touch $(STAMP)

demo: setup
	TF_CPP_MIN_LOG_LEVEL=3 $(PY) -m mrcnn_pipeline.demo --output demo_output

test: setup
	TF_CPP_MIN_LOG_LEVEL=3 $(PY) -m pytest -q

test-long: setup
	TF_CPP_MIN_LOG_LEVEL=3 $(PY) -m pytest -q -m long

# On a machine with an NVIDIA GPU: install the gpu extra, then train, compare with the CPU and
# time detection (mrcnn_pipeline/gpu_check.py); elsewhere one line and nothing installed.
gpu-check: setup
	@if ! nvidia-smi -L >/dev/null 2>&1; then \
	  echo "gpu-check: no NVIDIA GPU found (nvidia-smi -L); nothing to check"; \
	else \
	  $(VENV)/bin/pip install -q -c constraints.txt -e '.[gpu]' && \
	  TF_CPP_MIN_LOG_LEVEL=3 $(PY) -m mrcnn_pipeline.gpu_check; \
	fi

bench: setup
	TF_CPP_MIN_LOG_LEVEL=3 $(PY) benchmarks/inference.py

docs: setup
	$(PY) -m mkdocs build --strict --site-dir site

clean:
	rm -rf $(VENV) demo_output .pytest_cache site
