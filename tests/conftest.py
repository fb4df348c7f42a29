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

import pytest  # noqa: E402

from attribot_rag import Attributor, Passage  # noqa: E402
from attribot_rag.models import get_model  # noqa: E402


@pytest.fixture(scope="session")
def lm():
    """The real default model (smollm2-135m) in float32, loaded once per test session."""
    return get_model("smollm2-135m", dtype="float32")


@pytest.fixture(scope="session")
def attributor(lm):
    return Attributor(lm, max_new_tokens=24)


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
