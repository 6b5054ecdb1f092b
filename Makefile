# The two set-up commands of the README: `make run` and `make test`. Each builds what it needs first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed

.PHONY: run test typecheck wheel-test fuzz bench bench-emulation redis clean

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(INSTALLED)

tests/sdk/node_modules/.package-lock.json: tests/sdk/package-lock.json
	cd tests/sdk && npm ci --no-audit --no-fund

# The JS SDK the demo page loads (/demo/centrifuge.js), from the npm registry, never committed.
web/node_modules/.package-lock.json: web/package-lock.json
	npm ci --prefix web --no-audit --no-fund

# The server: embedded memory engine, config.example.json, http://localhost:8000 (demo at /demo/).
run: $(INSTALLED) web/node_modules/.package-lock.json
	$(VENV)/bin/twistd -n --pidfile= httpstream -c config.example.json

# Every test: the types gate first (mypy, below), then in-memory, real sockets, the official SDKs in Node (Redis
# started if it does not answer). tests/test_layers.py holds the import contract. Four pytest-xdist workers: the
# tests that start processes mostly wait, so they overlap (tests/installlock.py keeps installs one at a time).
test: $(INSTALLED) tests/sdk/node_modules/.package-lock.json redis
	$(PY) -m mypy
	$(PY) -m pytest -q -p no:cacheprovider -n 4

# The types gate: mypy --strict with the mypy-zope plugin over httpstream/ ([tool.mypy] in pyproject.toml).
typecheck: $(INSTALLED)
	$(PY) -m mypy

# The wheel as a user installs it: built, installed with no extras into a fresh venv in /tmp, pip check, served
# (memory and Redis engines) and connected to (part of make test too).
wheel-test: $(INSTALLED) redis
	$(PY) -m pytest -q -p no:cacheprovider tests/test_wheel.py

# The fuzz suite long: at least 100,000 inputs per entry point (make test runs it with a small budget).
fuzz: $(INSTALLED)
	$(PY) -m pytest -q -p no:cacheprovider tests/fuzz --hypothesis-profile=long

redis:
	@scripts/ensure-redis

# One table: httpstream on every transport against the bare twisted.web baseline, the peers and the raw send floor
# (bench/README.md). BENCH_ARGS adds options, e.g. make bench BENCH_ARGS="--reactor asyncio-uvloop --fanout-10k".
BENCH_INSTALLED := $(VENV)/.bench-installed
$(BENCH_INSTALLED): $(INSTALLED) pyproject.toml
	$(PY) -m pip install --quiet -e '.[test,bench]'
	touch $(BENCH_INSTALLED)

bench: $(BENCH_INSTALLED)
	$(PY) -m bench.ceiling $(BENCH_ARGS)

# Two servers on the redis engine: POST /emulation answered by the session's node vs forwarded over Redis.
bench-emulation: $(INSTALLED) redis
	$(PY) -m bench.emulation

clean:
	rm -rf $(VENV) tests/sdk/node_modules tests/browser/node_modules web/node_modules
