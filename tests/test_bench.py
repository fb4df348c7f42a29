"""bench: the new methods and quality keys, the Markdown table, and resuming from the cache."""

import copy
import json
import os
import shutil

import numpy as np
import pytest
import torch

from attribot_rag import Attributor
from attribot_rag.cli import main
from attribot_rag.at2.weights import load_default_weights
from attribot_rag.errors import InputError
from attribot_rag.evaluation import bench
from attribot_rag.evaluation.bench import MethodSpec, ResultsCache, run_bench
from attribot_rag.evaluation.hotpotqa import load_slice
from attribot_rag.evaluation.metrics import average_precision
from attribot_rag.models import get_model, load_model
from attribot_rag.scoring import Scorer
from test_proxy import _tiny_model

EXAMPLES = [
    {
        "_id": "ex-ada",
        "question": "Where was Ada Lovelace born?",
        "answer": "London",
        "supporting_facts": [["Ada", 1]],
        "context": [
            ["Lyon", ["Lyon is a city in France. ", "It lies on the Rhone."]],
            ["Ada", ["Ada Lovelace wrote the first program. ", "She was born in London."]],
            ["Tea", ["Green tea comes from China."]],
        ],
    },
    {
        "_id": "ex-tea",
        "question": "Where does green tea come from?",
        "answer": "China",
        "supporting_facts": [["Tea", 0], ["Lyon", 0]],
        "context": [
            ["Tea", ["Green tea comes from China. ", "Black tea is oxidised."]],
            ["Lyon", ["Lyon is a city in France."]],
            ["Owls", ["Owls hunt at night."]],
        ],
    },
]
METHODS = ["loo-naive", "loo", "hierarchical:keep=1", "proxy", "proxy-rescore"]
ORIGINAL_KEYS = {
    "seconds_per_example",
    "tokens_per_example",
    "speedup_vs_naive",
    "max_abs_diff_vs_naive",
    "spearman_vs_naive",
}
NEW_KEYS = {
    "map_vs_exact",
    "spearman_vs_exact",
    "topk_drop",
    "lds",
    "gold_recall_at_2",
    "gold_recall_at_3",
    "speedup_vs_exact",
}


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("hotpot") / "mini.json"
    path.write_text(json.dumps(EXAMPLES))
    return path


@pytest.fixture(scope="module")
def first_run(data_file, tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    md = cache / "table.md"
    report = run_bench(
        str(data_file),
        n=2,
        level="sentence",
        methods=METHODS,
        model=get_model("smollm2-135m"),
        proxy_model=_tiny_model(),
        rescore=2,
        max_new_tokens=6,
        cache_dir=cache,
        markdown=md,
        progress=False,
    )
    return report, cache, md


@pytest.fixture(scope="module")
def independent(data_file):
    """Per example, outside the bench: the answer the same settings generate, its exact
    LOO by the naive reference and hierarchical:keep=1's scores."""
    att = Attributor(get_model("smollm2-135m"), level="sentence", max_new_tokens=6)
    out = []
    for ex in load_slice(data_file, 2):
        answer = att.generate(ex.question, ex.passages)
        task = att.task(ex.question, ex.passages, answer)
        exact = att.run(task, method="loo-naive").scores
        hier = att.run(att.task(ex.question, ex.passages, answer), method="hierarchical", keep=1).scores
        out.append({"gold": ex.gold_passage_ids, "passages": [s.passage_id for s in task.sources], "exact": exact, "hier": hier})
    return out


def _top_passages(scores, passage_ids, k):
    """The passages of the best sources, best first, each once (nan: never chosen)."""
    order = sorted((i for i in range(len(scores)) if not np.isnan(scores[i])), key=lambda i: -scores[i])
    return list(dict.fromkeys(passage_ids[i] for i in order))[:k]


def test_report_keys(first_run):
    report, _, _ = first_run
    for key in ("n", "model", "level", "generation_seconds_per_example", "peak_rss_mb"):
        assert key in report
    assert report["n"] == 2 and report["level"] == "sentence"
    assert list(report["methods"]) == METHODS
    for name, m in report["methods"].items():
        assert ORIGINAL_KEYS | NEW_KEYS <= set(m), name
        assert set(m["topk_drop"]) == {"1", "3", "5"}
        for k in ("gold_recall_at_2", "gold_recall_at_3"):
            assert 0.0 <= m[k] <= 1.0
    loo = report["methods"]["loo"]
    assert loo["max_abs_diff_vs_naive"] < 1e-3
    # the proxy's tokens are counted
    assert report["methods"]["proxy"]["tokens_per_example"] > 0


def test_report_quality_matches_an_independent_computation(first_run, independent):
    """The bench's numbers against exact LOO recomputed here by loo-naive, outside the bench."""
    report, _, _ = first_run
    exact, hier = [e["exact"] for e in independent], [e["hier"] for e in independent]
    # removing the single best source drops the log-probability by its own LOO score
    assert report["exact"]["topk_drop"]["1"] == pytest.approx(np.mean([e.max() for e in exact]), abs=2e-3)
    m = report["methods"]["hierarchical:keep=1"]
    assert m["topk_drop"]["1"] == pytest.approx(np.mean([e[np.nanargmax(h)] for e, h in zip(exact, hier)]), abs=2e-3)
    assert m["map_vs_exact"] == pytest.approx(np.nanmean([average_precision(h, e) for e, h in zip(exact, hier)]))
    for name in ("loo", "loo-naive"):
        assert report["methods"][name]["map_vs_exact"] == pytest.approx(1.0)
        assert report["methods"][name]["spearman_vs_exact"] == pytest.approx(1.0)
    for k in (2, 3):
        recall = [len(set(_top_passages(e["exact"], e["passages"], k)) & set(e["gold"])) / len(e["gold"]) for e in independent]
        assert report["exact"][f"gold_recall_at_{k}"] == pytest.approx(np.mean(recall))


def _table_rows(text):
    """The Markdown table as {row name: {column: cell}}."""
    lines = [line for line in text.splitlines() if line.startswith("|")]
    head = [c.strip() for c in lines[0].strip("|").split("|")]
    assert set(lines[1].strip("|").split("|")) == {"---"}
    rows = {}
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert len(cells) == len(head), line
        rows[cells[0].strip("`")] = dict(zip(head, cells))
    return rows


def test_markdown_table(first_run):
    report, _, md = first_run
    text = md.read_text()
    assert text.splitlines()[0].startswith(f"n = 2, model {report['model']}, proxy {report['proxy_model']}, level sentence")
    rows = _table_rows(text)
    assert list(rows) == ["exact loo (ground truth)", *METHODS]
    assert rows["exact loo (ground truth)"]["mAP vs exact"] == "1.000"
    naive_s = report["methods"]["loo-naive"]["seconds_per_example"]
    for name in METHODS:
        m, row = report["methods"][name], rows[name]
        assert row["mAP vs exact"] == f"{m['map_vs_exact']:.3f}"
        assert row["Spearman vs exact"] == f"{m['spearman_vs_exact']:.3f}"
        assert row["top-1 drop"] == f"{m['topk_drop']['1']:.2f}" and row["top-5 drop"] == f"{m['topk_drop']['5']:.2f}"
        assert row["LDS"] == f"{m['lds']:.3f}"
        assert row["gold R@2"] == f"{m['gold_recall_at_2']:.2f}"
        assert row["tokens/example"] == f"{m['tokens_per_example']:.0f}"
        assert row["speedup vs naive"] == f"{naive_s / m['seconds_per_example']:.2f}"
    assert rows["loo-naive"]["speedup vs naive"] == "1.00"


def test_proxy_rescore_with_at2_first_stage_needs_no_proxy_model(first_run, data_file):
    _, cache, _ = first_run
    label = "proxy-rescore:first_stage=at2:rescore=2"
    report = run_bench(
        str(data_file),
        n=2,
        level="sentence",
        methods=[label],
        model=get_model("smollm2-135m"),
        max_new_tokens=6,
        cache_dir=cache,
        progress=False,
    )
    m = report["methods"][label]
    assert report["proxy_model"] is None
    assert m["tokens_per_example"] > 0  # the two rescored sources ran on the target
    assert 0.0 <= m["map_vs_exact"] <= 1.0


def test_a_method_option_named_like_a_run_keyword_reaches_the_method(first_run, data_file):
    # proxy's own ``method`` option once collided with Attributor.run(method=...)
    _, cache, _ = first_run
    proxy = _tiny_model()
    label = "proxy:method=hierarchical"
    report = run_bench(
        str(data_file), n=2, level="sentence", methods=[label], model=get_model("smollm2-135m"),
        proxy_model=proxy, max_new_tokens=6, cache_dir=cache, progress=False,
    )
    assert report["methods"][label]["tokens_per_example"] > 0
    # the bench's scores are those of hierarchical run on the proxy itself
    att = Attributor(get_model("smollm2-135m"), level="sentence", max_new_tokens=6)
    results = [json.loads(line) for line in (cache / "results.jsonl").read_text().splitlines()]
    answers = {r["desc"]["example"]: r["value"]["text"] for r in results if r["desc"].get("kind") == "generation"}
    benched = {
        r["desc"]["example"]: r["value"]["scores"]
        for r in results
        if r["desc"].get("method") == "proxy" and r["desc"]["options"].get("method") == "hierarchical"
    }
    assert len(benched) == 2
    on_proxy = Attributor(proxy, level="sentence")
    for ex in load_slice(data_file, 2):
        expected = on_proxy.run(on_proxy.task(ex.question, ex.passages, answers[ex.id]), method="hierarchical").scores
        got = np.array([np.nan if v is None else v for v in benched[ex.id]], dtype=float)
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_method_spec_builds_the_method_with_its_options():
    from attribot_rag.methods.hierarchical import Hierarchical
    from attribot_rag.methods.proxy import Proxy

    method = MethodSpec.parse("proxy:method=hierarchical").create({"proxy": "smollm2-135m", "keep": 2})
    assert isinstance(method, Proxy) and isinstance(method.method, Hierarchical)
    assert method.proxy == "smollm2-135m"


def test_resume_from_cache(first_run, data_file, monkeypatch, tmp_path):
    report, cache, _ = first_run
    # the same data re-extracted elsewhere (new folder, new mtime) still finds its results
    copied = tmp_path / "elsewhere" / data_file.name
    copied.parent.mkdir()
    shutil.copy(data_file, copied)
    os.utime(copied, (1_000_000_000, 1_000_000_000))
    lines = (cache / "results.jsonl").read_text().splitlines()
    assert lines and all("key" in json.loads(line) for line in lines)

    def boom(*args, **kwargs):
        raise AssertionError("a cached result was recomputed")

    for name in ("logprobs", "full_pass", "ablation_logprobs", "generate"):
        monkeypatch.setattr(Scorer, name, boom)
    again = run_bench(
        str(copied),
        n=2,
        level="sentence",
        methods=METHODS,
        model=get_model("smollm2-135m"),
        proxy_model=_tiny_model(),
        rescore=2,
        max_new_tokens=6,
        cache_dir=cache,
        progress=False,
    )
    for name in METHODS:
        assert again["methods"][name] == report["methods"][name]
    # the CLI reads the same cache (the alias names the same model)
    out = cache / "cli.json"
    md = cache / "cli.md"
    rc = main(
        [
            "bench", "--data", str(data_file), "--n", "1", "--methods", "loo,hierarchical:keep=1",
            "--target-model", "smollm2-135m", "--max-new-tokens", "6", "--cache", str(cache),
            "--no-progress", "--json", str(out), "--markdown", str(md),
        ]
    )
    assert rc == 0
    cli = json.loads(out.read_text())
    assert set(cli["methods"]) == {"loo", "hierarchical:keep=1"}
    assert "attribot-rag bench --data" in md.read_text()


def _split_cache_by_example(cache, folders):
    """The cache's lines, one folder per example (as two processes on disjoint ranges
    would have written them)."""
    by_example: dict = {}
    for line in (cache / "results.jsonl").read_text().splitlines():
        by_example.setdefault(json.loads(line)["desc"]["example"], []).append(line)
    for folder, lines in zip(folders, by_example.values()):
        folder.mkdir()
        (folder / "results.jsonl").write_text("\n".join(lines) + "\n")
    return list(by_example)


def test_cached_only_reports_what_parallel_runs_finished(first_run, data_file, monkeypatch, tmp_path, capsys):
    report, cache, _ = first_run
    a, b = tmp_path / "a", tmp_path / "b"
    ids = _split_cache_by_example(cache, [a, b])
    for name in ("logprobs", "full_pass", "ablation_logprobs", "generate"):
        monkeypatch.setattr(Scorer, name, lambda *x, **k: pytest.fail("a cached-only run computed something"))
    opts = dict(level="sentence", methods=METHODS, model=get_model("smollm2-135m"), proxy_model=_tiny_model(),
                rescore=2, max_new_tokens=6, progress=False, cached_only=True)
    both = run_bench(str(data_file), n=2, cache_dir=a, read_caches=[b], **opts)
    assert both["n"] == 2 and both["not_cached"] == []
    assert both["methods"] == report["methods"] and both["exact"] == report["exact"]
    # example 2's results only in the other folder: reported without it, and named
    one = run_bench(str(data_file), n=2, cache_dir=a, **opts)
    assert one["n"] == 1 and one["not_cached"] == [ids[1]]
    single = run_bench(str(data_file), n=1, cache_dir=a, **opts)
    assert one["methods"] == single["methods"]
    assert (a / "results.jsonl").read_text().count("\n") + (b / "results.jsonl").read_text().count("\n") == len(
        (cache / "results.jsonl").read_text().splitlines())  # nothing written
    with pytest.raises(InputError, match="none of the 1 examples has all its results"):
        run_bench(str(data_file), n=1, offset=1, cache_dir=a, **opts)
    with pytest.raises(InputError, match="no results cache at"):
        run_bench(str(data_file), n=2, cache_dir=a, read_caches=[tmp_path / "missing"], **opts)
    assert main(["bench", "--data", str(data_file), "--no-cache", "--cached-only"]) != 0
    assert "cannot go with --read-cache or --cached-only" in capsys.readouterr().err


def test_example_ranges_and_the_frontier_plot_from_the_cache(first_run, data_file, monkeypatch, tmp_path):
    report, cache, _ = first_run
    for name in ("logprobs", "full_pass", "ablation_logprobs", "generate"):
        monkeypatch.setattr(Scorer, name, lambda *x, **k: pytest.fail("a cached-only run computed something"))
    opts = dict(level="sentence", methods=METHODS, model=get_model("smollm2-135m"), proxy_model=_tiny_model(),
                rescore=2, max_new_tokens=6, progress=False, cached_only=True, cache_dir=cache)
    # --lds-masks 0: LDS read where a run cached it, never computed
    reread = run_bench(str(data_file), n=2, **{**opts, "lds_masks": 0})
    assert reread["methods"]["loo"]["lds"] == pytest.approx(report["methods"]["loo"]["lds"])
    with pytest.raises(InputError, match="at least 16 masks"):
        run_bench(str(data_file), n=2, **{**opts, "lds_masks": 5})
    second = run_bench(str(data_file), example_ranges=((1, 2),), **opts)
    assert second["examples"] == "1-1" and second["n"] == 1
    assert second["methods"] == run_bench(str(data_file), n=1, offset=1, **opts)["methods"]
    # every row carries its per-example APs and their bootstrap interval
    for row in report["methods"].values():
        aps = [v for v in row["ap_per_example"] if v is not None]
        assert row["map_vs_exact"] == pytest.approx(np.mean(aps))
        lo, hi = row["map_vs_exact_ci95"] or (row["map_vs_exact"], row["map_vs_exact"])
        assert lo <= row["map_vs_exact"] <= hi
    from attribot_rag.evaluation.plot import frontier_points, plot_frontier

    points, axis = frontier_points(report, cost="wall")
    assert "naive LOO in wall time (measured in this run)" in axis
    by_label = {p.label: p for p in points}
    assert by_label["loo-naive"].speedup == pytest.approx(1.0)
    assert by_label["loo"].speedup == pytest.approx(report["methods"]["loo"]["speedup_vs_naive"])
    cpu = {p.label: p for p in frontier_points(report)[0]}  # CPU time by default
    assert cpu["loo"].speedup == pytest.approx(report["methods"]["loo"]["cpu_speedup_vs_naive"])
    without = {**report, "methods": {k: dict(v, speedup_vs_naive=None, cpu_speedup_vs_naive=None)
                                     for k, v in report["methods"].items() if k != "loo-naive"}}
    pts, axis = frontier_points(without, naive_over_exact=1.7)
    assert "1.70 x exact" in axis and {p.label: p for p in pts}["loo"].speedup == pytest.approx(
        1.7 * report["methods"]["loo"]["cpu_speedup_vs_exact"])
    assert "over exact LOO" in frontier_points(without)[1]  # no ratio: the axis says what it is
    tok = {p.label: p for p in frontier_points(report, cost="tokens")[0]}
    assert tok["loo"].speedup == pytest.approx(
        report["methods"]["loo-naive"]["tokens_per_example"] / report["methods"]["loo"]["tokens_per_example"])
    with pytest.raises(InputError, match="cost must be one of"):
        frontier_points(report, cost="flops")
    out = plot_frontier(report, tmp_path / "frontier.png", goal=(50, 0.9), names={"loo": "exact LOO"})
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the legend names a point as asked, the others by their spec; a name for a row the
    # report has no point for is refused rather than left out of the picture
    from attribot_rag.evaluation.plot import display_names

    shown = display_names(points, {"loo": "exact LOO"})
    assert shown["loo"] == "exact LOO" and shown["loo-naive"] == "loo-naive"
    with pytest.raises(InputError, match="not plotted: hierarchical:keep=9"):
        plot_frontier(report, tmp_path / "bad.png", names={"hierarchical:keep=9": "x"})
    with pytest.raises(InputError, match="no method rows"):
        plot_frontier({"methods": {}}, tmp_path / "none.png")


@pytest.mark.slow  # loads smollm2-135m
def test_a_run_without_a_proxy_finds_the_answers_of_a_run_with_one(data_file, monkeypatch, tmp_path):
    # the shared key names the target's dtype only; the proxy's goes on the proxy's results
    target = get_model("smollm2-135m", dtype="bfloat16")
    proxy = _tiny_model()
    proxy = load_model(copy.deepcopy(proxy.model).to(torch.bfloat16), proxy.tokenizer)
    opts = dict(n=1, level="passage", model=target, max_new_tokens=6, cache_dir=tmp_path, progress=False)
    first = run_bench(str(data_file), methods=["loo", "proxy"], proxy_model=proxy, **opts)
    descs = [json.loads(line)["desc"] for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert all(d["dtypes"] == ["bfloat16"] for d in descs)
    assert [d.get("proxy_dtype") for d in descs if d.get("method") == "proxy"] == ["bfloat16"]
    assert not any("proxy_dtype" in d for d in descs if d.get("method") != "proxy")
    for name in ("logprobs", "full_pass", "ablation_logprobs", "generate"):
        monkeypatch.setattr(Scorer, name, lambda *a, **k: pytest.fail("recomputed a cached result"))
    again = run_bench(str(data_file), methods=["loo"], **opts)
    assert again["exact"] == first["exact"]


def test_caches_written_with_the_old_two_dtype_key_are_still_read(tmp_path):
    base = {"v": 1, "model": "m", "example": "e"}
    old = [
        {**base, "dtypes": ["bfloat16", "bfloat16"], "kind": "generation"},
        {**base, "dtypes": ["bfloat16", "bfloat16"], "kind": "method", "method": "proxy", "options": {"proxy": "p"}},
        {**base, "dtypes": ["bfloat16", None], "kind": "method", "method": "loo", "options": {}},
    ]
    lines = [json.dumps({"key": ResultsCache.key(d), "desc": d, "value": i}) for i, d in enumerate(old)]
    (tmp_path / "results.jsonl").write_text("\n".join(lines) + "\n")
    cache = ResultsCache(tmp_path)
    assert cache.get({**base, "dtypes": ["bfloat16"], "kind": "generation"}) == 0
    proxy = {**base, "dtypes": ["bfloat16"], "kind": "method", "method": "proxy", "options": {"proxy": "p"}}
    assert cache.get({**proxy, "proxy_dtype": "bfloat16"}) == 1
    assert cache.get(proxy) is None  # a proxy result is kept apart from one in another dtype
    assert cache.get({**base, "dtypes": ["bfloat16"], "kind": "method", "method": "loo", "options": {}}) == 2


@pytest.mark.slow  # loads smollm2-135m
def test_method_specs_and_errors(data_file):
    spec = MethodSpec.parse("hierarchical:keep=3:sentence-context=kept")
    assert spec.name == "hierarchical"
    assert dict(spec.options) == {"keep": 3, "sentence_context": "kept"}
    assert dict(MethodSpec.parse("hierarchical:keep_mass=0.8").options) == {"keep_mass": 0.8}
    with pytest.raises(InputError):
        run_bench(str(data_file), n=1, methods=["proxy"], model=get_model("smollm2-135m"), cache_dir=None)
    with pytest.raises(InputError):
        run_bench(str(data_file), n=1, methods=["nope"], model=get_model("smollm2-135m"), cache_dir=None)
    with pytest.raises(InputError):
        run_bench(str(data_file), n=1, methods=["loo"], lds_masks=8, model=get_model("smollm2-135m"), cache_dir=None)


def test_cached_results_of_a_changed_default_are_not_read_back():
    """hierarchical's default became passage_method="auto": its cache key says so, so a
    result cached for the old default (passage LOO, no extra key) is not reused for it,
    while an explicit passage_method keeps the plain key."""
    assert MethodSpec.parse("hierarchical").cache_identity == {"passage_method": "auto"}
    assert MethodSpec.parse("hierarchical:keep=2").cache_identity == {"passage_method": "auto"}
    assert MethodSpec.parse("hierarchical:passage_method=loo").cache_identity == {}
    assert MethodSpec.parse("hierarchical:passage_method=at2").cache_identity == {}
    assert MethodSpec.parse("loo").cache_identity == {}
    old = {"kind": "method", "method": "hierarchical", "options": {}}
    assert ResultsCache.key({**old, **MethodSpec.parse("hierarchical").cache_identity}) != ResultsCache.key(old)


def test_results_cached_with_other_at2_weights_are_not_read_back():
    """The 1.5B's shipped AT2 weights carry a cache tag: AT2's results on that model, and
    those of every method AT2 ranks for, are keyed by it; results cached with the weights
    before (no tag) are not reused as theirs. Weights without a tag keep the plain key."""
    tag = {"at2_weights": load_default_weights("qwen2.5-coder-1.5b").metadata["cache_tag"]}
    for label in ("at2", "proxy-rescore:first_stage=at2:rescore=8:stop_ratio=0.3", "hierarchical:passage_method=at2"):
        assert MethodSpec.parse(label).cache_identity_for("qwen2.5-coder-1.5b") == tag, label
    assert MethodSpec.parse("hierarchical").cache_identity_for("qwen2.5-coder-1.5b") == {"passage_method": "auto", **tag}
    assert MethodSpec.parse("at2:weights=mine.safetensors").cache_identity_for("qwen2.5-coder-1.5b") == {}
    for label in ("loo", "proxy-rescore", "attention"):
        assert MethodSpec.parse(label).cache_identity_for("qwen2.5-coder-1.5b") == {}, label
    assert MethodSpec.parse("at2").cache_identity_for("smollm2-135m") == {}  # its weights have no tag
    assert MethodSpec.parse("at2").cache_identity_for("no-such-model") == {}


def test_shared_options_go_to_the_methods_that_take_them():
    proxy = object()
    shared = {"proxy": proxy, "keep": 2, "keep_mass": None, "rescore": 4}
    assert MethodSpec.parse("hierarchical").resolve(shared) == {"keep": 2}
    # a spec's own keep_mass replaces the shared keep (they are one choice)
    assert MethodSpec.parse("hierarchical:keep_mass=0.8").resolve(shared) == {"keep_mass": 0.8}
    assert MethodSpec.parse("proxy").resolve(shared) == {"proxy": proxy}
    assert MethodSpec.parse("proxy-rescore").resolve(shared) == {"proxy": proxy, "rescore": 4}
    # with another first stage, proxy-rescore runs on the target alone
    spec = MethodSpec.parse("proxy-rescore:first_stage=at2")
    assert not spec.needs_proxy and spec.resolve(shared) == {"rescore": 4, "first_stage": "at2"}
    assert MethodSpec.parse("loo").resolve(shared) == {}
    assert MethodSpec.parse("proxy").needs_proxy and not MethodSpec.parse("at2").needs_proxy


def test_tokens_run_on_other_models_are_declared_by_the_method_class():
    """bench adds to a method's tokens the info keys its class declares (a proxy's
    tokens), never a key it knows by name."""
    from attribot_rag.evaluation.bench import _other_model_tokens
    from attribot_rag.methods import METHODS

    info = {"proxy_forward_tokens": 120, "other": 7}
    assert _other_model_tokens(METHODS["proxy"], info) == 120
    assert _other_model_tokens(METHODS["proxy-rescore"], info) == 120
    assert _other_model_tokens(METHODS["proxy-rescore"], {}) == 0  # first_stage=at2: no proxy ran
    assert _other_model_tokens(METHODS["loo"], info) == 0


def test_the_evaluation_runs_share_one_cache_and_setup():
    from attribot_rag.evaluation import bench, cache, cite_eval, prune_eval, setup

    assert bench.ResultsCache is cache.ResultsCache is prune_eval.ResultsCache is cite_eval.ResultsCache
    assert bench.NotCached is cache.NotCached is prune_eval.NotCached
    assert bench._data_signature is cache.data_signature and bench._jsonable is cache.jsonable
    assert bench.load_models is prune_eval.load_models is setup.load_models
    assert bench.build_attributor is prune_eval.build_attributor is setup.build_attributor
