"""What each step of the default citation policy adds, on the held-out records: the
previous default (bridges, two citations per sentence), then verdicts, then companions
(the default), replayed from cite-eval's records of HotpotQA dev 400-585 (no model runs).
Reporting only: every setting here was chosen on the choice split.

    python benchmarks/cite_default_steps.py
"""

from __future__ import annotations

from attribot_rag.citations import CitationPolicy
from attribot_rag.evaluation.cache import ResultsCache
from attribot_rag.evaluation.cite_eval import SupportPlan, cached_items, load_examples, record_base
from attribot_rag.evaluation.cite_report import Citer, report

MODEL = "qwen2.5-coder-1.5b"
DATA = "../shared/data/hotpotqa/dev.json"
METHODS = ["at2", "attention", "similarity"]
CACHES = ("benchmarks/cite-eval-cache/qwen15-hotpotqa-dev400-loo20", "benchmarks/cite-eval-cache/qwen15-hotpotqa-dev526")


def steps() -> list[Citer]:
    p = CitationPolicy()
    before = p.with_options(max_per_sentence=2, verdict_relevance=None, companion_probability=None)
    return [
        Citer("the previous default (bridges, 2 per sentence)", "at2", before),
        Citer("+ verdicts", "at2", before.with_options(verdict_relevance=p.verdict_relevance)),
        Citer("+ 3 per sentence, companions (the default)", "at2", p),
    ]


def main() -> None:
    examples = load_examples("hotpotqa", DATA, 186, 400)
    cache = ResultsCache(CACHES[0], read_also=CACHES[1:], cached_only=True)
    items, missing = cached_items(examples, cache, record_base(MODEL, "bfloat16", DATA, METHODS, SupportPlan(3)), ["own", "external"], METHODS)
    print(f"{len({ex.id for ex, _, _ in items})} examples ({len(missing)} not recorded)\n")
    print("| policy | answers | sentence precision | fact recall | uncited (gold in context) |\n|---|---|---|---|---|")
    for name, groups in report(items, steps(), MODEL).items():
        for group, st in groups.items():
            if group in ("external", "own", "external/comparison", "external/bridge"):
                cells = " | ".join(f"{st[k]['value']:.2f} [{st[k]['ci'][0]:.2f}, {st[k]['ci'][1]:.2f}]"
                                   for k in ("precision_sentence", "recall_sentence", "uncited_with_gold"))
                print(f"| {name} ({group}) | {st['answers']} | {cells} |")


if __name__ == "__main__":
    main()
