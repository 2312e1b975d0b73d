# Two entry points for a fresh machine: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu

.PHONY: setup system-libs browser demo test lint

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	@# Without an NVIDIA GPU, the CPU build of torch (a tenth of the CUDA build's size) from PyTorch's own index;
	@# where that index is not reachable, pip falls back to PyPI's torch below (a CUDA build that also runs on a CPU).
	@# A pair that does not work together (torchvision's operators missing) is removed again.
	@command -v nvidia-smi >/dev/null 2>&1 || { $(PY) -m pip install --quiet --retries 0 --timeout 15 \
		--index-url $(TORCH_CPU_INDEX) torch torchvision \
		&& $(PY) -c "import torch, torchvision; torchvision.ops.nms(torch.zeros(0, 4), torch.zeros(0), 0.5)" 2>/dev/null; } \
		|| { echo "note: no working CPU build of torch from $(TORCH_CPU_INDEX); torch comes from PyPI (a CUDA build)"; \
		$(PY) -m pip uninstall --quiet -y torch torchvision; }
	$(PY) -m pip install --quiet -e ".[test]"
	@# ns-render needs an ffmpeg on PATH; use the one imageio-ffmpeg ships when the system has none
	command -v ffmpeg >/dev/null || ln -sf "$$($(PY) -c 'import imageio_ffmpeg; print(imageio_ffmpeg.get_ffmpeg_exe())')" $(VENV)/bin/ffmpeg
	touch $@

setup: $(VENV)/.installed system-libs

# open3d (nerfstudio's point-cloud export, laser-export) loads libusb-1.0 at import; Debian slim images lack it
system-libs:
	@ldconfig -p | grep -q libusb-1.0 || { apt-get update -qq && apt-get install -y -qq libusb-1.0-0 >/dev/null; } \
		|| echo "warning: could not install libusb-1.0-0; open3d and laser-export will not import"

# Debian's headless Chromium for the real-browser viewer test (needs root, as on CI and this project's machines)
browser:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; } \
		|| echo "warning: could not install chromium; the browser test will be skipped"

demo: setup
	$(VENV)/bin/laser-demo --output-dir demo_output

test: setup browser
	$(PY) -m ruff check laser_ns tests benchmarks
	$(PY) -m pytest -q tests

lint: setup
	$(PY) -m ruff check laser_ns tests benchmarks
	$(PY) -m ruff format --check laser_ns tests benchmarks
