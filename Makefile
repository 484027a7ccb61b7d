# Thin wrapper over CMake; the build rules live in CMakeLists.txt.
# make run | test | soak | bench | jepsen | format | clean

NPROC   := $(shell nproc 2>/dev/null || echo 2)
DEBUG   := build/debug
RELEASE := build/release
TSAN    := build/tsan
FUZZ    := build/fuzz
# Seconds per fuzz target: bounded in make test, long in make fuzz.
FUZZ_TEST_SECONDS := 20
FUZZ_SECONDS      ?= 600
FUZZ_TARGETS      := store_cmd grpc_conn peer_batch peer_snap_chunk member_record wal_segment
# Where `make run` keeps the three members' data dirs and logs.
RUN_DIR           ?= /tmp/latch-run

.PHONY: all deps debug release run sim-demo test soak bench jepsen format clean fuzz fuzz-build

all: debug

deps:
	@bash scripts/deps.sh

# Debug build with assertions, LATCH_DEBUG_CHECKS and ASan+UBSan: what `make test` runs.
debug: deps
	cmake -S . -B $(DEBUG) -DCMAKE_BUILD_TYPE=Debug -DLATCH_SANITIZE="address;undefined" -DLATCH_TEETH=ON
	cmake --build $(DEBUG) -j $(NPROC)

# Optimised build (-O2 -g), no sanitizers: the demo, soak and bench.
release: deps
	cmake -S . -B $(RELEASE) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLATCH_SANITIZE="" -DLATCH_TEETH=OFF
	cmake --build $(RELEASE) -j $(NPROC)

# Everything under ASan+UBSan, then the threaded tests under ThreadSanitizer (the two
# sanitizers cannot share a build): the store's readers and writer, and the node's loop and
# storage threads.
test: debug
	ctest --test-dir $(DEBUG) --output-on-failure -j $(NPROC)
	cmake -S . -B $(TSAN) -DCMAKE_BUILD_TYPE=Debug -DLATCH_SANITIZE=thread
	cmake --build $(TSAN) -j $(NPROC) --target test_threads test_node
	TSAN_OPTIONS=halt_on_error=1 $(TSAN)/test_threads
	TSAN_OPTIONS=halt_on_error=1 $(TSAN)/test_node
	$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=$(FUZZ_TEST_SECONDS)

# libFuzzer (clang, ASan+UBSan) in its own tree. Each target starts from its committed seeds
# (tests/fuzz/corpus/<x>, read only) and keeps what it finds in $(FUZZ)/corpus-<x>; a crash
# leaves its input in $(FUZZ)/ and fails the run.
fuzz-build: deps
	cmake -S . -B $(FUZZ) -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Debug \
	    -DLATCH_FUZZ=ON -DLATCH_SANITIZE="address;undefined"
	cmake --build $(FUZZ) -j $(NPROC) --target $(addprefix fuzz_,$(FUZZ_TARGETS))

fuzz: fuzz-build
	for t in $(FUZZ_TARGETS); do \
	    mkdir -p $(FUZZ)/corpus-$$t && \
	    $(FUZZ)/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) -timeout=10 -rss_limit_mb=2048 \
	        -print_final_stats=1 -artifact_prefix=$(FUZZ)/ \
	        $(FUZZ)/corpus-$$t tests/fuzz/corpus/$$t || exit 1; \
	done

# Three latchd members on loopback in the foreground (scripts/run-cluster.sh prints how to
# reach them); Ctrl-C stops them. The simulator demo of issue 2 is `make sim-demo`.
run: release
	bash scripts/run-cluster.sh $(RELEASE)/latchd $(RUN_DIR)

sim-demo: release
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
	bash tests/bench/grpc_bench.sh $(RELEASE)
	bash scripts/compare-etcd.sh $(RELEASE)
	bash scripts/compare-locks.sh $(RELEASE)

# The full Jepsen-style suite (docs/jepsen.md): every workload x nemesis mix on 5 latchd
# nodes (release build), then the etcd-API workloads against a real etcd 3.4;
# JEPSEN_TIME seconds of operations per run (several minutes each; the whole suite takes
# hours). Run folders and summary.json under jepsen/store/suite-<time>/.
JEPSEN_TIME ?= 180
jepsen: release
	/usr/bin/python3 jepsen/suite.py --time $(JEPSEN_TIME) --latchd $(RELEASE)/latchd

format:
	bash scripts/check-format.sh --fix

clean:
	rm -rf build
