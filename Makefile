# The two commands a newcomer needs (see README):
#   make test       set up the environment if needed, lint, run the tests and the notebooks (tiny preset)
#   make reproduce  the whole pipeline on the demo preset (00 -> 03, baselines, 06, 07 -> reports/)
#   make study      the ablation studies on top of it (04, 05) and the report again
SHELL := /bin/bash

.PHONY: setup test lint reproduce study benchmark

setup:
	@scripts/setup_env.sh >/dev/null

test:
	@py=$$(scripts/setup_env.sh | tail -n 1) && \
	  $$py -m ruff check . && \
	  $$py -m pytest -q tests && \
	  if ls notebooks/*.ipynb >/dev/null 2>&1; then \
	    $$py -m pytest -q --nbval-lax --nbval-current-env notebooks; fi

lint:
	@py=$$(scripts/setup_env.sh | tail -n 1) && $$py -m ruff check . && $$py -m ruff format --check aad1lib tests

reproduce:
	@tic=$$(date +%s); py=$$(scripts/setup_env.sh | tail -n 1) && $$py -m aad1lib.reproduce --preset demo; \
	  rc=$$?; echo "make reproduce: $$(( $$(date +%s) - tic )) s wall time (setup included)"; exit $$rc

study:
	@tic=$$(date +%s); py=$$(scripts/setup_env.sh | tail -n 1) && $$py -m aad1lib.reproduce --preset demo --study; \
	  rc=$$?; echo "make study: $$(( $$(date +%s) - tic )) s wall time"; exit $$rc

benchmark:
	@py=$$(scripts/setup_env.sh | tail -n 1) && $$py benchmarks/streaming.py
