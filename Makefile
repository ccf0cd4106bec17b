# sandboxd: the two commands of the README.
#   make run    installs what is missing, builds the binaries it runs, and runs the main job
#               (sandboxd serve)
#   make test   installs what is missing, builds everything, then the whole suite (ctest), plus
#               the suite built with ASan+UBSan
BUILD      ?= build
ASAN_BUILD ?= build-asan
JOBS       ?= $(shell nproc)
CMAKE_ARGS ?=
# Debug information of the two builds: line tables (file:line in backtraces, perf and
# sanitizer reports) without the types and variables of -g, which cost a third of the compile
# time of the Beast sources. DEBUG_INFO=-g for a build to step through in gdb; `make package`
# keeps -g.
DEBUG_INFO ?= -g1

.PHONY: all deps test-deps configure build build-asan test-tsan run demo test test-asan bench soak load fuzz package clean

all: build

deps:
	@scripts/install-deps.sh build

test-deps:
	@scripts/install-deps.sh test

# The development builds treat warnings as errors (SBX_WERROR; off in a plain CMake build). A
# build directory configured before the option existed is switched on here.
WERROR_ON = grep -qx 'SBX_WERROR:BOOL=ON' $(1)/CMakeCache.txt || cmake -S . -B $(1) -DSBX_WERROR=ON

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSBX_WERROR=ON \
	  -DCMAKE_C_FLAGS_RELWITHDEBINFO="-O2 $(DEBUG_INFO) -DNDEBUG" \
	  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O2 $(DEBUG_INFO) -DNDEBUG" $(CMAKE_ARGS)

configure: deps $(BUILD)/CMakeCache.txt
	@$(call WERROR_ON,$(BUILD))

build: configure
	cmake --build $(BUILD) -j $(JOBS)

$(ASAN_BUILD)/CMakeCache.txt:
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DSBX_SANITIZE=ON -DSBX_WERROR=ON \
	  -DCMAKE_C_FLAGS_DEBUG="$(DEBUG_INFO)" -DCMAKE_CXX_FLAGS_DEBUG="$(DEBUG_INFO)" $(CMAKE_ARGS)

build-asan: deps $(ASAN_BUILD)/CMakeCache.txt
	@$(call WERROR_ON,$(ASAN_BUILD))
	cmake --build $(ASAN_BUILD) -j $(JOBS)

# ThreadSanitizer (not part of `make test`: a third build). TSAN_TESTS picks the ctest regex:
# by default the threaded cores (the HTTP server, the sandbox service, the run manager, the MCP
# server) and the engine's spawner and live processes. die_after_fork=0: the spawner's inits are
# raw clone3 copies of a process in which TSan runs a thread of its own, and TSan would end each
# payload it forks before the payload's exec.
TSAN_BUILD ?= build-tsan
TSAN_TESTS ?= Api|WebSocket|SandboxService|RunManager|EventBus|Mcp|ServeSandbox|Spawner|Live
test-tsan: deps
	cmake -S . -B $(TSAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DSBX_TSAN=ON -DSBX_WERROR=ON \
	  -DCMAKE_C_FLAGS_DEBUG="-O1 $(DEBUG_INFO)" -DCMAKE_CXX_FLAGS_DEBUG="-O1 $(DEBUG_INFO)" $(CMAKE_ARGS)
	cmake --build $(TSAN_BUILD) -j $(JOBS)
	cd $(TSAN_BUILD) && TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 die_after_fork=0" \
	  ctest --output-on-failure -j $(JOBS) --timeout 600 -R '$(TSAN_TESTS)'

# The main job: the service on SQLite under .run/, on 127.0.0.1:8080, with development keys
# printed at start. Ctrl-C stops it.
RUN_DIR    ?= $(CURDIR)/.run
# Run logs, artifacts and mount points: every directory above it must be searchable by others
# (the sandboxes reach their mounts through it), which a checkout under /root is not.
DATA_DIR   ?= /var/lib/sandboxd/dev
LISTEN     ?= 127.0.0.1:8080

# Only what runs: sandboxd, the sandboxd-server and sandboxd-mcp it execs for `serve` and `mcp`,
# the sandboxctl client and the web page (<build>/web); the test suite is left to `make build`
# and `make test`.
RUN_TARGETS ?= sandboxd sandboxd-server sandboxd-mcp sandboxctl web

run: configure
	cmake --build $(BUILD) -j $(JOBS) --target $(RUN_TARGETS)
	@$(BUILD)/supervisor/sandboxd check
	@mkdir -p $(RUN_DIR) && mkdir -p -m 0711 $(DATA_DIR)
	$(BUILD)/supervisor/sandboxd serve --listen $(LISTEN) \
	  --database sqlite://$(RUN_DIR)/sandboxd.db --data-dir $(DATA_DIR) --dev-key \
	  --web-root $(abspath $(BUILD))/web

demo: configure
	cmake --build $(BUILD) -j $(JOBS) --target sandboxd
	@scripts/demo.sh $(BUILD)/supervisor/sandboxd

test: test-deps build build-asan
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS) --timeout 300
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  ctest --output-on-failure -j $(JOBS) --timeout 300

bench: test-deps build
	bench/startup.sh $(BUILD)/supervisor/sandboxd
	bench/service.sh $(BUILD)
	bench/host_floor.sh $(BUILD)
	bench/docker.sh $(BUILD)
	bench/sandbox.sh $(BUILD)

# A soak of mixed runs and the API under load (bench/soak.sh, bench/load.sh; docs/bench/).
SOAK_RUNS ?= 10000
soak: test-deps build
	bench/soak.sh $(BUILD) $(SOAK_RUNS)
load: test-deps build
	bench/load.sh $(BUILD)

# The fuzz targets (tests/fuzz/README.md) with clang, libFuzzer and ASan+UBSan in build-fuzz/,
# each run for FUZZ_SECONDS. `make test` only replays their seed corpora.
FUZZ_BUILD   ?= build-fuzz
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?=
fuzz:
	@scripts/install-deps.sh fuzz
	cmake -S . -B $(FUZZ_BUILD) -DCMAKE_C_COMPILER=clang-14 -DCMAKE_CXX_COMPILER=clang++-14 \
	  -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_FLAGS_DEBUG="-g1 -O1" -DCMAKE_CXX_FLAGS_DEBUG="-g1 -O1" \
	  -DCMAKE_C_FLAGS=-fsanitize=fuzzer-no-link -DCMAKE_CXX_FLAGS=-fsanitize=fuzzer-no-link \
	  -DSBX_SANITIZE=ON -DSBX_FUZZ=ON $(CMAKE_ARGS)
	cmake --build $(FUZZ_BUILD) -j $(JOBS) --target fuzz_targets
	scripts/fuzz.sh $(FUZZ_BUILD) $(FUZZ_SECONDS) $(FUZZ_TARGETS)

# The .deb (build-pkg/sandboxd_VERSION_amd64.deb), installed under /usr with /etc/sandboxd.
PKG_BUILD  ?= build-pkg
package: deps
	cmake -S . -B $(PKG_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_INSTALL_PREFIX=/usr \
	  -DSBX_BUILD_TESTS=OFF $(CMAKE_ARGS)
	cmake --build $(PKG_BUILD) -j $(JOBS)
	cd $(PKG_BUILD) && cpack -G DEB

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(TSAN_BUILD) $(FUZZ_BUILD)
