# Thin wrapper over CMake; the build rules live in CMakeLists.txt.
# make run | test | soak | bench | format | clean

NPROC   := $(shell nproc 2>/dev/null || echo 2)
DEBUG   := build/debug
RELEASE := build/release
TSAN    := build/tsan

.PHONY: all deps debug release run test soak bench format clean

all: debug

deps:
	@bash scripts/deps.sh

# Debug build with assertions, LATCH_DEBUG_CHECKS and ASan+UBSan: what `make test` runs.
debug: deps
	cmake -S . -B $(DEBUG) -DCMAKE_BUILD_TYPE=Debug -DLATCH_SANITIZE="address;undefined"
	cmake --build $(DEBUG) -j $(NPROC)

# Optimised build (-O2 -g), no sanitizers: the demo, soak and bench.
release: deps
	cmake -S . -B $(RELEASE) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLATCH_SANITIZE=""
	cmake --build $(RELEASE) -j $(NPROC)

# Everything under ASan+UBSan, then the threaded store test under ThreadSanitizer (the two
# sanitizers cannot share a build; store/ is the only module with threads so far).
test: debug
	ctest --test-dir $(DEBUG) --output-on-failure -j $(NPROC)
	cmake -S . -B $(TSAN) -DCMAKE_BUILD_TYPE=Debug -DLATCH_SANITIZE=thread
	cmake --build $(TSAN) -j $(NPROC) --target test_threads
	TSAN_OPTIONS=halt_on_error=1 $(TSAN)/test_threads

run: release
	$(RELEASE)/raft_sim --seed 1 --nodes 5 --steps 20000

soak: release
	$(RELEASE)/raft_sim --seeds 2000 --nodes 5 --steps 10000
	for bug in vote-ignores-log commit-old-term vote-before-persist no-truncate-conflict; do \
	    $(RELEASE)/raft_sim_teeth --bug $$bug --seeds 1000 --nodes 5 --steps 10000 \
	        --expect-violation || exit 1; \
	done

bench: release
	$(RELEASE)/raft_bench
	$(RELEASE)/store_bench --dir $(RELEASE)/store_bench.d

format:
	bash scripts/check-format.sh --fix

clean:
	rm -rf build
