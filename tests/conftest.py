"""Shared fixtures. Nothing in the tests touches the network: the default model ships in
a Python package and the Hugging Face hub is switched off."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# The suite's exactness tests (cached LOO == naive LOO, recomputed AT2 rows == eager
# attention) compare float32 runs: every model the tests load by name, without a dtype,
# is float32 whatever this CPU could do in bf16 (tests of dtype="auto" pass it explicitly).
os.environ["ATTRIBOT_RAG_DTYPE"] = "float32"
# The tests name smollm2-135m wherever they load a model; a call that names none (a
# default under test, a forgotten --model) gets it too instead of the 1.5B the library
# defaults to where installed, which would take minutes. Tests of the default itself
# set and clear this themselves.
os.environ["ATTRIBOT_RAG_MODEL"] = "smollm2-135m"

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from attribot_rag import Attributor, Passage  # noqa: E402
from attribot_rag import embeddings as _embeddings  # noqa: E402
from attribot_rag import models as _models  # noqa: E402
from attribot_rag.models import get_model  # noqa: E402

# ----------------------------------------------------------------- the fast tier
# `make test-fast` runs `pytest -m "not slow"`: every test that loads a model is marked
# `slow` here. A test is slow when it uses (directly or through another fixture) one of
# these fixtures, each of which loads a model (the real default model, the embedding
# model, or a subprocess that does), or when it carries @pytest.mark.slow (tests and
# modules that load one themselves). Module-level fixtures of the same name count too.
MODEL_FIXTURES = frozenset({
    "lm",  # conftest: smollm2-135m
    "attributor",  # conftest and many test modules: an Attributor over a real model
    "service_attributor",  # test_service
    "bf16",  # test_dtype: smollm2-135m in bfloat16
    "first_run", "independent",  # test_bench: run_bench / Attributor on smollm2-135m
    "handbook_index",  # test_service: PassageIndex.build loads the MiniLM embedder
    "outputs",  # test_examples: runs the examples in subprocesses
    "server_url",  # test_browser: an `attribot-rag serve` subprocess
})


def pytest_collection_modifyitems(config, items):
    slow = pytest.mark.slow
    for item in items:
        if MODEL_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(slow)


# In a run that deselects `slow`, loading a model fails the test that did it (with the
# reason), so a model-loading test that is not marked cannot slip into the fast tier.
# Tiny models a test writes under its own tmp_path are allowed (weights-integrity tests).
_FAST_TIER_LOADS: list[str] = []
_TMP_BASE: list[Path] = []  # pytest's base temporary folder, once the session starts


def _refuse(call: str):
    _FAST_TIER_LOADS.append(call)
    raise RuntimeError(
        f"the fast tier loads no model, but this test called {call}: mark it slow "
        "(a fixture in MODEL_FIXTURES of tests/conftest.py, or @pytest.mark.slow)"
    )


def _guard_path(original, name):
    def guarded(target, *args, **kwargs):
        path = Path(str(target)).expanduser()
        if path.exists() and not any(path.resolve().is_relative_to(base) for base in _TMP_BASE):
            _refuse(f"{name}({str(target)!r})")
        return original(target, *args, **kwargs)

    return guarded


def _no_embedder():
    _refuse("embeddings.minilm_path() (the MiniLM embedder)")


class _FastTier:
    """Registered as a plugin (not a conftest hook) so that it also sees the integrations'
    tests, which lie outside this folder."""

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        outcome = yield
        if _FAST_TIER_LOADS:  # also when the test caught the error (a CLI exit status, say)
            report = outcome.get_result()
            report.outcome = "failed"
            report.longrepr = f"{item.nodeid} loads a model in the fast tier: {', '.join(_FAST_TIER_LOADS)}"
            _FAST_TIER_LOADS.clear()


def pytest_configure(config):
    if "not slow" not in (config.option.markexpr or ""):
        return
    config.pluginmanager.register(_FastTier(), "attribot-rag-fast-tier")
    _models._read_gguf = _guard_path(_models._read_gguf, "models._read_gguf")
    _models._from_pretrained = _guard_path(_models._from_pretrained, "models._from_pretrained")
    _embeddings.minilm_path = _no_embedder


def pytest_sessionstart(session):
    factory = getattr(session.config, "_tmp_path_factory", None)
    if factory is not None:
        _TMP_BASE.append(factory.getbasetemp().resolve())


@pytest.fixture(scope="session")
def lm():
    """The real default model (smollm2-135m) in float32, loaded once per test session."""
    return get_model("smollm2-135m", dtype="float32")


@pytest.fixture(scope="session")
def attributor(lm):
    # exact LOO, as the behaviour these tests pin was written for (the default, "auto",
    # is tested by name where it is the subject)
    return Attributor(lm, max_new_tokens=24, method="loo")


@pytest.fixture(scope="session")
def tokenizer():
    """smollm2-135m's tokenizer without its weights (for layout tests of the fast tier):
    the loaded model's when this session has one, else from the converted checkpoint, else
    read from the GGUF file (a few seconds; no model is loaded)."""
    from transformers import AutoTokenizer

    for (name, *_), loaded in _models._LOADED.items():
        if name == "smollm2-135m":
            return loaded.tokenizer
    alias = _models.ALIASES["smollm2-135m"]
    for folder in sorted((_models.cache_root() / "models").glob(f"{alias.name}-{alias.sha256[:12]}-*")):
        if (folder / "tokenizer.json").exists():
            return AutoTokenizer.from_pretrained(str(folder))
    gguf = _models.find_gguf(alias)
    return AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)


@pytest.fixture
def handbook_passages():
    """Three short passages; the answer to TRAVEL_QUESTION is in the second one."""
    return [
        Passage(
            id="leave",
            title="Vacation",
            text="Full-time employees receive 22 paid vacation days per year. Unused days expire on March 31.",
        ),
        Passage(
            id="travel",
            title="International travel",
            text="For international trips the hotel limit is $260 per night. Meals are covered up to $95 a day.",
        ),
        Passage(
            id="parking",
            title="Parking",
            text="The Pittsburgh office has 40 parking spaces. Bicycles can be stored in the basement.",
        ),
    ]


TRAVEL_QUESTION = "What is the hotel limit per night for international trips?"
