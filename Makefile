# Set-up and everyday commands. Everything runs in a local virtual
# environment (.venv) that the first command creates.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install test demo bench clean

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

# pytest exits 5 when it collects no test: not a failure of the code.
test: $(STAMP)
	TF_CPP_MIN_LOG_LEVEL=3 $(PY) -m pytest $(PYTEST_ARGS); status=$$?; \
	if [ $$status -eq 5 ]; then echo "pytest collected no tests"; exit 0; fi; exit $$status

demo: $(STAMP)
	TF_CPP_MIN_LOG_LEVEL=3 $(PY) examples/house_prices.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
