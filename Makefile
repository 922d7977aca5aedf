# Two entry points, both self-contained on a fresh machine:
#   make demo   - create .venv, install kvq, score the bundled sample video with the bundled
#                 default weights and write its maps to demo/
#   make test   - create .venv, install kvq with test tools and run the suite
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.kvq-installed

.PHONY: demo test lint clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	rm -f demo/results.json  # a fresh score each time (kvq score would resume a finished file)
	$(VENV)/bin/kvq score samples/bigbuckbunny.mp4 --out demo/results.json --maps demo/maps

test: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests scripts benchmarks
	$(VENV)/bin/ruff format --check src tests scripts benchmarks

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
