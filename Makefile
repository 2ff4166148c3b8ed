# Turnout: `make run` starts the proxy on its embedded default configuration,
# `make test` installs everything the suite needs and runs it, `make bench`
# runs the load benchmarks.

# The interpreter of the venv: Debian's python3 (3.11 or later) when it is
# installed with its venv module, else the first python3 on PATH. Debian's
# executable has libpython linked in statically, where pyenv's default build
# and most source builds load libpython3.x.so (calls through the PLT, no
# profile-guided optimisation): on the same code it served 10 % more requests
# per second with 9 % less CPU per request (PERFORMANCE.md). `make PYTHON=...`
# chooses another; `make clean` first to rebuild an existing .venv.
PYTHON ?= $(shell p=/usr/bin/python3; $$p -c 'import sys, ensurepip, venv; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1 && echo $$p || echo python3)
VENV := .venv
BIN := $(VENV)/bin
# Debian packages the test suite and benchmarks start themselves (caddy: the Go
# peer proxy in the benchmarks; libnginx-mod-stream: nginx's TCP relay, a peer in
# the TCP benchmarks; postgresql, dnsmasq and bind9-dnsutils: real databases and
# DNS behind the TCP and UDP routers; chromium and chromium-driver: the dashboard
# test's browser). DEB_FILES are checked like DEB_BINARIES, for packages that
# ship no binary.
DEB_PACKAGES := wrk nginx-light haproxy redis-server etcd-server etcd-client caddy libnginx-mod-stream \
	postgresql dnsmasq bind9-dnsutils chromium chromium-driver
DEB_BINARIES := wrk nginx haproxy redis-server etcd etcdctl caddy psql pgbench dnsmasq dig chromium chromedriver
DEB_FILES := /usr/lib/nginx/modules/ngx_stream_module.so

.PHONY: run test bench lint deps-debian deps-native native clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Stamp files: reinstall only when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

# The tests also draw the benchmark chart once, so they install the `bench` extra too.
$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	touch $@ $(VENV)/.installed $(VENV)/.installed-bench

# The hot path compiled with mypyc (scripts/compile_native.py, PERFORMANCE.md):
# about a third more requests per second. Rebuilt when its sources change; when
# it cannot be built (no C compiler), Turnout runs the same modules as Python.
# The modules are read from COMPILED in proxy/native.py, so the list lives once.
NATIVE_MODULES := $(shell sed -n 's/^    "\(proxy\.[a-z_.]*\)",$$/\1/p' proxy/native.py)
NATIVE_SOURCES := $(addsuffix .py,$(subst .,/,$(NATIVE_MODULES))) proxy/native.py \
	scripts/compile_native.py

$(VENV)/.installed-native: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[native]'
	touch $@ $(VENV)/.installed

$(VENV)/.native: $(NATIVE_SOURCES) $(VENV)/.installed-native | deps-native
	@echo "compiling the hot path with mypyc (about a minute; log: $(VENV)/native.log)"
	@if $(BIN)/python scripts/compile_native.py >$(VENV)/native.log 2>&1; then touch $@; \
	else tail -5 $(VENV)/native.log; \
		echo "could not compile the hot path: Turnout runs its Python sources (see $(VENV)/native.log)"; fi

native: $(VENV)/.native

# A C compiler and the interpreter's headers, for the compiled hot path.
deps-native: | $(BIN)/python
	@if ! command -v gcc >/dev/null 2>&1 || ! $(BIN)/python -c 'import os, sys, sysconfig; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))'; then \
		if [ "$$(id -u)" = 0 ]; then \
			echo "installing Debian packages: gcc python3-dev"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc python3-dev >/dev/null; \
		else \
			echo "not root: install gcc and python3-dev yourself to compile the hot path"; \
		fi; \
	fi

run: $(VENV)/.installed $(VENV)/.native
	$(BIN)/turnout run

# Installs the Debian packages when running as root and one of them is missing;
# as another user it leaves them to you (tests that need them then skip, or fail in CI).
deps-debian:
	@missing=""; for b in $(DEB_BINARIES); do command -v $$b >/dev/null 2>&1 || PATH="$$PATH:/usr/sbin" command -v $$b >/dev/null 2>&1 || missing="$$missing $$b"; done; \
	for f in $(DEB_FILES); do [ -e $$f ] || missing="$$missing $$f"; done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ]; then \
			echo "installing Debian packages for:$$missing"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(DEB_PACKAGES) >/dev/null; \
		else \
			echo "not root: install these Debian packages yourself: $(DEB_PACKAGES)"; \
		fi; \
	fi

test: $(VENV)/.installed-test $(VENV)/.native deps-debian
	$(BIN)/ruff check .
	PATH="$$PATH:/usr/sbin" $(BIN)/python -m pytest -q

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The chart (PNG) needs matplotlib, the optional `bench` extra.
$(VENV)/.installed-bench: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	touch $@ $(VENV)/.installed

# `make bench BENCH_ARGS="--scenarios small-get --duration 5"`: see benchmarks/README.md.
bench: $(VENV)/.installed-bench $(VENV)/.native deps-debian
	PATH="$$PATH:/usr/sbin" $(BIN)/python -m benchmarks $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info proxy/.native-sources
	find proxy -name '*.so' -delete
