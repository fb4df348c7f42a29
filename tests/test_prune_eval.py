"""prune-eval: HotpotQA answer metrics, bootstrap intervals, and the pruning run on a small fixture."""

import json
from types import SimpleNamespace

import numpy as np
import pytest

from attribot_rag.attributor import Attributor
from attribot_rag.cli import main
from attribot_rag.evaluation import prune_eval, qa_metrics
from attribot_rag.evaluation.hotpotqa import load_hotpotqa
from attribot_rag.errors import InputError
from attribot_rag.evaluation.prune_eval import clean_answer, run_prune_eval, summarize

EXAMPLES = [
    {
        "_id": "pe-ada",
        "type": "bridge",
        "question": "In which city was the author of the first computer program born?",
        "answer": "London",
        "supporting_facts": [["Ada Lovelace", 0], ["First program", 0]],
        "context": [
            ["Lyon", ["Lyon is a city in France. ", "It lies where the Rhone meets the Saone."]],
            ["First program", ["The first computer program was written by Ada Lovelace in 1843."]],
            ["Tea", ["Green tea comes from China. ", "It is not oxidised."]],
            ["Ada Lovelace", ["Ada Lovelace was born in London in 1815."]],
        ],
    },
    {
        "_id": "pe-owl",
        "type": "comparison",
        "question": "When do barn owls hunt?",
        "answer": "at night",
        "supporting_facts": [["Barn owl", 0]],
        "context": [
            ["Barn owl", ["Barn owls hunt at night, using their hearing to find mice."]],
            ["Granite", ["Granite is an igneous rock."]],
            ["Oslo", ["Oslo is the capital of Norway."]],
        ],
    },
]
KS = [1, 2, 5]
RUN = dict(
    n=2,
    methods=["at2", "loo", "hierarchical", "random", "question-similarity", "proxy", "no-such-method"],
    ks=KS,
    progress=False,
    n_boot=200,
)


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("prune") / "mini.json"
    path.write_text(json.dumps(EXAMPLES), encoding="utf-8")
    return str(path)


# ------------------------------------------------------------------ answer metrics
def test_normalisation_follows_hotpotqa():
    assert qa_metrics.normalize_answer("The  Eiffel Tower!") == "eiffel tower"
    assert qa_metrics.normalize_answer("An apple, a pear.") == "apple pear"
    assert qa_metrics.exact_match("the Beatles.", "Beatles") == 1.0
    assert qa_metrics.exact_match("Beatles band", "Beatles") == 0.0


def test_f1_partial_credit_and_yes_no_rule():
    assert qa_metrics.f1_score("Paris France", "Paris") == pytest.approx(2 * 0.5 * 1 / 1.5)
    assert qa_metrics.f1_score("Paris", "Paris") == 1.0
    assert qa_metrics.f1_score("London", "Paris") == 0.0
    # a yes/no answer gets no partial credit
    assert qa_metrics.f1_score("yes it is", "yes") == 0.0
    assert qa_metrics.f1_score("no", "yes") == 0.0
    assert qa_metrics.f1_score("Yes.", "yes") == 1.0


def test_bootstrap_interval_is_reproducible_and_brackets_the_mean():
    values = np.linspace(0, 1, 50)
    idx = qa_metrics.bootstrap_indices(50, 1000, seed=3)
    a = qa_metrics.mean_ci(values, idx)
    b = qa_metrics.mean_ci(values, qa_metrics.bootstrap_indices(50, 1000, seed=3))
    assert a == b
    lo, hi = a["ci95"]
    assert lo < a["mean"] < hi
    assert hi - lo < 0.3
    const = qa_metrics.mean_ci([0.4] * 50, idx)
    assert const["ci95"] == pytest.approx([0.4, 0.4])


def _record(base, f1s, gold_recall=0.5):
    return {
        "baseline": {"f1": base, "em": float(base == 1.0), "seconds": 1.0},
        "oracle": {"f1": 1.0, "em": 1.0, "seconds": 1.0},
        "methods": {
            m: {"seconds": 0.1, "k": {"1": {"f1": v, "em": float(v == 1.0), "seconds": 0.5, "gold_recall": gold_recall}}}
            for m, v in f1s.items()
        },
    }


def test_paired_differences_resample_examples_together():
    rng = np.random.default_rng(0)
    base = rng.uniform(0, 0.8, size=40)
    recs = [_record(b, {"at2": b + 0.1, "random": b - 0.05, "question-similarity": b}) for b in base]
    rep = summarize(recs, ["at2", "random", "question-similarity", "proxy"], [1], {"proxy": "needs a proxy"}, n_boot=500)
    e = rep["methods"]["at2"]["1"]
    # the difference is the same on every example, so its paired interval has no width
    assert e["f1_minus_baseline"]["mean"] == pytest.approx(0.1)
    assert e["f1_minus_baseline"]["ci95"] == pytest.approx([0.1, 0.1])
    assert e["f1_minus_random"]["ci95"] == pytest.approx([0.15, 0.15])
    assert e["f1_minus_question-similarity"]["mean"] == pytest.approx(0.1)
    # while the unpaired F1 interval does have width
    lo, hi = e["f1"]["ci95"]
    assert hi - lo > 0.05
    assert rep["methods"]["random"]["1"]["f1_minus_random"] is None
    assert rep["methods"]["proxy"] == {"unavailable": "needs a proxy"}
    assert rep["oracle"]["f1"]["mean"] == 1.0


def test_clean_answer_keeps_first_line():
    assert clean_answer("\n  Paris\nBecause the documents say so.") == "Paris"
    assert clean_answer("   ") == ""


def test_hierarchical_paragraph_scores_rank_kept_paragraphs_first():
    from attribot_rag.methods.hierarchical import Hierarchical

    task = SimpleNamespace(
        passages=[SimpleNamespace(id=p) for p in ("a", "b", "c")],
        sources=[SimpleNamespace(passage_index=i) for i in (0, 0, 1, 2)],
    )
    s = Hierarchical.passage_scores(task, np.array([0.2, 0.3, np.nan, -0.1]), {"passage_scores": [0.4, 2.0, 0.1]})
    assert s[0] == pytest.approx(0.5)
    assert s[2] == pytest.approx(-0.1)
    # b was dropped by the rule: ranked after both kept paragraphs despite its passage score
    assert s[1] < min(s[0], s[2])
    assert Hierarchical.ranking_level == "sentence"


# ------------------------------------------------------------------ the run, real model
@pytest.fixture(scope="module")
def report(lm, data_file, tmp_path_factory):
    cache = tmp_path_factory.mktemp("pe-cache")
    rep = run_prune_eval(
        data_file, model=lm, cache_dir=cache, **RUN
    )
    return rep, cache


def test_report_has_the_documented_shape(report):
    rep, _ = report
    assert rep["n"] == 2 and rep["model"] == "smollm2-135m"
    for part in ("baseline", "oracle"):
        for metric in ("f1", "em"):
            assert set(rep[part][metric]) == {"mean", "ci95"}
    for m in ("at2", "loo", "hierarchical", "random", "question-similarity"):
        assert set(rep["methods"][m]) == {str(k) for k in KS}
        for k in KS:
            e = rep["methods"][m][str(k)]
            for key in ("f1", "em", "f1_minus_baseline", "gold_recall", "seconds_per_example"):
                assert key in e, key
            assert 0.0 <= e["f1"]["mean"] <= 1.0
    assert rep["methods"]["at2"]["1"]["f1_minus_random"] is not None
    assert rep["methods"]["at2"]["1"]["f1_minus_question-similarity"] is not None
    assert "proxy-model" in rep["methods"]["proxy"]["unavailable"]
    assert "no-such-method" in rep["methods"]["no-such-method"]["unavailable"]
    assert len(rep["examples"]) == 2
    for rec in rep["examples"]:
        # both attention-based rankings reuse what the baseline's generation captured
        assert rec["methods"]["at2"]["info"]["from_generation"]


def test_breakdown_by_question_type_summarizes_each_types_examples(report):
    rep, _ = report
    assert set(rep["by_type"]) == {"bridge", "comparison"}
    for rec in rep["examples"]:
        sub = rep["by_type"][rec["type"]]
        assert sub["n"] == 1
        assert sub["baseline"]["f1"]["mean"] == rec["baseline"]["f1"]
        for m in ("at2", "question-similarity"):
            for k in KS:
                assert sub["methods"][m][str(k)]["f1"]["mean"] == rec["methods"][m]["k"][str(k)]["f1"]
    table = prune_eval.markdown_table(rep)
    assert "By question type: **bridge** (n = 1)" in table and "By question type: **comparison** (n = 1)" in table


def test_per_example_results_are_consistent(report, lm):
    rep, _ = report
    examples = {e.id: e for e in load_hotpotqa_fixture()}
    att = Attributor(lm, instruction=rep["options"]["instruction"], max_new_tokens=rep["options"]["max_new_tokens"])
    for rec in rep["examples"]:
        ex = examples[rec["id"]]
        gold = rec["gold"]
        assert [ex.passages[i].title for i in gold] == [p.title for p in ex.passages if p.title in ex.gold_titles]
        # the baseline is the model's own answer with every paragraph
        full = att.generate(ex.question, ex.passages)
        assert rec["baseline"]["answer"] == clean_answer(full.text)
        assert rec["baseline"]["f1"] == qa_metrics.f1_score(rec["baseline"]["answer"], ex.answer)
        for m, mres in rec["methods"].items():
            scores = np.array([np.nan if v is None else v for v in mres["scores"]])
            for k, kres in mres["k"].items():
                keep = kres["keep"]
                assert keep == sorted(keep) and len(keep) == min(int(k), len(ex.passages))
                # the kept paragraphs are the method's top k
                top = set(np.argsort(-np.nan_to_num(scores, nan=-np.inf), kind="stable")[: len(keep)].tolist())
                assert set(keep) == top, (m, k)
                assert kres["gold_recall"] == pytest.approx(len(set(keep) & set(gold)) / len(gold))
                if len(keep) == len(ex.passages):  # keeping everything reproduces the baseline
                    assert kres["answer"] == rec["baseline"]["answer"]


def load_hotpotqa_fixture():
    from attribot_rag.evaluation.hotpotqa import parse_example

    return [parse_example(e) for e in EXAMPLES]


def test_rerun_resumes_from_the_cache_without_the_model(report, lm, data_file, monkeypatch):
    rep, cache = report

    def boom(*a, **k):
        raise AssertionError("the model ran again")

    monkeypatch.setattr(Attributor, "generate", boom)
    monkeypatch.setattr(Attributor, "run", boom)
    again = run_prune_eval(
        data_file, model=lm, cache_dir=cache, **RUN
    )
    assert again["methods"] == rep["methods"]
    assert again["baseline"] == rep["baseline"]


def test_cached_only_reports_the_examples_parallel_runs_finished(report, lm, data_file, monkeypatch, tmp_path):
    rep, cache = report
    lines = (cache / "results.jsonl").read_text().splitlines()
    by_example: dict = {}
    for line in lines:
        by_example.setdefault(json.loads(line)["desc"]["example"], []).append(line)
    assert list(by_example) == ["pe-ada", "pe-owl"]
    a, b = tmp_path / "a", tmp_path / "b"
    for folder, rows in ((a, by_example["pe-ada"]), (b, by_example["pe-owl"][:-1])):  # owl: cut short
        folder.mkdir()
        (folder / "results.jsonl").write_text("\n".join(rows) + "\n")

    def boom(*args, **kwargs):
        raise AssertionError("a cached-only run computed something")

    monkeypatch.setattr(Attributor, "generate", boom)
    monkeypatch.setattr(Attributor, "run", boom)
    part = run_prune_eval(data_file, model=lm, cache_dir=a, read_caches=[b], cached_only=True, **RUN)
    assert part["n"] == 1 and part["not_cached"] == ["pe-owl"]
    assert part["examples"] == rep["examples"][:1]
    (b / "results.jsonl").write_text("\n".join(by_example["pe-owl"]) + "\n")
    full = run_prune_eval(data_file, model=lm, cache_dir=a, read_caches=[b], cached_only=True, **RUN)
    assert full["not_cached"] == [] and full["methods"] == rep["methods"]


def test_random_ranking_is_seeded(report, lm, data_file, tmp_path):
    rep, cache = report
    other = run_prune_eval(
        data_file, n=2, methods=["random"], ks=[1], model=lm, cache_dir=tmp_path, progress=False, seed=1, n_boot=50
    )
    first = [e["methods"]["random"]["scores"] for e in rep["examples"]]
    second = [e["methods"]["random"]["scores"] for e in other["examples"]]
    assert first != second  # a different seed draws different permutations
    again = run_prune_eval(
        data_file, n=2, methods=["random"], ks=[1], model=lm, cache_dir=cache, progress=False, n_boot=50
    )
    assert [e["methods"]["random"]["scores"] for e in again["examples"]] == first


def test_baseline_rankings_are_methods_that_reproduce_the_old_rankings(report):
    # random: the per-example seeded permutation prune-eval drew before it was a method;
    # question-similarity: cosine(question, title + text) of the MiniLM embeddings
    from attribot_rag.embeddings import load_embedder

    rep, _ = report
    embedder = load_embedder()
    for rec, ex in zip(rep["examples"], load_hotpotqa_fixture()):
        rng = np.random.default_rng(prune_eval._ranker_seed(0, ex.id))
        assert rec["methods"]["random"]["scores"] == (-rng.permutation(len(ex.passages))).tolist()
        emb = np.asarray(embedder.encode([ex.question] + [f"{p.title}\n{p.text}" for p in ex.passages]), dtype=np.float64)
        emb /= np.linalg.norm(emb, axis=1, keepdims=True)
        np.testing.assert_allclose(rec["methods"]["question-similarity"]["scores"], emb[1:] @ emb[0], atol=1e-6)


def test_old_caches_read_back_and_answer_similarity_never_reads_them(report, lm, data_file, tmp_path, monkeypatch):
    rep, cache = report
    rankings = [json.loads(line)["desc"] for line in (cache / "results.jsonl").read_text().splitlines()]
    rankings = [d for d in rankings if d["kind"] == "ranking"]
    # question-similarity's rankings are keyed as prune-eval keyed its question ranker
    # before it was a method: under "similarity", with nothing added
    question = [d for d in rankings if d["method"] == "similarity"]
    assert len(question) == 2 and not any(d["method"] == "question-similarity" for d in rankings)
    assert set(question[0]) == {*rep_base_keys(question[0]), "example", "kind", "method", "seed"}
    # the registered answer-similarity method keys its rankings apart, so a cached-only run
    # of it finds none of them
    monkeypatch.setattr(Attributor, "run", lambda *a, **k: (_ for _ in ()).throw(AssertionError("computed")))
    with pytest.raises(InputError, match="none of the 2"):
        run_prune_eval(data_file, n=2, methods=["similarity"], ks=[1], model=lm, cache_dir=cache,
                       cached_only=True, progress=False, n_boot=50)


def rep_base_keys(desc):
    return {k for k in desc if k in {"v", "data", "model", "instruction", "system_prompt", "max_new_tokens", "dtypes"}}


def test_reports_before_version_2_name_rankings_by_their_current_methods():
    old = {"examples": [{"id": "a", "methods": {"similarity": 1, "random": 2, "at2": 3}}]}
    assert prune_eval.current_examples(old)[0]["methods"] == {"question-similarity": 1, "random": 2, "at2": 3}
    new = {"version": prune_eval.REPORT_VERSION, "examples": [{"id": "a", "methods": {"similarity": 1}}]}
    assert prune_eval.current_examples(new)[0]["methods"] == {"similarity": 1}


@pytest.mark.slow  # the CLI loads smollm2-135m
def test_cli_writes_json_and_markdown(data_file, tmp_path, capsys):
    out, md = tmp_path / "r.json", tmp_path / "r.md"
    code = main(
        ["prune-eval", "--data", data_file, "--n", "1", "--methods", "random,question-similarity", "--k", "1,2",
         "--model", "smollm2-135m",
         "--cache", str(tmp_path / "c"), "--json", str(out), "--markdown", str(md), "--no-progress"]
    )
    assert code == 0
    rep = json.loads(out.read_text())
    assert rep["examples"][0]["id"] == "pe-ada"
    table = md.read_text()
    assert "attribot-rag prune-eval" in table and "| question-similarity | 2 |" in table
    printed = json.loads(capsys.readouterr().out)
    assert "examples" not in printed and printed["n"] == 1


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--k", "one"], "--k"),
        (["--k", "0"], "positive"),
        (["--data", "/no/such/file.json"], "does not exist"),
    ],
)
def test_cli_bad_input(data_file, tmp_path, capsys, argv, needle):
    args = ["prune-eval", "--data", data_file, "--n", "1", "--methods", "random", "--cache", str(tmp_path)]
    code = main(args + argv)
    assert code == 2
    assert needle in capsys.readouterr().err


def test_fixture_parses(data_file):
    # the fixture is a valid HotpotQA file for the loader used by the command
    assert [e.id for e in load_hotpotqa(data_file)] == ["pe-ada", "pe-owl"]
    assert [e.id for e in load_hotpotqa_fixture()] == ["pe-ada", "pe-owl"]
    assert load_hotpotqa_fixture()[0].gold_passage_ids  # gold titles match paragraphs


def test_a_method_spec_with_options_ranks_as_that_method(report, lm, data_file):
    # proxy-rescore with AT2 as its first stage needs no proxy model: the top 2 of AT2's
    # ranking get the target's exact LOO scores, the rest none (ranked after them)
    rep, cache = report
    spec = "proxy-rescore:first_stage=at2:rescore=2"
    run = run_prune_eval(data_file, n=2, methods=[spec, "at2"], ks=[1], model=lm, cache_dir=cache,
                         progress=False, n_boot=50)
    assert spec in run["methods"] and "unavailable" not in run["methods"][spec]
    loo = {e["id"]: e["methods"]["loo"]["scores"] for e in rep["examples"]}
    for rec in run["examples"]:
        at2 = np.array(rec["methods"]["at2"]["scores"])
        rescored = rec["methods"][spec]["scores"]
        top2 = sorted(np.argsort(-at2, kind="stable")[:2].tolist())
        assert [i for i, v in enumerate(rescored) if v is not None] == top2
        np.testing.assert_allclose([rescored[i] for i in top2], [loo[rec["id"]][i] for i in top2], atol=1e-4)  # fp32 batching noise
        assert rec["methods"][spec]["k"]["1"]["keep"][0] in top2
