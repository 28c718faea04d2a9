# Two commands set everything up on a fresh machine:
#   make reproduce   virtual environment, `dvc pull` of the corpus and the Korean monolingual text, then `dvc repro` (about 30 min)
#   make test        virtual environment, then the test suite (about 3-4 min on 2 cores; install-browser needs root)
#   make docs        the documentation site in site/ (mkdocs, strict)

VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

.PHONY: install install-browser install-tcmalloc reproduce test lint docs bench

install: $(VENV)/.installed

# torch==2.13.0 first: that exact pin takes the CPU wheel; an unpinned torch would pull a CUDA build.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[test,docs]'
	touch $@

# Headless Chromium and its WebDriver for the browser test (Debian packages; needs root, as in CI).
install-browser:
	command -v chromedriver >/dev/null || (apt-get update && apt-get install -y --no-install-recommends chromium chromium-driver)

# tcmalloc for the training commands (Debian's libtcmalloc-minimal4; needs root): flat memory and
# faster steps, the same bytes. Optional: without it, training runs on the system's allocator.
install-tcmalloc:
	ldconfig -p | grep -q libtcmalloc_minimal || (apt-get update && apt-get install -y --no-install-recommends \
		libtcmalloc-minimal4) || echo "tcmalloc not installed (needs root): training uses the system allocator"

reproduce: install install-tcmalloc
	$(BIN)/dvc pull data/raw.dvc data/mono.dvc
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/dvc repro

test: install install-browser install-tcmalloc
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/pytest

lint: install
	$(BIN)/ruff check seq2seq tests bench docs/hooks.py

# Strict: a broken link, a page missing from the nav or a generated page that fails stops the build.
docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

bench: install
	$(BIN)/seq2seq bench train
