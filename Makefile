# ganeti-extstorage-gluster: see README.md
PYTHON := /usr/bin/python3
HARNESS := $(PYTHON) tests/harness/local_gluster.py

.PHONY: deps test unit docs demo faults e2e bench bench-quick deb deb-test gluster-up gluster-down

deps:
	tests/harness/install-deps

test: deps
	tests/run-all

unit: deps
	$(PYTHON) -m pytest -q -p no:cacheprovider tests/unit

# README.md's example output, from a run against the private GlusterFS
docs: deps
	$(PYTHON) tests/docs/generate

demo: deps
	tests/harness/demo

faults: deps
	tests/faults/run

e2e: deps
	tests/e2e/run $(PLATFORM)

bench: deps
	bench/run

bench-quick: deps
	bench/run --quick

gluster-up: deps
	$(HARNESS) up

gluster-down:
	$(HARNESS) down

deb:
	packaging/build-deb

deb-test: deb
	packaging/test-deb
