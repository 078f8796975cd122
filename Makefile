# polyshop's two commands (and two helpers):
#   make run    install missing Debian packages, build (optimised, -O2 -g, in build/), start the shop:
#               every built service plus the nginx edge on http://localhost:8080, data in
#               ./data (make run DATA=/some/dir); Ctrl-C stops everything.
#   make test   install test packages, build with ASan+UBSan (build-test/), run every test.
#   make bench  wrk benchmarks against nginx's static reply; writes bench/RESULTS.md.
#   make clean  remove build/ and build-test/ (never the data folder).

BUILD      ?= build
DATA       ?= $(CURDIR)/data
JOBS       ?= 2
EDGE_PORT  ?= 8080

.PHONY: run build deps test bench clean
MAKEFLAGS += --no-print-directory

deps:
	@scripts/install-deps

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPOLYSHOP_SANITIZE=OFF -DPOLYSHOP_TESTS=OFF >/dev/null
	@cmake --build $(BUILD) -j$(JOBS)

# The run command shows a shop, not an empty list: the product service loads its demo
# catalog into an empty store (PRODUCT_DEMO_CATALOG=0 to skip).
run: build
	@export PRODUCT_DEMO_CATALOG=$${PRODUCT_DEMO_CATALOG:-1}; exec $(BUILD)/bin/polyshop-run --root "$(CURDIR)" --bin-dir "$(CURDIR)/$(BUILD)/services" \
	  --data "$(DATA)" --edge-port $(EDGE_PORT)

test:
	@scripts/test

bench:
	@bench/run

clean:
	rm -rf build build-test
