PY := .venv/bin/python
STAMP := .venv/.installed
# The tested versions of every dependency (pip freeze of the venv the last full test run used);
# setup installs exactly these. Local version labels (torch's +cpu) are dropped, so the same
# line takes the CPU wheel here and the default wheel elsewhere.
LOCK := constraints.txt

.PHONY: setup lock test bench sweep lint

setup: $(STAMP)

$(STAMP): pyproject.toml $(LOCK)
	@test -x $(PY) || python3 -m venv .venv
	@$(PY) -m pip install --quiet -c $(LOCK) --upgrade pip
	@$(PY) -m pip install --quiet -c $(LOCK) torch==2.13.0
	@$(PY) -m pip install --quiet -c $(LOCK) -e '.[dev]'
	@touch $(STAMP)

# Refresh the lock from the venv after testing new versions:
#   .venv/bin/pip install --upgrade -e '.[dev]' && make test && make lock
lock:
	@{ echo "# Tested dependency versions; make setup installs with pip -c $(LOCK). Refresh: make lock"; \
	  $(PY) -m pip freeze --all --exclude-editable | sed -E 's/\+[A-Za-z0-9.]+$$//'; } > $(LOCK).tmp
	@mv $(LOCK).tmp $(LOCK)

test: setup
	$(PY) -m pytest -q

bench: setup
	$(PY) bench/data.py
	$(PY) bench/throughput.py
	$(PY) bench/metrics.py
	$(PY) bench/sweep.py --grace 300
	$(PY) bench/trial_startup.py
	$(PY) bench/sequence_cost.py
	$(PY) bench/sweep_efficiency.py

sweep: setup
	$(PY) pipeline/sweep.py dsprites --profile cpu

lint: setup
	.venv/bin/ruff check . && .venv/bin/ruff format --check .
