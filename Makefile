# One entry point for a new machine: each target creates the virtualenv, installs pinned
# dependencies and builds the Rust extension in release mode as needed, then does its job.
#   make demo   run the main job on the export shipped in the package
#   make test   every test: cargo tests, then pytest (including moto-server tests)
#   make lint   cargo fmt --check, clippy -D warnings, ruff, mypy (+ stubtest)
#   make bench  the benchmarks in bench/ (not part of the tests)
#   make bench-compare  split vs codec limit, boto3 script, jq on a 1M-item export
#               (bench/compare_split.py; pass options as BENCH_ARGS="--items 200000")

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
RUST_SRC := $(shell find rust -name '*.rs' -o -name 'Cargo.toml') Cargo.toml Cargo.lock

.PHONY: demo test test-rust test-python lint bench bench-compare build clean

$(VENV)/.deps: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "maturin>=1.7,<2"
	touch $@

# maturin builds the extension with the release profile and installs the package editable,
# with its runtime, test, lint and benchmark dependencies. The sources are byte-compiled as a
# wheel install does: a run that compiles them itself (PYTHONDONTWRITEBYTECODE is set on some
# machines) spends 50 ms more before its workers start.
$(VENV)/.built: $(VENV)/.deps $(RUST_SRC) pyproject.toml
	VIRTUAL_ENV=$(abspath $(VENV)) PATH=$(abspath $(VENV))/bin:$$PATH \
		$(VENV)/bin/maturin develop --release -q -E test,lint,bench
	$(PY) -m compileall -q python/ddbshard
	touch $@

build: $(VENV)/.built

demo: build
	$(PY) -m ddbshard demo

test-rust:
	cargo test --release --workspace --exclude ddbshard-python -q

test-python: build
	$(PY) -m pytest -q

test: test-rust test-python

lint: build
	cargo fmt --all --check
	cargo clippy --release --workspace --all-targets -q -- -D warnings
	$(VENV)/bin/ruff check python tests bench
	$(VENV)/bin/ruff format --check python tests bench
	$(VENV)/bin/mypy
	$(PY) -m mypy.stubtest ddbshard._core

bench: build
	$(PY) -m pytest bench -q --benchmark-only

# Three rounds of the codec and ddbshard runs, in turns: one round is too easily disturbed.
BENCH_ARGS ?= --repeat 3

bench-compare: build
	$(PY) bench/compare_split.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) target
