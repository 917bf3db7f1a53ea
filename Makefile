# The two fresh-machine commands are `make demo` and `make test`; both install what they need first.
.PHONY: deps demo test bench clean

deps:
	@bash .ci/install-deps

demo: deps
	swift run usage-ledger demo --db demo-ledger

test: deps
	swift test

bench: deps
	cd Benchmarks && swift package --disable-sandbox benchmark --format markdown --path . 2>&1 | tee results.md

clean:
	rm -rf .build Benchmarks/.build demo-ledger
