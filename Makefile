# The two set-up commands of the README. Each installs what is missing, configures and builds.
.PHONY: demo test build asan bench fuzz clean deps

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

# libFuzzer targets (clang; docs/fuzzing.md): each runs FUZZ_SECONDS on a scratch copy of its corpus.
FUZZ_SECONDS ?= 60
fuzz:
	@cmake --preset fuzz >/dev/null
	@cmake --build build/fuzz --target kvsim_fuzz
	@FUZZ_SECONDS=$(FUZZ_SECONDS) bash fuzz/run.sh

clean:
	rm -rf build
