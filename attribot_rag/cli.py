"""The ``attribot-rag`` command line: attribute, demo, bench, prune-eval, cite-eval, calibrate, train-at2, index, serve, batch."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Any, Sequence

from .attributor import DEFAULT_MAX_NEW_TOKENS
from .errors import AttribotError, InputError

# Nothing here downloads: the default model ships in a Python package.
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _add_model_args(p: argparse.ArgumentParser) -> None:
    from .models import DEFAULT_MODEL

    p.add_argument("--model", default=DEFAULT_MODEL, help="alias, Hugging Face id or local path")
    p.add_argument("--batch-size", type=int, default=None, help="ablations per forward pass")
    p.add_argument(
        "--dtype",
        default=None,
        choices=["auto", "float32", "bfloat16"],
        help="weights dtype of the models this command loads (default: $ATTRIBOT_RAG_DTYPE or auto: "
        "bfloat16 where the hardware runs it fast, else float32)",
    )


def _add_cache_reading_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--read-cache", action="append", default=[], metavar="DIR",
                   help="also read results from this cache (another process's example range); repeatable")
    p.add_argument("--cached-only", action="store_true",
                   help="compute nothing: report the examples whose results are all cached, list the others")


def _cache_options(args: argparse.Namespace) -> dict:
    from .errors import InputError

    if args.no_cache and (args.read_cache or args.cached_only):
        raise InputError("--no-cache stores and reads nothing: it cannot go with --read-cache or --cached-only")
    return {
        "cache_dir": None if args.no_cache else args.cache,
        "read_caches": args.read_cache,
        "cached_only": args.cached_only,
    }


def cmd_attribute(args: argparse.Namespace) -> int:
    from rich.console import Console

    from .attributor import Attributor
    from .errors import InputError
    from .sources import load_passages_file

    passages, file_question = load_passages_file(args.passages)
    question = args.question or file_question
    if not question:
        raise InputError("no question: pass --question (the passages file is not a HotpotQA example)")
    kwargs = {}
    if args.batch_size:
        kwargs["batch_size"] = args.batch_size
    attributor = Attributor(args.model, method=args.method, level=args.level, dtype=args.dtype, **kwargs)
    result = attributor.attribute(question, passages, args.answer, max_new_tokens=args.max_new_tokens)
    if args.json:
        print(result.to_json())
    else:
        console = Console()
        console.print(f"[bold]Question:[/bold] {result.question}")
        console.print(f"[bold]Answer:[/bold] {result.answer.strip()}")
        t = result.timings
        console.print(
            f"generation {t['generation_s']:.2f}s, attribution {t['attribution_s']:.2f}s, "
            f"{result.forward_tokens} forward-pass tokens"
        )
        console.print(result.table(limit=args.top))
    if args.html:
        from .citations import cite
        from .report.html import write_html

        cited = cite(attributor, question, passages, result.answer, method=args.method)
        print(f"wrote {write_html(args.html, cited, attribution=result)}", file=sys.stderr)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(model=args.model, method=args.method, proxy_model=args.proxy_model, k=args.k,
             questions=args.question or None, dtype=args.dtype)
    return 0


def _bench_command(args: argparse.Namespace) -> str:
    """The bench command line that reproduces this run (for the Markdown table)."""
    import shlex

    parts = ["attribot-rag", "bench", "--data", args.data]
    if args.examples:
        parts += ["--examples", args.examples]
    else:
        parts += ["--n", str(args.n)] + (["--offset", str(args.offset)] if args.offset else [])
    parts += ["--level", args.level, "--methods", args.methods, "--model", args.model]
    for flag, value in (
        ("--proxy-model", args.proxy_model),
        ("--keep", args.keep),
        ("--keep-mass", args.keep_mass),
        ("--rescore", args.rescore),
        ("--batch-size", args.batch_size),
        ("--dtype", args.dtype),
        ("--plot", args.plot),
        ("--naive-over-exact", args.naive_over_exact),
        ("--goal", args.goal),
        ("--plot-cost", args.plot_cost if args.plot else None),
    ):
        if value is not None:
            parts += [flag, str(value)]
    for name in (args.plot_name or []) if args.plot else []:
        parts += ["--plot-name", name]
    if args.max_new_tokens != 32:
        parts += ["--max-new-tokens", str(args.max_new_tokens)]
    if args.lds_masks != 16:
        parts += ["--lds-masks", str(args.lds_masks)]
    if args.seed != 0:
        parts += ["--seed", str(args.seed)]
    return " ".join(shlex.quote(p) for p in parts)


def _plot_names(given: list[str], methods: list[str]) -> dict[str, str]:
    """``--plot-name N=TEXT``: N is a method's position in ``--methods`` (from 1), or its
    spec where that has no options (a spec with options holds '=' itself)."""
    from .errors import InputError

    names = {}
    for item in given:
        key, sep, text = item.partition("=")
        if not sep or not text.strip():
            raise InputError(f"--plot-name wants N=TEXT or METHOD=TEXT, got {item!r}")
        key = key.strip()
        if key.isdigit():
            if not 1 <= int(key) <= len(methods):
                raise InputError(f"--plot-name {item!r}: --methods has {len(methods)} methods")
            key = methods[int(key) - 1]
        if key not in methods:
            raise InputError(f"--plot-name {item!r}: no method {key!r} in --methods")
        names[key] = text.strip()
    return names


def cmd_bench(args: argparse.Namespace) -> int:
    from .evaluation.bench import run_bench
    from .evaluation.hotpotqa import parse_index_ranges

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    command = _bench_command(args)
    plot_names = _plot_names(args.plot_name or [], methods)  # checked before the run, not after it
    report = run_bench(
        data=args.data,
        n=args.n,
        level=args.level,
        methods=methods,
        model=args.model,
        batch_size=args.batch_size,
        max_new_tokens=args.max_new_tokens,
        proxy_model=args.proxy_model,
        keep=args.keep,
        keep_mass=args.keep_mass,
        rescore=args.rescore,
        lds_masks=args.lds_masks,
        seed=args.seed,
        **_cache_options(args),
        markdown=args.markdown,
        command=command,
        offset=args.offset,
        progress=not args.no_progress,
        dtype=args.dtype,
        example_ranges=parse_index_ranges(args.examples) if args.examples else None,
    )
    text = json.dumps(report, indent=2)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
    if args.plot:
        from .evaluation.plot import plot_frontier

        goal = tuple(float(v) for v in args.goal.split(",")) if args.goal else None
        plot_frontier(report, args.plot, naive_over_exact=args.naive_over_exact, goal=goal, cost=args.plot_cost,
                      names=plot_names)
    print(text)
    return 0


def cmd_prune_eval(args: argparse.Namespace) -> int:
    import shlex

    from .errors import InputError
    from .evaluation.prune_eval import run_prune_eval

    try:
        ks = [int(k) for k in args.k.split(",") if k.strip()]
    except ValueError:
        raise InputError(f"--k must be comma-separated integers, got {args.k!r}") from None
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    parts = ["attribot-rag", "prune-eval", "--data", args.data, "--n", str(args.n)]
    if args.offset:
        parts += ["--offset", str(args.offset)]
    parts += ["--methods", args.methods, "--k", args.k, "--model", args.model]
    if args.proxy_model:
        parts += ["--proxy-model", args.proxy_model]
    if args.max_new_tokens is not None:
        parts += ["--max-new-tokens", str(args.max_new_tokens)]
    if args.instruction is not None:
        parts += ["--instruction", args.instruction]
    if args.seed:
        parts += ["--seed", str(args.seed)]
    if args.dtype:
        parts += ["--dtype", args.dtype]
    kwargs = {}
    if args.max_new_tokens is not None:
        kwargs["max_new_tokens"] = args.max_new_tokens
    if args.instruction is not None:
        kwargs["instruction"] = args.instruction
    report = run_prune_eval(
        data=args.data,
        n=args.n,
        methods=methods,
        ks=ks,
        model=args.model,
        proxy_model=args.proxy_model,
        seed=args.seed,
        offset=args.offset,
        **_cache_options(args),
        progress=not args.no_progress,
        markdown=args.markdown,
        command=" ".join(shlex.quote(p) for p in parts),
        dtype=args.dtype,
        **kwargs,
    )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            fh.write(json.dumps(report, indent=2) + "\n")
    summary = {k: v for k, v in report.items() if k != "examples"}
    print(json.dumps(summary, indent=2))
    return 0


def _command_line(args: argparse.Namespace, name: str, flags: dict[str, Any]) -> str:
    """The command as typed, for reports: the flags given a value."""
    import shlex

    parts = ["attribot-rag", name]
    for flag, value in flags.items():
        if value not in (None, False, "", []):
            parts += [flag] if value is True else [flag, str(value)]
    return " ".join(shlex.quote(p) for p in parts)


def cmd_cite_eval(args: argparse.Namespace) -> int:
    from .evaluation.cite_eval import run_cite_eval

    methods = _methods(args)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    command = _command_line(args, "cite-eval", {
        "--dataset": args.dataset, "--data": args.data, "--offset": args.offset, "--n": args.n,
        "--model": args.model, "--dtype": args.dtype, "--methods": args.methods, "--modes": args.modes,
        "--cache": args.cache, "--support-candidates": args.support_candidates, "--support-rankers": args.support_rankers,
        "--joint": args.joint,
    })
    support = _support_plan(args)
    report = run_cite_eval(
        dataset=args.dataset, data=args.data, n=args.n, offset=args.offset, model=args.model, dtype=args.dtype,
        modes=modes, methods=methods, **_cache_options(args), command=command, support=support,
    )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            fh.write(json.dumps(report, indent=2) + "\n")
    if args.markdown:
        from .evaluation.cite_report import markdown_table

        with open(args.markdown, "w", encoding="utf-8") as fh:
            fh.write(markdown_table(report["report"], report["command"]))
    print(json.dumps({k: v for k, v in report.items() if k != "per_example"}, indent=2))
    return 0


def _calibration_records(args: argparse.Namespace) -> tuple[str, list[tuple[Any, str, dict[str, Any]]]]:
    """The model's name and its cite-eval records: read from the cache when every one is
    there (no model loaded), computed (and cached) otherwise."""
    from .attributor import Attributor
    from .evaluation.bench import ResultsCache
    from .evaluation.cite_eval import DEFAULT_METHODS, cached_items, collect, load_examples, record_base
    from .models import default_model, get_model

    examples = load_examples(args.dataset, args.data, args.n, args.offset)
    cache = ResultsCache(args.cache)
    modes = ("own", "external")
    name = args.model or default_model()
    methods, plan = _methods(args) or list(DEFAULT_METHODS), _support_plan(args)
    base = record_base(name, args.dtype, args.data, methods, plan, args.recorded_at2_tag)
    items, missing = cached_items(examples, cache, base, modes, methods)
    if not missing or args.cached_only:
        if not items:
            raise InputError(f"no cite-eval records of {name} in {args.cache} for these examples")
        return name, items
    att = Attributor(get_model(args.model, dtype=args.dtype), level="sentence")
    rows = collect(att, examples, data=args.data, cache=cache, modes=modes, methods=methods, support=plan)
    return att.model_name, [(r["example"], r["mode"], r["record"]) for r in rows]


def _methods(args: argparse.Namespace) -> list[str]:
    return [m.strip() for m in (args.methods or "").split(",") if m.strip()]


def _support_plan(args: argparse.Namespace) -> Any:
    from .evaluation.cite_eval import SupportPlan

    rankers = tuple(r.strip() for r in (args.support_rankers or "at2").split(",") if r.strip())
    return SupportPlan(args.support_candidates, rankers, joint=args.joint)


def _add_support_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--support-candidates", type=int, default=3, metavar="K",
                   help="top sources per sentence whose support is checked (a policy can use up to K)")
    p.add_argument("--support-rankers", default=None, metavar="LIST",
                   help="recorded methods whose top K get the support check (default: at2; the first gives the references)")
    p.add_argument("--joint", action="store_true",
                   help="also record pairs of candidates kept together (policies with joint_gain)")


def cmd_calibrate(args: argparse.Namespace) -> int:
    from .evaluation.calibrate import fit

    model_name, items = _calibration_records(args)
    recorded = len({ex.id for ex, _, _ in items})
    where = f"{args.dataset} {args.data.rsplit('/', 1)[-1]} {args.offset}-{args.offset + args.n - 1} ({recorded} examples recorded)"
    cal = fit(items, model_name, where, args.ranker)
    cal.save(args.out)
    print(json.dumps({**cal.describe(), "floors": dict(cal.floors), "min_support": cal.min_support,
                      "min_context_gain": cal.min_context_gain, "out": args.out}, indent=2))
    return 0


DEFAULT_EXCLUDE = "200-239,400-585"  # the HotpotQA dev slices held out for reporting


def cmd_train_at2(args: argparse.Namespace) -> int:
    import shlex
    import time

    from .evaluation.hotpotqa import parse_index_ranges
    from .training.at2 import train_at2
    from .models import load_model

    parts = ["attribot-rag", "train-at2", "--model", args.model, "--data", *args.data, "--out", args.out,
             "--examples", str(args.examples), "--masks", str(args.masks), "--steps", str(args.steps),
             "--seed", str(args.seed), "--skip", str(args.skip), "--max-new-tokens", str(args.max_new_tokens)]
    if args.lr != 1e-3:
        parts += ["--lr", str(args.lr)]
    if args.non_negative:
        parts += ["--non-negative"]
    if (args.sources, args.keep_prob) != ("tokens", 0.5):
        parts += ["--sources", args.sources, "--keep-prob", str(args.keep_prob)]
    if args.exclude != DEFAULT_EXCLUDE:
        parts += ["--exclude", args.exclude]
    if args.max_passages is not None:
        parts += ["--max-passages", str(args.max_passages)]
    if args.dtype:
        parts += ["--dtype", args.dtype]
    command = " ".join(shlex.quote(str(a)) for a in parts)
    lm = load_model(args.model, dtype=args.dtype)
    t0 = time.perf_counter()
    weights, summary = train_at2(
        lm,
        args.data,
        args.out,
        examples=args.examples,
        masks=args.masks,
        steps=args.steps,
        seed=args.seed,
        skip=args.skip,
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size or 8,
        lr=args.lr,
        non_negative=args.non_negative,
        sources=args.sources,
        keep_prob=args.keep_prob,
        exclude=parse_index_ranges(args.exclude),
        max_passages=args.max_passages,
        cache_dir=args.cache,
        command=command,
        progress=not args.no_progress,
    )
    summary["total_seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(summary, indent=2, default=str))
    return 0


def cmd_index(args: argparse.Namespace) -> int:
    from .index import build_index

    if args.docs is not None:
        from .documents import build_docs_index

        index = build_docs_index(args.docs, args.out, chunk_size=args.chunk_size, chunk_overlap=args.chunk_overlap)
        files = len({p.metadata["file"] for p in index.passages})
        print(f"indexed {len(index.passages)} chunks of {files} files from {args.docs} "
              f"with {index.embedder_name} into {args.out}")
        return 0
    index = build_index(args.corpus, args.out)
    print(f"indexed {len(index.passages)} passages with {index.embedder_name} into {args.out}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from .service.server import serve

    options = dict(host=args.host, port=args.port, index=args.index, model=args.model, proxy_model=args.proxy_model,
                   method=args.method, max_new_tokens=args.max_new_tokens, max_waiting=args.max_waiting,
                   timeout_s=args.timeout, max_wait_s=args.max_wait, dtype=args.dtype, threads=args.threads,
                   keepalive_s=args.keep_alive or None)
    if args.replicas is None:
        serve(**options)
        return 0
    from .service.ray_serve import serve_replicas  # Ray Serve: imported only with --replicas

    serve_replicas(replicas=args.replicas, address=args.address, min_replicas=args.min_replicas,
                   max_replicas=args.max_replicas, target_ongoing_requests=args.target_ongoing_requests, **options)
    return 0


def _replicas(text: str) -> int | str:
    if text.strip().lower() == "auto":
        return "auto"
    return _positive_int(text)


def cmd_batch(args: argparse.Namespace) -> int:
    from .batch import run_batch

    summary = run_batch(args.input, args.output, method=args.method, model=args.model, level=args.level,
                        workers=args.workers, ray_address=args.ray_address, use_ray=not args.no_ray,
                        max_new_tokens=args.max_new_tokens, progress=not args.no_progress,
                        dtype=args.dtype, threads=args.threads)
    print(json.dumps(summary.to_dict(), indent=2))
    return 0


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _add_service_commands(sub) -> None:
    from .methods import available_methods

    p = sub.add_parser("index", help="embed a JSONL corpus {id, text, title?} or a folder of documents "
                       "(txt, md, html, pdf) into a FAISS index folder")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--corpus", help="JSONL (or JSON list) of passages (default: the bundled handbook)")
    source.add_argument("--docs", metavar="FOLDER", help="a folder of .txt, .md, .html and .pdf files (subfolders "
                        "too), cut into sentence-aware chunks that keep their file and position")
    p.add_argument("--chunk-size", type=int, default=200, help="with --docs: tokens per chunk")
    p.add_argument("--chunk-overlap", type=int, default=20, help="with --docs: tokens shared by neighbouring chunks")
    p.add_argument("--out", required=True, metavar="DIR", help="index folder to write")
    p.set_defaults(func=cmd_index)

    p = sub.add_parser("serve", help="HTTP API and search page with cited answers (FastAPI, uvicorn)")
    p.add_argument("--index", metavar="DIR", help="index folder from `attribot-rag index` (default: the handbook)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--proxy-model", help="proxy model for the proxy and proxy-rescore methods")
    p.add_argument("--method", default="auto", choices=["auto", *available_methods()],
                   help="default attribution method (auto: at2 where weights ship for the model, else loo)")
    p.add_argument("--max-new-tokens", type=int, default=DEFAULT_MAX_NEW_TOKENS, help="answer length")
    p.add_argument("--max-waiting", type=int, default=8, help="requests that may wait for the model (then 503)")
    p.add_argument("--timeout", type=float, default=120.0,
                   help="seconds of model time per request (then 504; a stream ends with what it has)")
    p.add_argument("--max-wait", type=float, default=60.0, help="refuse (503) when the expected wait is longer")
    p.add_argument("--threads", type=_positive_int, default=None,
                   help="torch threads for the model (default: torch's, i.e. $OMP_NUM_THREADS or every core)")
    p.add_argument("--keep-alive", type=float, default=15.0, metavar="SECONDS",
                   help="streaming endpoints: an SSE comment after this many seconds without an event (0: never)")
    ray = p.add_argument_group("Ray Serve (the same app on several replicas, each with its own model; "
                               "needs ray[serve]: pip install 'attribot-rag[serve-ray]')")
    ray.add_argument("--replicas", type=_replicas, default=None, metavar="N|auto",
                     help="serve with Ray Serve: N replicas, or auto (autoscaling between --min-replicas and "
                     "--max-replicas); --threads is per replica (default 1)")
    ray.add_argument("--address", default=None, help="Ray cluster to join (default: start a local Ray)")
    ray.add_argument("--min-replicas", type=_positive_int, default=1, help="--replicas auto: the fewest replicas")
    ray.add_argument("--max-replicas", type=_positive_int, default=None,
                     help="--replicas auto: the most replicas (default: the cluster's cores / --threads)")
    ray.add_argument("--target-ongoing-requests", type=float, default=2.0,
                     help="--replicas auto: requests per replica (running + waiting) the autoscaler aims at")
    _add_model_args(p)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("batch", help="attribute a JSONL log of {id, question, passages, answer?} (Ray)")
    p.add_argument("--input", required=True, help="JSONL input, one record a line")
    p.add_argument("--output", required=True, help="JSONL output; ids already there are skipped (resume)")
    p.add_argument("--method", default="auto", choices=["auto", *available_methods()])
    p.add_argument("--level", default="passage", choices=["passage", "sentence"])
    p.add_argument("--workers", type=int, default=1, help="model workers (one model each)")
    p.add_argument("--ray-address", help="a running Ray cluster (default: start a local one)")
    p.add_argument("--no-ray", action="store_true", help="run in this process (only with --workers 1)")
    p.add_argument("--max-new-tokens", type=int, default=None, help="answer length when a record has none")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--threads", type=_positive_int, default=None,
                   help="torch threads per worker (default: 1 per Ray worker; without Ray, torch's)")
    _add_model_args(p)
    p.set_defaults(func=cmd_batch)


def build_parser() -> argparse.ArgumentParser:
    from .methods import available_methods
    from .models import QUALITY_MODEL, QUALITY_PROXY

    parser = argparse.ArgumentParser(
        prog="attribot-rag",
        description="Which retrieved passages did the answer really use? Context attribution for RAG.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("attribute", help="attribute an answer to its passages")
    p.add_argument("--question", "-q", help="the question (default: the HotpotQA example's)")
    p.add_argument("--passages", "-p", required=True, help="JSON list of {id, text, title?} or one HotpotQA example")
    p.add_argument("--answer", "-a", help="the answer to explain (default: generate it with the model)")
    p.add_argument("--method", default="auto", choices=["auto", *available_methods()])
    p.add_argument("--level", default="passage", choices=["passage", "sentence"])
    p.add_argument("--max-new-tokens", type=int, default=None)
    p.add_argument("--top", type=int, default=None, help="show only the top N sources")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument(
        "--html",
        metavar="OUT",
        help="also write a self-contained HTML page: the answer with citations, passages shaded by score",
    )
    _add_model_args(p)
    p.set_defaults(func=cmd_attribute)

    p = sub.add_parser("demo", help="offline end-to-end RAG demo over the bundled handbook")
    p.add_argument("--method", default="loo", choices=available_methods())
    p.add_argument("--k", type=int, default=4, help="passages retrieved per question")
    p.add_argument("--question", action="append", help="ask this instead of the sample questions")
    p.add_argument("--proxy-model", default=QUALITY_PROXY, help="proxy for the proxy methods (alias, id or path)")
    _add_model_args(p)
    p.set_defaults(func=cmd_demo, model=QUALITY_MODEL)

    p = sub.add_parser("bench", help="speed and agreement of methods on HotpotQA-format data")
    p.add_argument("--data", required=True, help="HotpotQA-format JSON file")
    p.add_argument("--n", type=int, default=10, help="first N examples")
    p.add_argument("--offset", type=int, default=0, help="skip this many examples first")
    p.add_argument("--examples", metavar="RANGES", help="example indices instead of --offset/--n, e.g. 200-215,220-223")
    p.add_argument("--level", default="sentence", choices=["passage", "sentence"])
    p.add_argument(
        "--methods",
        default="loo-naive,loo",
        help="comma-separated method names; options as name:key=value, e.g. hierarchical:keep=3",
    )
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--json", metavar="OUT", help="also write the report to this file")
    p.add_argument("--markdown", metavar="OUT", help="also write the report as a Markdown table")
    p.add_argument("--plot", metavar="PNG", help="also draw speed against faithfulness (needs the plots extra)")
    p.add_argument("--naive-over-exact", type=float, metavar="R",
                   help="--plot without a loo-naive row: naive LOO's time over exact LOO's, measured elsewhere")
    p.add_argument("--goal", metavar="SPEEDUP,MAP", help="--plot: mark a target, e.g. 50,0.9")
    p.add_argument("--plot-name", action="append", metavar="N=TEXT",
                   help="--plot: the legend's name for the Nth method of --methods (from 1; or METHOD=TEXT for a "
                        "method without options); repeatable")
    p.add_argument("--plot-cost", choices=["cpu", "wall", "tokens"], default="cpu",
                   help="--plot: speedups in this process's CPU time (default; steadier on shared cores), wall time, "
                        "or forward tokens (what no other job changes)")
    _add_model_args(p)
    p.add_argument(
        "--target-model", dest="model", default=argparse.SUPPRESS, help="the target model (same as --model)"
    )
    p.add_argument("--proxy-model", help="proxy model for proxy and proxy-rescore (alias, id or path)")
    keep = p.add_mutually_exclusive_group()
    keep.add_argument("--keep", type=int, help="hierarchical: keep the top-K passages")
    keep.add_argument("--keep-mass", type=float, help="hierarchical: keep this fraction of positive passage score")
    p.add_argument("--rescore", type=int, help="proxy-rescore: sources rescored on the target")
    p.add_argument("--lds-masks", type=int, default=16,
                   help="random masks for LDS (at least 16; 0: LDS only where a run cached it, none computed)")
    p.add_argument("--seed", type=int, default=0, help="seed of the LDS masks")
    p.add_argument("--cache", default=".bench-cache", metavar="DIR", help="results cache (resumable runs)")
    p.add_argument("--no-cache", action="store_true", help="recompute everything, store nothing")
    _add_cache_reading_args(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_bench)
    p = sub.add_parser("prune-eval", help="HotpotQA context pruning: answer, attribute, keep top-k, answer again")
    p.add_argument("--data", required=True, help="HotpotQA-format JSON file")
    p.add_argument("--n", type=int, default=200, help="first N examples")
    p.add_argument("--offset", type=int, default=0, help="skip this many examples first")
    p.add_argument(
        "--methods",
        default="at2,loo,hierarchical,proxy,attention,question-similarity,random",
        help="comma-separated rankings: registered methods (the baselines 'random' and 'question-similarity' among them)",
    )
    p.add_argument("--k", default="1,2,3,4,5", help="comma-separated numbers of paragraphs to keep")
    p.add_argument("--proxy-model", help="proxy model for the proxy ranker (alias, id or path)")
    p.add_argument("--max-new-tokens", type=int, default=None, help="answer length (default: tuned on dev)")
    p.add_argument("--instruction", default=None, help="instruction after the question (default: tuned on dev)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random ranker and the bootstrap")
    p.add_argument("--json", metavar="OUT", help="write the report with per-example results to this file")
    p.add_argument("--markdown", metavar="OUT", help="also write the report as a Markdown table")
    p.add_argument("--cache", default=".prune-eval-cache", metavar="DIR", help="results cache (resumable runs)")
    p.add_argument("--no-cache", action="store_true", help="recompute everything, store nothing")
    _add_cache_reading_args(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_model_args(p)
    p.set_defaults(func=cmd_prune_eval)
    p = sub.add_parser("train-at2", help="train AT2 per-head weights for a model (docs/architecture.md, Methods > AT2)")
    p.add_argument("--data", nargs="+", required=True, metavar="FILE",
                   help="HotpotQA-format and/or SQuAD v1.1 JSON files (never hotpotqa/test.json)")
    p.add_argument("--out", required=True, help="weights file to write (.safetensors)")
    p.add_argument("--examples", type=int, default=150, help="training examples (across files)")
    p.add_argument("--masks", type=int, default=32, help="random keep-masks over the sources per example")
    p.add_argument("--sources", choices=["tokens", "sentences"], default="tokens",
                   help="what a mask keeps or drops: context tokens (AT2's recipe) or the passages' sentences")
    p.add_argument("--keep-prob", type=float, default=0.5, help="probability that a mask keeps a source")
    p.add_argument("--exclude", default=DEFAULT_EXCLUDE, metavar="RANGES",
                   help="HotpotQA example indices never trained on (inclusive ranges; default: the held-out "
                        "dev slices; 'none' for none)")
    p.add_argument("--max-passages", type=int, default=None, metavar="K",
                   help="HotpotQA: at most K paragraphs per example, the gold ones first (cheaper masked passes)")
    p.add_argument("--steps", type=int, default=1000, help="Adam steps of the fit")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skip", type=int, default=100,
                   help="leave out the first N examples of HotpotQA-format files (held for checking)")
    p.add_argument("--max-new-tokens", type=int, default=32, help="length of the generated answers")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--non-negative", action="store_true", help="keep every head weight >= 0 while fitting")
    p.add_argument("--cache", metavar="DIR", help="per-example results (default: OUT.cache); reruns resume")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    _add_model_args(p)
    p.set_defaults(func=cmd_train_at2)
    _add_citation_commands(sub)
    _add_service_commands(sub)
    return parser


def _add_citation_commands(sub: Any) -> None:
    p = sub.add_parser("cite-eval", help="citations against gold evidence (HotpotQA supporting facts, NQ-open gold passages)")
    p.add_argument("--dataset", choices=["hotpotqa", "nq"], required=True)
    p.add_argument("--data", required=True, help="HotpotQA-format JSON, or the NQ-open oracle JSONL(.gz)")
    p.add_argument("--n", type=int, default=20, help="examples")
    p.add_argument("--offset", type=int, default=0, help="first example (HotpotQA dev: report on 400-585; NQ: 500-999)")
    p.add_argument("--methods", default="at2,attention,similarity", help="rankers whose scores are recorded")
    p.add_argument("--modes", default="own,external,external2", help="answer modes: own, external, external2")
    p.add_argument("--json", metavar="OUT", help="write the report and the per-example answers here")
    p.add_argument("--markdown", metavar="OUT", help="also write the report as a Markdown table")
    p.add_argument("--cache", default=".cite-eval-cache", metavar="DIR", help="evidence records (resumable runs)")
    p.add_argument("--no-cache", action="store_true", help="recompute everything, store nothing")
    _add_support_args(p)
    _add_cache_reading_args(p)
    _add_model_args(p)
    p.set_defaults(func=cmd_cite_eval)
    p = sub.add_parser("calibrate", help="fit a model's citation calibration (null floor, least support) on dev data")
    p.add_argument("--dataset", choices=["hotpotqa", "nq"], default="hotpotqa")
    p.add_argument("--data", required=True, help="dev data (never hotpotqa/test.json)")
    p.add_argument("--n", type=int, default=20, help="examples")
    p.add_argument("--offset", type=int, default=0, help="first example")
    p.add_argument("--out", required=True, help="calibration file to write (.calibration.json)")
    p.add_argument("--cache", default=".cite-eval-cache", metavar="DIR", help="evidence records (shared with cite-eval)")
    p.add_argument("--methods", default="at2,attention,similarity", help="the recorded methods (as given to cite-eval)")
    p.add_argument("--cached-only", action="store_true", help="fit on the records already in --cache, computing none")
    p.add_argument("--ranker", default="at2", help="the recorded AT2 scores to fit for (e.g. at2:weights=FILE: another set)")
    p.add_argument("--recorded-at2-tag", default=None, metavar="TAG",
                   help="with --cached-only: the cache tag of the AT2 set that shipped when the records were made")
    _add_support_args(p)
    _add_model_args(p)
    p.set_defaults(func=cmd_calibrate)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "dtype", None):
        # Also the process default, so --dtype reaches every model a command loads by name
        # (serve's and batch's workers included), not only those it passes it to.
        os.environ["ATTRIBOT_RAG_DTYPE"] = args.dtype
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    if not args.verbose:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    try:
        return args.func(args)
    except AttribotError as exc:
        print(f"attribot-rag: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("attribot-rag: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
