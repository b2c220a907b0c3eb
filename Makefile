# The two commands a newcomer needs: `make lab` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PIP    := $(BIN)/python -m pip --disable-pip-version-check -q
FIRST_NOTEBOOK := notebooks/00_gradient_of_an_expectation.ipynb
# Tests and notebooks use small tensors: one CPU thread is as fast as two and immune to the
# thread oversubscription that makes torch crawl on a busy machine. `make lab` keeps torch's default.
TEST_ENV := OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1}

.PHONY: lab test unit notebooks-test bench execute-notebooks clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# torch==2.13.0 first, on its own, so a local CPU wheel is used where one exists.
	$(PIP) install "torch==2.13.0"
	$(PIP) install -e ".[lab,test]"
	touch $(STAMP)

lab: $(STAMP)
	$(BIN)/jupyter lab $(FIRST_NOTEBOOK)

test: $(STAMP)
	$(TEST_ENV) $(BIN)/python -m pytest

unit: $(STAMP)
	$(TEST_ENV) $(BIN)/python -m pytest tests

notebooks-test: $(STAMP)
	$(TEST_ENV) $(BIN)/python -m pytest notebooks

# Re-run every notebook top to bottom on the CPU and store its outputs.
execute-notebooks: $(STAMP)
	for nb in notebooks/[0-9]*.ipynb; do \
		$(TEST_ENV) VITOOLS_DEVICE=cpu $(BIN)/jupyter nbconvert --to notebook --execute --inplace \
			--ExecutePreprocessor.timeout=600 --ExecutePreprocessor.kernel_name=python3 "$$nb" || exit 1; \
	done

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache
