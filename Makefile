# The two fresh-machine commands are `make demo` and `make test`; both install what they need first.
.PHONY: deps deps-postgres demo test test-tsan test-crash fuzz soak docs format format-check \
	bench bench-large bench-10m \
	import-memory clean

deps:
	@bash .ci/install-deps

demo: deps
	swift run usage-ledger demo --db demo-ledger

# PostgreSQL only for the exporter's tests.
deps-postgres:
	@bash .ci/install-deps-postgres

test: deps deps-postgres
	swift test

# The concurrency tests (threads and processes) under ThreadSanitizer, in a build folder of their own.
TSAN_MIXED = concurrentThreads|concurrentProcesses|compactionWhileAppending|mixedWorkload
TSAN_TESTS = $(TSAN_MIXED)|concurrentSingleAppends|groupFailure|pipelinedBatches|pipelineFailure|asyncManyTasks|asyncOff
test-tsan: deps
	swift test --sanitize=thread --scratch-path .build-tsan --filter "$(TSAN_TESTS)"

# The crash and damage tests at full strength: 100 SIGKILLs each of an appender and a compaction, 25 of
# a rollup, and 400 data files with random flipped bytes for verify.
test-crash: deps
	USAGE_LEDGER_KILL_ROUNDS=100 USAGE_LEDGER_FLIP_TRIALS=400 swift test --filter "CrashTests|killedAndRerun|flippedBytes"

# The fuzz targets (event JSON, stored records) under libFuzzer and ASan, FUZZ_SECONDS each (default 60).
fuzz: deps
	bash Tests/Fuzz/run $(or $(FUZZ_SECONDS),60)

# The soak: appenders, readers and a maintainer process on one ledger for MINUTES (default 10), release build.
soak: deps
	swift build -c release --product ledger-soak
	rm -rf .build/soak-ledger && .build/release/ledger-soak --db .build/soak-ledger --minutes $(or $(MINUTES),10)

# DocC documentation of the four library modules; any DocC warning fails it.
docs: deps
	for target in UsageLedger LedgerCore LMDBStorage UsageLedgerFoundationCompat; do \
		swift package --disable-sandbox generate-documentation --target $$target --warnings-as-errors || exit 1; \
	done

SWIFT_SOURCES = Sources Tests Package.swift Benchmarks/Package.swift Benchmarks/Sources Benchmarks/Benchmarks

# Formats every Swift file in place with the toolchain's swift-format and the repository's .swift-format.
format:
	swift format format --in-place --recursive --parallel $(SWIFT_SOURCES)

# Fails when a file is not formatted or breaks a lint rule (CI runs it).
format-check:
	swift format lint --strict --recursive --parallel $(SWIFT_SOURCES)

# Benchmarks (a separate package): prints the tables and writes Benchmarks/results.md.
bench: deps
	cd Benchmarks && swift package --disable-sandbox benchmark --format markdown --no-progress | tee results.md

# The same at 1M events (USAGE_LEDGER_BENCH_EVENTS sets any size).
bench-large: deps
	cd Benchmarks && USAGE_LEDGER_BENCH_EVENTS=1000000 swift package --disable-sandbox benchmark --format markdown --no-progress | tee results-1M.md

# 10M events: append, import and `current` only (their ledger needs no rows; rows for 10M events would
# need about 120 GB, docs/capacity.md). About 20 minutes here.
bench-10m: deps
	cd Benchmarks && USAGE_LEDGER_BENCH_EVENTS=10000000 swift package --disable-sandbox benchmark --format markdown --no-progress --filter "1 .*" --filter "3 .*" --filter "4 .*" | tee results-10M.md

# Import through the CLI at 1M and 10M lines: rate, peak heap and mapped file.
import-memory: deps
	Benchmarks/import-memory 1000000 10000000

clean:
	rm -rf .build Benchmarks/.build demo-ledger
