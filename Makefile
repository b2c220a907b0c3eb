# The two commands a newcomer needs: `make lab` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PIP    := $(BIN)/python -m pip --disable-pip-version-check -q
FIRST_NOTEBOOK := notebooks/00_gradient_of_an_expectation.ipynb
# One torch thread unless you ask for more (VITOOLS_THREADS=4 make lab): the workbook's tensors
# are small, so one thread is as fast as two and stays fast when another process shares the
# cores; torch's default threads made a 10 s notebook take 300 s beside one busy process.
THREADS  := VITOOLS_THREADS=$${VITOOLS_THREADS:-1} OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1}
TEST_ENV := $(THREADS) VITOOLS_PROGRESS=$${VITOOLS_PROGRESS:-0}

.PHONY: lab test unit notebooks-test browser-test student site bench reproduce execute-notebooks clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# torch==2.13.0 first, on its own, so a local CPU wheel is used where one exists.
	$(PIP) install "torch==2.13.0"
	$(PIP) install -e ".[lab,test,site]"
	touch $(STAMP)

# The printed URL opens the first notebook (also when no browser opens by itself).
lab: $(STAMP)
	$(THREADS) $(BIN)/jupyter lab --LabApp.default_url=/lab/tree/$(FIRST_NOTEBOOK)

test: $(STAMP)
	$(TEST_ENV) $(BIN)/python -m pytest

unit: $(STAMP)
	$(TEST_ENV) $(BIN)/python -m pytest tests

notebooks-test: $(STAMP)
	$(TEST_ENV) $(BIN)/python -m pytest notebooks

# JupyterLab in headless Chromium (/usr/bin/chromium: apt-get install chromium).
browser-test: $(STAMP)
	$(TEST_ENV) $(BIN)/python -m pytest tests -m browser

# build/student/NN_*.ipynb: every solution-tagged cell replaced by a stub.
student: $(STAMP)
	$(BIN)/python tools/student.py notebooks build/student

# build/site/index.html, from the notebooks' stored outputs (docs/README.md).
site: $(STAMP)
	$(TEST_ENV) $(BIN)/python tools/site.py --out build/site

# Re-run every notebook top to bottom on the CPU and store its outputs.
execute-notebooks: $(STAMP)
	for nb in notebooks/[0-9]*.ipynb; do \
		$(TEST_ENV) VITOOLS_DEVICE=cpu $(BIN)/jupyter nbconvert --to notebook --execute --inplace \
			--ExecutePreprocessor.timeout=600 --ExecutePreprocessor.kernel_name=python3 "$$nb" || exit 1; \
	done

bench: $(STAMP)
	$(BIN)/python -m bench

# Paper reproductions: `make reproduce` runs every bench/reproduce/<name>.py in turn,
# `make reproduce-<name>` one of them; each writes bench/results/reproductions/<name>.json.
REPRODUCTIONS := $(basename $(notdir $(filter-out %/__init__.py %/common.py,$(wildcard bench/reproduce/*.py))))

reproduce: $(addprefix reproduce-,$(REPRODUCTIONS))

reproduce-%: $(STAMP)
	$(TEST_ENV) $(BIN)/python -m bench.reproduce.$*

clean:
	rm -rf $(VENV) .pytest_cache build
