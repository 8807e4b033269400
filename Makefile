# Two commands: `make run` (the main job on the embedded data) and `make test`.
# Both create .venv on first use; later calls reuse it (the stamp tracks pyproject.toml).
# Runs and their reports go to results/ (untracked); `make publish` is the one step that
# writes the committed leaderboards/smoke/.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CLI := $(VENV)/bin/robustbench-norm
STAMP := $(VENV)/.installed

.PHONY: setup run check publish nightly test test-slow lint format bench calibrate clean

$(STAMP): pyproject.toml
	@echo "setting up $(VENV) (first time: a few minutes, mostly torch)"
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	@echo "installing the package and its dependencies (torch is the large one); pip reports each"
	$(PY) -m pip install --progress-bar off -e '.[test,ray]'
	# without their deps: imagecorruptions would pull the GUI opencv-python over the headless
	# cv2/, torchattacks (APGD-CE/-T) an old requests that breaks selenium's urllib3
	$(PY) -m pip install --quiet --no-deps 'imagecorruptions==1.1.2' 'torchattacks==3.5.1'
	@$(PY) -c "import robustbench_norm, torch; print('ready: robustbench-norm', robustbench_norm.__version__, '· torch', torch.__version__)"
	touch $(STAMP)

setup: $(STAMP)

run: setup
	$(CLI) run suites/smoke.toml
	$(CLI) report --suite smoke

# the regression gate: the latest smoke run against the published smoke leaderboard
check: setup
	$(CLI) check --suite suites/smoke.toml --candidate latest

publish: setup
	$(CLI) report --suite smoke --publish

# one night of the smoke suite: run on fresh seeds → check against the pooled history →
# publish leaderboards/smoke-nightly/ with its history (README, "Nightly")
nightly: setup
	$(CLI) nightly suites/smoke.toml

# two workers, a test file each (its module fixtures are built once), one torch thread each
test: setup
	$(PY) -m pytest -m "not slow" -q -n 2 --dist loadfile

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

calibrate: setup
	$(PY) benchmarks/gate_calibration.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
