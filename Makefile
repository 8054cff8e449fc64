# Two commands do everything on a fresh Debian 12 machine:
#   make bench   build the patched kernel, boot it, run the benchmark
#                (N=writes per trial, TRIALS=trials per mode, STRICT=1 fails on
#                a missed target; results/bench.md)
#   make test    the test suite (host unit tests, then the VM suite)
#   make nvme    QEMU's NVMe device on KVM_IOFD, fio in a nested guest (results/nvme.md)
# KERNEL_SRC=/path/to/linux builds your own tree instead of Debian's source.

PYTHON3 ?= python3
VENV    := .venv
PY      := $(VENV)/bin/python
# vng and the other tools the harness calls live in the venv.
export PATH := $(abspath $(VENV))/bin:$(PATH)

PYTEST_ARGS ?=
# FLAVOUR=debug (or DEBUG=1): the debug kernel, in its own worktree; the
# flavours are listed in harness/flavours.py.
FLAVOUR ?= $(if $(DEBUG),debug,default)
HARNESS_ARGS := --flavour $(FLAVOUR)
export KVM_IOFD_FLAVOUR := $(FLAVOUR)
# make bench N=20000 TRIALS=7: guest writes per trial, trials per mode;
# STRICT=1: a missed target fails the run (exit status 1).
BENCH_ARGS := $(if $(N),--iterations $(N)) $(if $(TRIALS),--trials $(TRIALS)) $(if $(STRICT),--strict)

.PHONY: all bench bench-record test build deps venv lint gates patches smoke shell clean-venv \
	nvme nvme-build

all: bench

$(VENV)/.installed: pyproject.toml
	$(PYTHON3) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

venv: $(VENV)/.installed

deps: venv
	$(PY) -m harness deps

build: deps
	$(PY) -m harness build $(HARNESS_ARGS)

bench: build
	$(PY) -m harness bench --no-build $(HARNESS_ARGS) $(BENCH_ARGS)

# make bench-record WHY="...": rewrite make test's instruction-count record.
bench-record: build
	$(PY) -m harness bench --no-build $(HARNESS_ARGS) --record-icount --why "$(WHY)"

# make nvme: QEMU's NVMe device on KVM_IOFD, fio in a nested Linux guest
# (IOS=fio I/Os per job, ROUNDS=wall-clock rounds; results/nvme.md).
# QEMU_SRC=/path/to/qemu builds your own QEMU tree instead of Debian's source.
NVME_ARGS := $(if $(IOS),--ios $(IOS)) $(if $(ROUNDS),--rounds $(ROUNDS))

nvme-build: build
	$(PY) -m harness nvme --no-build --build-only $(HARNESS_ARGS)

nvme: nvme-build
	$(PY) -m harness nvme --no-build $(HARNESS_ARGS) $(NVME_ARGS)

# actionlint runs the venv's shellcheck on every run: step (not one on PATH that may differ).
ACTIONLINT := $(VENV)/bin/actionlint -shellcheck $(abspath $(VENV))/bin/shellcheck

lint: venv
	$(PY) -m ruff check harness payload tests
	$(ACTIONLINT) .github/workflows/*.yml

gates: build
	$(PY) -m harness gates --no-build

# The gates judge the series, not a kernel flavour: only the default run has them.
test: build nvme-build lint $(if $(filter default,$(FLAVOUR)),gates)
	$(PY) -m pytest $(PYTEST_ARGS)

# Export the working branch in the kernel tree to kernel-patch/ (V=2 rerolls as v2);
# SEND=1 writes the copy to send, signed by your git identity, to results/outgoing/, OUT=DIR to DIR.
patches: venv
	$(PY) -m harness patches $(if $(V),--version $(V)) $(if $(SEND),--send) $(if $(OUT),--out $(OUT))

smoke: build
	$(PY) -m harness smoke --no-build $(HARNESS_ARGS)

shell: build
	$(PY) -m harness shell --no-build $(HARNESS_ARGS)

clean-venv:
	rm -rf $(VENV)
