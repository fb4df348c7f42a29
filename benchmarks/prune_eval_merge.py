"""One prune-eval report from several runs over disjoint example ranges (issue 14).

The 200 test examples ran in pieces: different processes, sessions and machines, so some
in bfloat16 and some in float32 (each example is internally consistent: its answers and
rankings come from one run). This reads each run's ``--json`` report, checks that the
runs share model, prompt and answer length and do not overlap, tags every example with
its run's dtype, and summarizes:

* the methods every example has, over all examples;
* each method only some examples have (e.g. exact ``loo`` on the first 50), over those
  examples, beside the common methods on the same subset;
* both, per question type (bridge / comparison).

    python benchmarks/prune_eval_merge.py --data ../shared/data/hotpotqa/test.json \
        --report OUT-0-49.json --report OUT-50-199.json --json merged.json --markdown merged.md
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path
from typing import Any

from attribot_rag.evaluation.prune_eval import REPORT_VERSION, current_examples, markdown_table, summarize, summarize_by_type

SHARED = ("model",)
SHARED_OPTIONS = ("instruction", "max_new_tokens", "seed")


def load_runs(paths: list[str], data: str | None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Every run's examples, each tagged with its run's dtype (and type from ``data`` where
    the record predates the field), plus what the runs share."""
    types = {str(e.get("_id", e.get("id"))): e.get("type") for e in json.loads(Path(data).read_text())} if data else {}
    runs = [json.loads(Path(p).read_text(encoding="utf-8")) for p in paths]
    first = runs[0]
    for path, run in zip(paths, runs):
        for key in SHARED:
            if run.get(key) != first.get(key):
                raise SystemExit(f"{path}: {key} {run.get(key)!r} differs from {first.get(key)!r}")
        for key in SHARED_OPTIONS:
            if run["options"].get(key) != first["options"].get(key):
                raise SystemExit(f"{path}: option {key} differs from the first report's")
    # A run whose rankings need no proxy reports none; the others must share theirs.
    proxies = {run.get("proxy_model") for run in runs} - {None}
    if len(proxies) > 1:
        raise SystemExit(f"the runs used different proxy models: {sorted(proxies)}")
    examples, seen = [], set()
    for path, run in zip(paths, runs):
        for rec in current_examples(run):  # older reports: rankings under their current names
            if rec["id"] in seen:
                raise SystemExit(f"{path}: example {rec['id']} is in two reports")
            seen.add(rec["id"])
            examples.append({**rec, "dtype": run.get("model_dtype"), "type": rec.get("type") or types.get(rec["id"])})
    shared = {k: first.get(k) for k in SHARED} | {"proxy_model": next(iter(proxies), None)}
    return examples, shared | {"options": first["options"]}


def merged_report(examples: list[dict[str, Any]], shared: dict[str, Any]) -> dict[str, Any]:
    ks = shared["options"]["ks"]
    counts = Counter(m for r in examples for m in r["methods"])
    common = [m for m, c in counts.items() if c == len(examples)]
    out = {**shared, "version": REPORT_VERSION, "n": len(examples), "dtypes": dict(Counter(r["dtype"] for r in examples)),
           "all": {**summarize(examples, common, ks), **shared},
           "all_by_type": summarize_by_type(examples, common, ks), "subsets": {}}
    out["all"]["by_type"] = out["all_by_type"]
    for m in (m for m, c in counts.items() if c < len(examples)):
        sub = [r for r in examples if m in r["methods"]]
        rep = {**summarize(sub, [m, *common], ks), **shared}
        rep["by_type"] = summarize_by_type(sub, [m, *common], ks)
        rep["ids"] = [r["id"] for r in sub]
        rep["dtypes"] = dict(Counter(r["dtype"] for r in sub))
        out["subsets"][m] = rep
    out["examples"] = examples
    return out


def markdown(report: dict[str, Any]) -> str:
    parts = [f"All {report['n']} examples (dtypes: {report['dtypes']}).", "", markdown_table(report["all"])]
    for m, rep in report["subsets"].items():
        parts += [f"`{m}` ran on {rep['n']} of them (dtypes: {rep['dtypes']}); the other rankings on the same examples:",
                  "", markdown_table(rep)]
    return "\n".join(parts)


def write_outputs(report: dict[str, Any], text: str, json_path: str | None, markdown_path: str | None) -> None:
    """The report as JSON and its tables as Markdown where asked; the tables printed."""
    if json_path:
        Path(json_path).write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    if markdown_path:
        Path(markdown_path).write_text(text, encoding="utf-8")
    print(text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--report", action="append", required=True, help="a prune-eval --json report (repeat)")
    ap.add_argument("--data", help="the HotpotQA file, for question types records lack")
    ap.add_argument("--json", help="write the merged report here")
    ap.add_argument("--markdown", help="write the tables here")
    args = ap.parse_args()
    examples, shared = load_runs(args.report, args.data)
    report = merged_report(examples, shared)
    write_outputs(report, markdown(report), args.json, args.markdown)


if __name__ == "__main__":
    main()
