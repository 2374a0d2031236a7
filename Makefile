# mlflow-governance: `make demo` runs the end-to-end demo on SQLite, `make test` the whole suite.
# Both create .venv and install what they need into it.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: install demo test soak lint bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[all,dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	rm -rf .demo && mkdir -p .demo
	cd .demo && ../$(PY) ../examples/quickstart.py
	cd .demo && ../$(PY) ../examples/team_story.py
	cd .demo && ../$(PY) ../examples/cicd_story.py

test: $(STAMP)
	@# The browser tests drive Debian's Chromium through Playwright (which never downloads one).
	@test -x /usr/bin/chromium || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq chromium >/dev/null) || echo "make: could not install chromium"
	$(PY) -m pytest -n auto --dist loadgroup -q -m "not soak" $(PYTEST_ARGS)

# The long fault tests (a server killed under load, the database down for 10 s): several
# minutes of real servers, so apart from `make test`; .ci/run runs both. loadfile keeps a
# module's tests on one worker, so the outage they share happens once.
soak: $(STAMP)
	$(PY) -m pytest -n 2 --dist loadfile -q -m soak $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check mlflow_governance
	$(VENV)/bin/mypy
	@# The one-way layers and no import cycles ([tool.importlinter] in pyproject.toml).
	$(VENV)/bin/lint-imports --no-cache --no-logo

bench: $(STAMP)
	$(PY) benchmarks/overhead.py
	$(PY) benchmarks/policy_eval.py

clean:
	rm -rf .demo build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
