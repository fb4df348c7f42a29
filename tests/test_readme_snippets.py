"""Every ```python block of README.md and of both integration READMEs runs as written, offline.

A README's blocks run in order in one namespace (a block may use what an earlier block
of the same file defined, as a reader going down the page would). The one change made to
the text: the large models' names, ``"qwen2.5-coder-1.5b"`` and ``"qwen2.5-coder-0.5b"``,
become ``"smollm2-135m"`` (QUALITY_MODEL and QUALITY_PROXY would take tens of minutes on a
CPU here); the rest runs exactly as printed. A block that must not run (shell commands,
output) is fenced as something other than python; any other fence language fails the
test, so a block cannot be skipped by a typo such as ```py.
"""

import re
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
READMES = [
    "README.md",
    "integrations/llama-index-postprocessor-attribot/README.md",
    "integrations/langchain-attribot/README.md",
]
# Fence languages that are never run: shell sessions and printed output.
NOT_RUN = {"bash", ""}
SUBSTITUTIONS = {'"qwen2.5-coder-1.5b"': '"smollm2-135m"', '"qwen2.5-coder-0.5b"': '"smollm2-135m"'}
FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>[^\s`]*)[ \t]*$")


def fenced_blocks(text: str) -> list[tuple[int, str, str]]:
    """(line number, language, dedented code) of each fenced block, in order."""
    blocks, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        start, indent = i + 1, opening.group("indent")
        i += 1
        while i < len(lines) and lines[i].strip() != "```":
            i += 1
        assert i < len(lines), f"unclosed fence at line {start}"
        body = [line[len(indent):] if line.startswith(indent) else line for line in lines[start:i]]
        blocks.append((start, opening.group("lang"), textwrap.dedent("\n".join(body))))
        i += 1
    return blocks


def small_models(code: str) -> str:
    for name, small in SUBSTITUTIONS.items():
        code = code.replace(name, small)
    return code


def test_fences_are_found_with_their_language():
    text = "a\n```python\nx = 1\n```\n  ```python\n  y = x\n  ```\n```bash\nls\n```\n```\nout\n```\n"
    assert fenced_blocks(text) == [(2, "python", "x = 1"), (5, "python", "y = x"), (8, "bash", "ls"), (11, "", "out")]
    assert small_models('Attributor("qwen2.5-coder-1.5b")') == 'Attributor("smollm2-135m")'


def run_readme(name: str) -> dict:
    """Runs the README's python blocks in one namespace; returns it."""
    blocks = fenced_blocks((ROOT / name).read_text(encoding="utf-8"))
    unknown = [(line, lang) for line, lang, _ in blocks if lang not in NOT_RUN | {"python"}]
    assert not unknown, f"{name}: fences neither run nor known as shell/output: {unknown}"
    python = [(line, code) for line, lang, code in blocks if lang == "python"]
    assert python, f"{name} has no python block"
    namespace: dict = {"__name__": f"readme:{name}"}
    for line, code in python:
        try:
            exec(compile(small_models(code), f"{name}:{line}", "exec"), namespace)
        except Exception as exc:
            raise AssertionError(f"{name}, block at line {line} failed: {exc!r}\n{code}") from exc
    return namespace


def _needs_the_llm_wrappers(*which):
    """The snippets build the frameworks' LLMs on the attributor's weights: the optional
    extras langchain-attribot[chat] and llama-index-postprocessor-attribot[llm]
    (`make install` has both; `make test-latest` leaves langchain-huggingface out)."""
    extras = {"langchain": ("langchain_huggingface", "langchain-attribot[chat]"),
              "llamaindex": ("llama_index.llms.huggingface", "llama-index-postprocessor-attribot[llm]")}
    for module, extra in (extras[w] for w in which):
        pytest.importorskip(module, reason=f"the README snippet needs {module}: pip install '{extra}'")


def test_the_readme_opens_with_a_cited_answer_and_its_output():
    """The first code a reader meets is a ``cite`` call on the default model, with the
    output it printed right below it."""
    blocks = fenced_blocks((ROOT / "README.md").read_text(encoding="utf-8"))
    first = next(k for k, (_, lang, _) in enumerate(blocks) if lang == "python")
    code = blocks[first][2]
    assert "Attributor()" in code and ".cite(" in code and "print(cited)" in code
    line, lang, output = blocks[first + 1]
    assert lang == "" and "[1]" in output and "\n[1] " in output, "the printed output follows the first block"


@pytest.fixture
def default_is_the_small_model(monkeypatch):
    """``Attributor()`` in the README means the default model: the small one here."""
    from attribot_rag.models import MODEL_ENV, default_model

    monkeypatch.setenv(MODEL_ENV, "smollm2-135m")
    default_model.cache_clear()
    yield
    default_model.cache_clear()


@pytest.mark.slow  # the snippets load models
def test_main_readme_runs(default_is_the_small_model):
    _needs_the_llm_wrappers("langchain", "llamaindex")
    ns = run_readme("README.md")
    cited = ns["cited"]  # the first block: a cited answer (on the small model here)
    assert cited.evidence == "supports" and cited.answer.strip() and str(cited).startswith(cited.text.strip()[:20])
    from attribot_rag import available_methods

    assert "my-method" in available_methods()  # the custom-method block registered its class
    # the integration snippets: one copy of the weights for the framework LLM and the attributor
    assert ns["llm"]._model is ns["pruner"].attributor.lm.model
    assert ns["chat_model"].llm.pipeline.model is ns["compressor"].attributor.lm.model
    assert len(ns["response"].source_nodes) == 2  # retrieved 4, the postprocessor kept 2
    assert len(ns["out"]["context"]) == 2
    assert isinstance(ns["out"]["cited_answer"], str) and ns["out"]["cited_answer"].strip()


@pytest.mark.slow  # the snippets load models
def test_llamaindex_readme_runs(default_is_the_small_model):
    _needs_the_llm_wrappers("llamaindex")
    ns = run_readme("integrations/llama-index-postprocessor-attribot/README.md")
    assert ns["llm"]._model is ns["pruner"].attributor.lm.model
    assert len(ns["cited"].source_nodes) == 2  # retrieved 5, kept 2
    assert ns["response"].metadata["cited_text"].strip()  # the streamed answer, cited


@pytest.mark.slow  # the snippets load models
def test_langchain_readme_runs(default_is_the_small_model):
    _needs_the_llm_wrappers("langchain")
    ns = run_readme("integrations/langchain-attribot/README.md")
    assert ns["chat_model"].llm.pipeline.model is ns["compressor"].attributor.lm.model
    assert len(ns["out"]["context"]) == 2  # retrieved 5, kept 2
    assert "citations" in ns["final"]  # the streamed chain's last chunk
    assert ns["streamed"].strip()  # the generating step's streamed answer


@pytest.mark.parametrize("name", READMES)
def test_no_large_model_left_after_substitution(name):
    code = "\n".join(c for _, lang, c in fenced_blocks((ROOT / name).read_text(encoding="utf-8")) if lang == "python")
    assert "qwen" not in small_models(code).lower(), f"{name} names a large model the test would load"
