PY := .venv/bin/python
STAMP := .venv/.installed

.PHONY: setup test bench sweep lint

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv .venv
	@$(PY) -m pip install --quiet --upgrade pip
	@$(PY) -m pip install --quiet torch==2.13.0
	@$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

test: setup
	$(PY) -m pytest -q

bench: setup
	$(PY) bench/data.py
	$(PY) bench/throughput.py
	$(PY) bench/metrics.py
	$(PY) bench/sweep.py --grace 300
	$(PY) bench/trial_startup.py
	$(PY) bench/sequence_cost.py

sweep: setup
	$(PY) pipeline/sweep.py dsprites --profile cpu

lint: setup
	.venv/bin/ruff check . && .venv/bin/ruff format --check .
