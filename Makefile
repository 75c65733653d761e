# The README's two commands: `make demo` and `make test`. Both do all set-up on a fresh
# Debian machine with Python 3.11: system packages (apt, only when missing), then the Python
# environment in .venv/ at the repo root.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
# re-install when the project's dependencies change
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)
# chromium: the page's browser test drives Debian's build with Playwright (no browser download)
SYSTEM_PACKAGES := espeak-ng chromium
DEMO_DIR := .demo
# one line per package pip fetches (and its errors), instead of silence or pages of notices
PIP_PROGRESS := awk '/^(Collecting|Successfully|ERROR)/ {print; fflush()}'

.PHONY: demo test setup system-packages clean

setup: $(STAMP)

system-packages:
	@missing=""; for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

$(STAMP): pyproject.toml | system-packages
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "==> Python dependencies into $(VENV)/ (first time: a few minutes; pip shows each package)"
	# torch first and pinned: the local CPU wheel, not gigabytes of CUDA
	set -o pipefail; $(BIN)/pip install --progress-bar off torch==2.13.0 2>&1 | $(PIP_PROGRESS)
	set -o pipefail; $(BIN)/pip install --progress-bar off -e '.[dev]' 2>&1 | $(PIP_PROGRESS)
	# data dependency only (its packaged speaker-encoder weights); its webrtcvad dependency
	# does not import on modern setuptools and the product never imports resemblyzer
	$(BIN)/pip install -q --no-deps resemblyzer==0.1.4
	# dev only: the reference tests/test_s3fd.py compares models/s3fd.py with (it skips
	# without it); --no-deps: its declared dependencies would replace opencv-headless
	$(BIN)/pip install -q --no-deps face-alignment==1.5.0
	@rm -f $(VENV)/.installed-* && touch $@

demo: setup
	$(BIN)/lipsync demo --work-dir $(DEMO_DIR)

test: setup
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache
