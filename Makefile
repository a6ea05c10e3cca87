# One entry point for a new machine: each target creates the virtualenv, installs the locked
# dependencies (requirements.lock) and builds the Rust extension in release mode as needed, then
# does its job.
#   make demo   run the main job on the export shipped in the package
#   make test   every test: cargo tests, then pytest (including moto-server tests)
#   make test-fast  the edit loop: cargo tests, then pytest without the moto-server and slow tests
#   make lint   cargo fmt --check, clippy -D warnings, ruff, mypy (+ stubtest)
#   make bench  the benchmarks in bench/ (not part of the tests)
#   make bench-compare  split vs codec limit, boto3 script, jq on a 1M-item export
#               (bench/compare_split.py; pass options as BENCH_ARGS="--items 200000")
#   make bench-sync  sync's keys/s with 16 rounds in flight against one after another, on a
#               local endpoint adding 10 ms to every call (bench/compare_sync.py; SYNC_ARGS)
#   make lock   re-resolve pyproject.toml's ranges and rewrite requirements.lock (see below)
#
# pyproject.toml declares the ranges ddbshard works with (what a user's pip resolves against);
# requirements.lock holds the exact versions tested, and is all that .venv gets: pip installs
# it first, then maturin develop finds every dependency already satisfied, constrained to the
# lock (PIP_CONSTRAINT) so that it can neither upgrade nor add anything unlocked. A range in
# pyproject.toml that the lock no longer satisfies fails there: run `make lock`.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
LOCK   := requirements.lock
RUST_SRC := $(shell find rust -name '*.rs' -o -name 'Cargo.toml') Cargo.toml Cargo.lock

.PHONY: demo test test-fast test-rust test-python lint bench bench-compare bench-sync build lock clean

# The locked runtime, test, lint and bench dependencies and maturin, at their exact versions.
$(VENV)/.deps: $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r $(LOCK)
	touch $@

# maturin builds the extension with the release profile and installs the package editable; its
# runtime, test, lint and benchmark dependencies are already there from the lock (maturin's pip
# install of them changes nothing). The sources are byte-compiled as a wheel install does: a run
# that compiles them itself (PYTHONDONTWRITEBYTECODE is set on some machines) spends 50 ms more
# before its workers start.
$(VENV)/.built: $(VENV)/.deps $(RUST_SRC) pyproject.toml
	VIRTUAL_ENV=$(abspath $(VENV)) PATH=$(abspath $(VENV))/bin:$$PATH \
		PIP_CONSTRAINT=$(abspath $(LOCK)) \
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

test-fast: test-rust build
	$(PY) -m pytest -q -m "not server and not slow"

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

SYNC_ARGS ?= --keys 20000

bench-sync: build
	$(PY) bench/compare_sync.py $(SYNC_ARGS)

# A fresh resolve of pyproject.toml's ranges (build-system requires, dependencies, and the test,
# lint and bench extras; not ddbshard itself, so nothing is compiled) in a throwaway venv under
# target/, frozen into requirements.lock. Run it to move to newer versions (or after changing a
# range), then `make clean test lint` and commit the lock with what it needed.
LOCK_VENV := target/lock-venv

define LOCK_INPUTS
import tomllib
with open("pyproject.toml", "rb") as f:
    p = tomllib.load(f)
reqs = p["build-system"]["requires"] + p["project"]["dependencies"]
for extra in ("test", "lint", "bench"):
    reqs += p["project"]["optional-dependencies"][extra]
print("\n".join(reqs))
endef
export LOCK_INPUTS

lock:
	rm -rf $(LOCK_VENV)
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install -q --upgrade pip
	$(LOCK_VENV)/bin/python -c "$$LOCK_INPUTS" > $(LOCK_VENV)/requirements.in
	$(LOCK_VENV)/bin/python -m pip install -q -r $(LOCK_VENV)/requirements.in
	{ sed -n '/^#/p' $(LOCK); $(LOCK_VENV)/bin/python -m pip freeze --exclude-editable; } \
		> $(LOCK).new
	mv $(LOCK).new $(LOCK)
	rm -rf $(LOCK_VENV)

clean:
	rm -rf $(VENV) target
