# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv if needed.
VENV   ?= .venv
PYTHON ?= python3
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install demo test test-slow bench clean

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# the CPU build of torch first, pinned; the project's own range (torch>=2.3) then installs nothing more
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

## demo: report/REPORT.md with the papers' figures: the analyses the report shows (cached in results/)
## and the sections' own simulations in one pool of 2 processes; then the analyses' tables
## (results/*.md), read from that same cache (nothing is computed twice)
demo: $(STAMP)
	$(VENV)/bin/zoo list
	$(VENV)/bin/zoo figures --out report --results results --jobs 2
	$(VENV)/bin/zoo bench --report --out results --jobs 2

## test: the linter (ruff, configured in pyproject.toml), then the test suite
## (slow training-to-convergence tests excluded; `make test-slow` runs them)
test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

bench: $(STAMP)
	for b in benches/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf results report runs .pytest_cache
