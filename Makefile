# Two commands on a fresh machine with Python 3.11+:
#   make lessons   set everything up and open the lessons in JupyterLab
#   make test      set everything up and run the whole test suite (ruff, pytest, notebooks)
#   make site      build the lessons as an offline website in site/ (open it with python -m http.server -d site)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
EXTRAS ?= test,classroom,site
STAMP := $(VENV)/.installed-$(EXTRAS)
# Tools the tests start (jupyter kernels, nbgrader's alembic, voila) come from the venv.
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: setup lessons test test-fast assignments models benchmark notebooks-run site clean

$(STAMP): pyproject.toml requirements-lock.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements-lock.txt -e ".[$(EXTRAS)]"
	touch $(STAMP)

setup: $(STAMP)

# Containers (Binder-like images, CI) often run as root, which JupyterLab refuses without --allow-root.
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root)

lessons: setup
	$(BIN)/jupyter lab notebooks/ $(ROOT_FLAG)

# Two pytest workers; each test file (each notebook) stays on one worker, in order.
TEST_WORKERS ?= 2

test: setup
	$(BIN)/ruff check .
	$(BIN)/python -m pytest tests --nbval-lax notebooks -v -n $(TEST_WORKERS) --dist loadfile

test-fast: setup
	$(BIN)/python -m pytest tests -m "not slow and not browser"

assignments: setup
	$(BIN)/python classroom/build_assignments.py

# Retrain every model that ships with vae-lite (vae_lite/_models) from the lessons' configurations.
models: setup
	$(BIN)/python -m vae_lite.zoo --out vae_lite/_models

# The committed, executed lessons as a website (Sphinx + myst-nb, nothing executed), into site/.
site: setup
	$(BIN)/python site_src/build_site.py --out site

benchmark:
	$(MAKE) setup EXTRAS=test,classroom,site,benchmark
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) assignments site build/site-src build/site-html build/site-doctrees build/jupyter_execute
