# Patchbay: `make run` serves on http://127.0.0.1:$(PORT); `make test` runs the whole suite.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
PORT ?= 8000
RUNTIME := $(VENV)/.runtime-installed
DEVTOOLS := $(VENV)/.dev-installed
# pip warns about unused local index folders on our machines; drop that line, keep the rest
# (stdout stays a terminal, so pip shows its progress bars).
QUIET := 2> >(grep -v 'is ignored: it is neither' >&2 || true)
# PyPI has no +cpu build of torch (its torch pulls CUDA): the CPU wheel comes from PyTorch's CPU
# index, alone and --no-deps. Where pip already finds the pinned wheel without the network (a
# wheel folder in pip's configuration, as on our machines) no index is asked at all.
TORCH_CPU_INDEX := https://download.pytorch.org/whl/cpu
TORCH_PIN := $(shell grep -m1 '^torch==' requirements/cpu.txt)
TORCH_SOURCE = if $(PIP) install --dry-run --ignore-installed --no-index --no-deps --quiet "$(TORCH_PIN)" >/dev/null 2>&1; \
	then echo "--no-index"; else echo "--index-url $(TORCH_CPU_INDEX)"; fi

.PHONY: help install torch-source bench run run-tiny test worker reaper model demo-adapters migrate lock check clean frontend browser specs

help:
	@echo "make run    install what is missing, migrate, get the default model, serve on :$(PORT)"
	@echo "make run-tiny  the same with the tiny random model: nothing to download, answers are nonsense"
	@echo "make test   run the whole test suite"
	@echo "make specs  run the chat page's node --test specs alone"
	@echo "make worker a Celery GPU worker (INFERENCE_MODE=celery, REDIS_URL)"
	@echo "make reaper ends answers whose worker went silent (celery mode)"
	@echo "make bench install what the benchmarks need (bench/engine.py, bench/load.py)"
	@echo "make lock   recompile requirements/*.txt from requirements/*.in"

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(RUNTIME): requirements/cpu.txt requirements/nodeps.txt | $(VENV)/bin/python
	@echo "==> 1/3 $(TORCH_PIN) (CPU build, a 190 MB download)"
	@$(PIP) install --no-deps $$($(TORCH_SOURCE)) "$(TORCH_PIN)" $(QUIET)
	@echo "==> 2/3 the rest of requirements/cpu.txt (about 110 packages, a 100 MB download)"
	@$(PIP) install -r requirements/cpu.txt $(QUIET)
	@echo "==> 3/3 requirements/nodeps.txt (lorax-client, without its stale pins)"
	@$(PIP) install --no-deps -r requirements/nodeps.txt $(QUIET)
	touch $@

# Where torch comes from: prints pip's index options for it (see TORCH_CPU_INDEX).
torch-source: | $(VENV)/bin/python
	@$(TORCH_SOURCE)

$(DEVTOOLS): requirements/dev.txt $(RUNTIME)
	@echo "==> test tools (requirements/dev.txt)"
	@$(PIP) install -r requirements/dev.txt $(QUIET)
	touch $@

install: $(RUNTIME)

# What the benchmarks need beyond the runtime (bench/load.py speaks WebSocket with `websockets`).
BENCHTOOLS := $(VENV)/.bench-installed
$(BENCHTOOLS): requirements/bench.txt $(RUNTIME)
	@echo "==> benchmark tools (requirements/bench.txt)"
	@$(PIP) install -r requirements/bench.txt $(QUIET)
	touch $@

bench: $(BENCHTOOLS)
	@echo "Ready. The engine alone: $(PY) bench/engine.py --quick"
	@echo "Streams against a running server (make run): $(PY) bench/load.py --url http://127.0.0.1:$(PORT) --streams 20"

# `migrate --check` answers in a second where `migrate` takes several: restarts skip it.
migrate: $(RUNTIME)
	@$(PY) manage.py migrate --check >/dev/null 2>&1 || $(PY) manage.py migrate --noinput

# The default model (SmolLM2-135M-Instruct and its demo adapters) is only made when BASE_MODEL
# is left at its default; the first time downloads 93 MB and converts it, later runs only check.
model: migrate
ifndef BASE_MODEL
	$(PY) manage.py get_default_model
endif

# Remake the demo adapters' training data and weights (committed; `make run` never trains).
demo-adapters: $(RUNTIME)
	$(PY) -m inference.demo_adapters.train

# The chat page's bundle is committed; this rebuilds it (npm ci + esbuild) only when
# frontend/src or package-lock.json changed since, so a fresh clone needs no Node.
frontend: | $(VENV)/bin/python
	$(PY) frontend/bundle.py --ensure

# The chat page's pure modules, alone (`make test` runs them too, through
# tests/project/test_frontend_specs.py). They import only frontend/src: no npm install.
specs:
	@if command -v node >/dev/null; then node --test frontend/tests/*.test.mjs; \
	else echo "node is not installed: the chat page's specs (frontend/tests) did not run"; fi

# Celery mode (INFERENCE_MODE=celery, REDIS_URL set): a GPU worker on queue `gpu`. One process
# owns one engine; its pool threads each drive one generation, all sharing the engine's batch.
# Its pool threads: WORKER_CONCURRENCY (an environment variable, read by chatsite/settings.py).
worker: $(RUNTIME)
	$(VENV)/bin/celery -A chatsite worker -Q gpu --pool threads \
		--prefetch-multiplier 1 --loglevel INFO

reaper: $(RUNTIME)
	$(PY) manage.py reaper

# The browser tests drive Debian's chromium (never a downloaded browser); as root, install it
# when missing. Elsewhere the tests skip with a message (or fail under REQUIRE_SERVICES=1).
browser:
	@if [ ! -x /usr/bin/chromium ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get install -y chromium || { apt-get update && apt-get install -y chromium; }; \
	fi

SERVE = DEBUG=$${DEBUG:-1} $(PY) -m daphne -b 127.0.0.1 -p $(PORT) chatsite.asgi:application

URL_LINE = @echo "==> Patchbay on http://127.0.0.1:$(PORT)/ (Ctrl+C stops it)"

run: model frontend
	$(URL_LINE)
	@$(SERVE)

# The tiny random-weight model (inference/demo.py), with its own database and adapters.
TINY := BASE_MODEL=$(CURDIR)/var/tiny/demo-base ADAPTERS_DIR=$(CURDIR)/var/tiny/adapters \
	DATABASE_URL=sqlite:///$(CURDIR)/var/tiny/db.sqlite3
run-tiny: $(RUNTIME) frontend
	mkdir -p var/tiny
	@$(TINY) $(PY) manage.py migrate --check >/dev/null 2>&1 || $(TINY) $(PY) manage.py migrate --noinput
	$(TINY) $(PY) manage.py make_demo_model
	$(URL_LINE)
	@$(TINY) $(SERVE)

test: $(DEVTOOLS) frontend browser
	$(PY) -m pytest tests

check: $(RUNTIME)
	$(PY) manage.py check

lock:
	$(PIP) install --quiet uv $(QUIET)
	cd requirements && ../$(VENV)/bin/uv pip compile cpu.in -o cpu.txt --python-version 3.11 --find-links /opt/wheels --custom-compile-command "make lock" --quiet
	cd requirements && ../$(VENV)/bin/uv pip compile bench.in -o bench.txt --python-version 3.11 --custom-compile-command "make lock" --quiet
	cd requirements && ../$(VENV)/bin/uv pip compile gpu.in -o gpu.txt --python-version 3.11 --custom-compile-command "make lock" --quiet
	cd requirements && ../$(VENV)/bin/uv pip compile dev.in -o dev.txt --python-version 3.11 --find-links /opt/wheels --custom-compile-command "make lock" --quiet

clean:
	rm -rf $(VENV) var/static
