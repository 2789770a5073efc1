# One task runner for people and CI. `make demo` and `make test` set everything up themselves.
VENV ?= .venv
PY := $(VENV)/bin/python
MMSEARCH := $(VENV)/bin/mmsearch
DEMO_LIBRARY ?= .demo-library

.PHONY: setup test test-fast lint demo bench clean

setup: $(VENV)/.installed

# torch==2.14.1 / torchvision==0.29.1 come from this machine's local wheel cache.
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

# One pytest-xdist worker per core, a test file per worker at a time: a file's module fixtures
# (a Ray cluster, a web server, an indexed library) start once. 1.4 times faster on 2 cores.
PYTEST := $(PY) -m pytest -n auto --dist loadfile

test: setup
	$(PYTEST)

test-fast: setup
	$(PYTEST) -m "not slow"

lint: setup
	$(VENV)/bin/ruff check mmsearch indexer tests scripts sample_corpus bench
	$(VENV)/bin/ruff format --check mmsearch indexer tests scripts sample_corpus bench

demo: setup
	rm -rf $(DEMO_LIBRARY)
	$(MMSEARCH) index sample_corpus/images --model lite0-muse-clipart-memory-jmdict --library $(DEMO_LIBRARY)
	$(MMSEARCH) add-texts sample_corpus/captions.jsonl --text-field caption --library $(DEMO_LIBRARY)
	@echo; echo '$$ mmsearch search "flag" -k 5'
	@$(MMSEARCH) search "flag" -k 5 --library $(DEMO_LIBRARY)
	@echo; echo '$$ mmsearch search "a dog" -k 5'
	@$(MMSEARCH) search "a dog" -k 5 --library $(DEMO_LIBRARY)
	@echo; echo '$$ mmsearch search "飛行機" -k 5   # "an airplane", in Japanese'
	@$(MMSEARCH) search "飛行機" -k 5 --library $(DEMO_LIBRARY)
	@echo; echo '$$ mmsearch captions sample_corpus/images/shapes/stars/star_23pt06step.png'
	@$(MMSEARCH) captions sample_corpus/images/shapes/stars/star_23pt06step.png --library $(DEMO_LIBRARY)

bench: setup
	$(PY) bench/encoders.py

clean:
	rm -rf $(DEMO_LIBRARY) .pytest_cache
