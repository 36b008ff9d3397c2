# The two set-up commands of the README. Each installs what is missing, configures and builds.
.PHONY: demo test build asan bench clean deps

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

clean:
	rm -rf build
