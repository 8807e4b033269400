# Two commands: `make run` (the main job on the embedded data) and `make test`.
# Both create .venv on first use; later calls reuse it (the stamp tracks pyproject.toml).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup run test test-slow lint format bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,ray]'
	# without its deps: they would pull the GUI opencv-python over the headless cv2/
	$(PY) -m pip install --quiet --no-deps 'imagecorruptions==1.1.2'
	touch $(STAMP)

setup: $(STAMP)

run: setup
	$(VENV)/bin/robustbench-norm run suites/smoke.toml
	$(VENV)/bin/robustbench-norm report --suite smoke

test: setup
	$(PY) -m pytest -m "not slow" -q

test-slow: setup
	$(PY) -m pytest -m slow -q

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: setup
	$(PY) benchmarks/norm_speed.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
