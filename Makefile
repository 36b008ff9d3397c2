# The two set-up commands of the README. Each installs what is missing, configures and builds.
.PHONY: demo test build asan asan-fast bench fuzz fuzz-build fuzz-smoke clean deps

deps:
	@bash scripts/install-deps.sh

build: deps
	@cmake --preset release >/dev/null
	@cmake --build --preset release

demo: build
	@bash scripts/demo.sh

test: build
	@ctest --preset release

asan: deps
	@cmake --preset debug >/dev/null
	@cmake --build --preset debug
	@ctest --preset debug

bench: build
	@bash bench/run.sh

# The fast tests under ASan + UBSan, as CI runs them: the asan-fast preset is the debug preset
# without CUDA or benchmarks and with line tables only (-g1: a third less compile time), in
# build/asan-fast.
asan-fast: deps
	@cmake --preset asan-fast >/dev/null
	@cmake --build --preset asan-fast
	@ctest --preset asan-fast

# libFuzzer targets (clang; docs/fuzzing.md): each runs FUZZ_SECONDS on a scratch copy of its
# corpus. fuzz-smoke is CI's bounded run: every target FUZZ_SMOKE_SECONDS (5).
FUZZ_SECONDS ?= 60
FUZZ_SMOKE_SECONDS ?= 5
fuzz-build:
	@bash scripts/install-deps.sh fuzz
	@cmake --preset fuzz >/dev/null
	@cmake --build build/fuzz --target kvsim_fuzz

fuzz: fuzz-build
	@FUZZ_SECONDS=$(FUZZ_SECONDS) bash fuzz/run.sh

fuzz-smoke: fuzz-build
	@FUZZ_SECONDS=$(FUZZ_SMOKE_SECONDS) bash fuzz/run.sh

clean:
	rm -rf build
