"""Training AT2 weights (docs/architecture.md, Methods > AT2): ``attribot-rag train-at2``.

Per training example (a question over one or more passages, rendered with the same prompt
layout as attribution):

1. generate the answer (greedy, short) and split it into sentences: each is a target;
2. sources are the context tokens (``sources="tokens"``, AT2's general recipe) or the
   passages' sentences (``sources="sentences"``, the unit citations and sentence-level
   LOO explain); draw ``masks`` seeded random keep-masks over them (keep probability
   ``keep_prob``, 1/2 by default) and apply each as attention-mask zeros over the dropped
   sources' tokens (the tokens stay, positions do not move);
3. y[target, mask] = logit of the target's joint probability under the mask,
   log p - log(1 - p) with log p the sum of the target's token log-probs;
4. features from the unmasked run (one forward pass, attention rows recomputed per layer),
   averaged over the target's tokens: F[target, source, L*H]; since the prediction for a
   mask is sum over kept sources of w . F, only G[target, mask] = sum_kept F (L*H numbers)
   is stored.

Per-example results are cached as ``.npz`` files (no pickles) in the cache folder, so an
interrupted run resumes where it stopped. Then w (one weight per head, initialised at
1/(L*H)) is fitted with Adam to maximise the Pearson correlation between G . w and y
across the masks of each target (averaged over a batch of targets), and normalised to unit
L1 norm.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch

from ..at2.attention import _config, model_shape, response_rows, source_features, span_matrix
from ..at2.weights import AT2Weights
from ..errors import InputError
from ..layout import PromptLayout
from ..models import LoadedModel
from ..scoring import Scorer
from ..sources import Passage, make_sources, split_sentences

logger = logging.getLogger(__name__)

CACHE_VERSION = 1
DEFAULT_SKIP = 100  # the first 100 HotpotQA dev examples are held for checking
# HotpotQA dev examples held out for reporting (the data's rules): never trained on
HELD_OUT_HOTPOTQA_DEV = ((200, 240), (400, 586))
SOURCE_KINDS = ("tokens", "sentences")


# ---------------------------------------------------------------------------- data
@dataclass(frozen=True)
class TrainExample:
    id: str
    question: str
    passages: tuple[Passage, ...]
    source: str  # data file


def _is_forbidden(path: Path) -> bool:
    parts = [p.lower() for p in path.resolve().parts]
    return len(parts) >= 2 and parts[-1] == "test.json" and parts[-2] == "hotpotqa"


def _fewer_paragraphs(example: dict[str, Any], max_passages: int | None) -> dict[str, Any]:
    """The example with its gold paragraphs and the first distractors, at most
    ``max_passages`` in their original order: multi-passage training data at a fraction of
    the cost (a masked pass costs in proportion to the context's length)."""
    context = example.get("context") or []
    if max_passages is None or len(context) <= max_passages:
        return example
    gold = {str(t) for t, _ in example.get("supporting_facts") or []}
    keep = [i for i, (title, _) in enumerate(context) if str(title) in gold][:max_passages]
    keep += [i for i in range(len(context)) if i not in keep][: max_passages - len(keep)]
    return {**example, "context": [context[i] for i in sorted(keep)]}


def read_examples(
    path: str | Path,
    skip: int = DEFAULT_SKIP,
    seed: int = 0,
    exclude: Sequence[tuple[int, int]] = HELD_OUT_HOTPOTQA_DEV,
    max_passages: int | None = None,
) -> list[TrainExample]:
    """Examples of one file: HotpotQA format (a JSON list; the first ``skip`` and the index
    ranges ``exclude`` [start, stop) are left out; at most ``max_passages`` paragraphs, the
    gold ones first) or SQuAD v1.1 (one question per paragraph, paragraphs in a seeded
    random order)."""
    from ..sources import hotpotqa_passages

    path = Path(path)
    if not path.exists():
        raise InputError(f"training data file {str(path)!r} does not exist")
    if _is_forbidden(path):
        raise InputError(
            f"{str(path)!r} is the held-out HotpotQA test split: never train on it "
            "(use hotpotqa/dev.json with --skip 100, or SQuAD)"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(f"training data file {str(path)!r} is not valid JSON: {exc}") from exc
    out: list[TrainExample] = []
    if isinstance(data, dict) and isinstance(data.get("data"), list):  # SQuAD
        paras = []
        for art in data["data"]:
            title = str(art.get("title", "")).replace("_", " ") or None
            for k, para in enumerate(art.get("paragraphs", [])):
                qas = para.get("qas") or []
                if not qas or not str(para.get("context", "")).strip():
                    continue
                qa = qas[0]
                paras.append(
                    TrainExample(
                        id=str(qa.get("id", f"{title}-{k}")),
                        question=str(qa["question"]),
                        passages=(Passage(id="p0", text=str(para["context"]), title=title),),
                        source=str(path),
                    )
                )
        order = np.random.default_rng(seed).permutation(len(paras))
        out = [paras[i] for i in order]
    elif isinstance(data, list):  # HotpotQA
        for i, obj in enumerate(data):
            if i < skip or any(a <= i < b for a, b in exclude):
                continue
            try:
                out.append(
                    TrainExample(
                        id=str(obj.get("_id", obj.get("id", ""))),
                        question=str(obj["question"]),
                        passages=tuple(hotpotqa_passages(_fewer_paragraphs(obj, max_passages))),
                        source=str(path),
                    )
                )
            except (KeyError, TypeError, ValueError) as exc:
                raise InputError(f"{str(path)!r}: not a HotpotQA example: {exc}") from exc
    else:
        raise InputError(f"{str(path)!r} is neither HotpotQA (a JSON list) nor SQuAD ({{'data': [...]}}) format")
    return out


def load_examples(
    paths: Sequence[str | Path],
    n: int | None = None,
    skip: int = DEFAULT_SKIP,
    seed: int = 0,
    exclude: Sequence[tuple[int, int]] = HELD_OUT_HOTPOTQA_DEV,
    max_passages: int | None = None,
) -> list[TrainExample]:
    """Examples from several files, interleaved (one from each file in turn), first ``n``."""
    per_file = [read_examples(p, skip=skip, seed=seed, exclude=exclude, max_passages=max_passages) for p in paths]
    out: list[TrainExample] = []
    i = 0
    while any(i < len(f) for f in per_file):
        for f in per_file:
            if i < len(f):
                out.append(f[i])
        i += 1
    if n is not None:
        out = out[:n]
    if not out:
        raise InputError("no training examples in the data files")
    return out


# ---------------------------------------------------------------------------- per example
def logit_prob(logp: np.ndarray) -> np.ndarray:
    lp = np.minimum(np.asarray(logp, dtype=np.float64), -1e-12)
    log1m = np.where(lp > -0.693, np.log(-np.expm1(lp)), np.log1p(-np.exp(lp)))
    return lp - log1m


def _example_seed(seed: int, example_id: str) -> int:
    return int(hashlib.sha256(f"{seed}:{example_id}".encode()).hexdigest()[:8], 16)


@torch.inference_mode()
def masked_logprobs(
    lm: LoadedModel,
    ids: Sequence[int],
    response_len: int,
    drop: np.ndarray,
    batch_size: int = 8,
) -> np.ndarray:
    """[n_masks, r] response token log-probs with the tokens ``drop[m]`` (bool [n_masks, N])
    hidden by attention-mask zeros; positions unchanged."""
    device = lm.device
    n = len(ids)
    r = response_len
    ids_t = torch.tensor(list(ids), device=device)
    targets = ids_t[n - r :]
    out = np.zeros((drop.shape[0], r), dtype=np.float64)
    for b0 in range(0, drop.shape[0], batch_size):
        d = torch.as_tensor(drop[b0 : b0 + batch_size], device=device)
        bsz = d.shape[0]
        mask = (~d).long()
        batch_ids = ids_t.unsqueeze(0).expand(bsz, -1)
        pos = torch.arange(n, device=device).unsqueeze(0).expand(bsz, -1)
        logits = lm.model(
            input_ids=batch_ids, attention_mask=mask, position_ids=pos, use_cache=False, logits_to_keep=r + 1
        ).logits[:, :-1]
        lp = torch.log_softmax(logits.float(), dim=-1).gather(-1, targets.expand(bsz, -1).unsqueeze(-1))[..., 0]
        out[b0 : b0 + bsz] = lp.cpu().numpy()
    return out


def target_slices(response: Any) -> list[tuple[int, int]]:
    """Token slices of the answer's sentences (the training targets)."""
    out = []
    for a, b in split_sentences(response.text):
        try:
            sl = response.token_slice((a, b))
        except InputError:
            continue
        if sl[1] > sl[0] and sl not in out:
            out.append(sl)
    return out


def source_token_spans(prompt: Any, sources: Sequence[Any], kind: str) -> list[tuple[int, int]]:
    """Token spans of the training sources: one per context token, or one per sentence."""
    if kind == "tokens":
        return [(t, t + 1) for t in sorted({t for s in sources for t in range(*prompt.token_span(s.index))})]
    spans = [prompt.token_span(s.index) for s in sources]
    return [(a, b) for a, b in spans if b > a]


def process_example(
    lm: LoadedModel,
    layout: PromptLayout,
    example: TrainExample,
    *,
    masks: int = 32,
    seed: int = 0,
    max_new_tokens: int = 32,
    batch_size: int = 8,
    sources: str = "tokens",
    keep_prob: float = 0.5,
) -> dict[str, np.ndarray] | None:
    """G [targets, masks, L*H] and y [targets, masks] for one example (None: nothing to learn)."""
    passages = list(example.passages)
    units = make_sources(passages, "passage" if sources == "tokens" else "sentence")
    prompt = layout.render(example.question, passages, units)
    if len(prompt) + max_new_tokens > lm.context_window:
        return None
    try:
        response = Scorer(lm).generate(prompt.input_ids, max_new_tokens=max_new_tokens)
    except InputError:  # an empty answer: nothing to learn from
        return None
    targets = target_slices(response)
    if not targets:
        return None
    p, r = len(prompt.input_ids), len(response.token_ids)
    ids = list(prompt.input_ids) + list(response.token_ids)
    spans = source_token_spans(prompt, units, sources)
    if len(spans) < 2:
        return None
    rng = np.random.default_rng(_example_seed(seed, example.id))
    keep = rng.random((masks, len(spans))) < keep_prob  # [M, S]
    drop = np.zeros((masks, len(ids)), dtype=bool)
    for j, (a, b) in enumerate(spans):
        drop[:, a:b] = ~keep[:, j : j + 1]
    lp = masked_logprobs(lm, ids, r, drop, batch_size=batch_size)  # [M, r]
    rows = response_rows(p, (0, r))
    smat = span_matrix(spans, rows[-1] + 1)
    feats = source_features(lm.model, ids, rows, smat)  # [S, r, LH]
    keep_t = torch.as_tensor(keep, dtype=torch.float32)
    G, Y = [], []
    for a, b in targets:
        F = feats[:, a:b].mean(dim=1)  # [S, LH]
        G.append((keep_t @ F).numpy())
        Y.append(logit_prob(lp[:, a:b].sum(axis=1)))
    return {
        "G": np.stack(G).astype(np.float32),
        "y": np.stack(Y).astype(np.float64),
        "targets": np.array(targets, dtype=np.int64),
        "answer": np.array(response.text),
        "context_tokens": np.array(sum(b - a for a, b in spans)),
        "sources": np.array(len(spans)),
        "prompt_tokens": np.array(p),
    }


# ---------------------------------------------------------------------------- fitting
def pearson(pred: torch.Tensor, y: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Pearson correlation along the last dimension, over the entries ``valid`` marks (all
    by default): targets with different numbers of masks share one padded tensor."""
    if valid is None:
        valid = torch.ones_like(y, dtype=torch.bool)
    v = valid.to(pred.dtype)
    n = v.sum(-1, keepdim=True).clamp(min=1)
    pc = (pred - (pred * v).sum(-1, keepdim=True) / n) * v
    yc = (torch.where(valid, y, 0.0) - (torch.where(valid, y, 0.0)).sum(-1, keepdim=True) / n) * v
    return (pc * yc).sum(-1) / (pc.norm(dim=-1) * yc.norm(dim=-1) + 1e-12)


def _usable_targets(g: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Which masks each target has (y not nan), and which targets can teach anything: at
    least 3 masks, finite features, and an output that varies under masking."""
    valid = torch.isfinite(y)
    n = valid.sum(-1)
    y0 = torch.where(valid, y, 0.0)
    mean = y0.sum(-1, keepdim=True) / n.clamp(min=1).unsqueeze(-1)
    var = (torch.where(valid, y0 - mean, 0.0) ** 2).sum(-1) / n.clamp(min=1)
    finite_g = torch.where(valid.unsqueeze(-1), g, 0.0).isfinite().all(-1).all(-1)
    return valid, (n >= 3) & finite_g & (var.sqrt() > 1e-6)


@dataclass
class FitResult:
    weights: np.ndarray  # [L*H], unit L1
    train_corr_uniform: float
    train_corr: float
    val_corr_uniform: float | None
    val_corr: float | None
    targets: int
    losses: list[float] = field(default_factory=list)


def fit_weights(
    G: np.ndarray,
    y: np.ndarray,
    *,
    steps: int = 1000,
    lr: float = 1e-3,
    batch: int = 512,
    seed: int = 0,
    val_fraction: float = 0.1,
    non_negative: bool = False,
    progress: bool = True,
) -> FitResult:
    """Negative-Pearson fit of w over targets: G [T, M, F], y [T, M]. A nan in y marks a
    mask the target does not have (targets with fewer masks, padded).

    ``non_negative`` clamps w at 0 after every step (AT2's optional constraint)."""
    g = torch.as_tensor(G, dtype=torch.float32)
    yt = torch.as_tensor(y, dtype=torch.float32)
    valid, ok = _usable_targets(g, yt)
    g, yt, valid = torch.where(valid.unsqueeze(-1), g, 0.0)[ok], yt[ok], valid[ok]
    if g.shape[0] == 0:
        raise InputError("no usable training targets (every target's output was constant under masking)")
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(g.shape[0], generator=gen)
    n_val = int(round(val_fraction * g.shape[0])) if g.shape[0] >= 20 else 0
    val_idx, tr_idx = order[:n_val], order[n_val:]
    g_tr, y_tr, v_tr = g[tr_idx], yt[tr_idx], valid[tr_idx]
    n_feat = g.shape[-1]
    w0 = torch.full((n_feat,), 1.0 / n_feat)
    w = torch.nn.Parameter(w0.clone())
    opt = torch.optim.Adam([w], lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, steps))
    losses = []
    it: Iterable[int] = range(steps)
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc="fit w", unit="step")
    n_tr = g_tr.shape[0]
    for step in it:
        if n_tr <= batch:
            idx = torch.arange(n_tr)
        else:
            idx = torch.randperm(n_tr, generator=gen)[:batch]
        pred = g_tr[idx] @ w
        loss = -pearson(pred, y_tr[idx], v_tr[idx]).mean()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_([w], 1.0)
        opt.step()
        sched.step()
        if non_negative:
            with torch.no_grad():
                w.clamp_(min=0.0)
        losses.append(float(loss.detach()))
    with torch.no_grad():
        wf = w.detach() / w.detach().abs().sum()

        def corr(idx, ww):
            return float(pearson(g[idx] @ ww, yt[idx], valid[idx]).mean()) if len(idx) else None

        res = FitResult(
            weights=wf.numpy().astype(np.float32),
            train_corr_uniform=corr(tr_idx, w0),
            train_corr=corr(tr_idx, wf),
            val_corr_uniform=corr(val_idx, w0) if n_val else None,
            val_corr=corr(val_idx, wf) if n_val else None,
            targets=int(g.shape[0]),
            losses=losses,
        )
    return res


# ---------------------------------------------------------------------------- driver
def _cache_file(cache_dir: Path, lm: LoadedModel, ex: TrainExample, opts: dict[str, Any]) -> Path:
    key = json.dumps({"v": CACHE_VERSION, "model": lm.name, "id": ex.id, "source": Path(ex.source).name,
                      "question": ex.question, **opts}, sort_keys=True)
    h = hashlib.sha256(key.encode()).hexdigest()[:16]
    return cache_dir / f"{h}.npz"


def _training_data(lm: LoadedModel, layout: PromptLayout, exs: list[TrainExample], cache: Path,
                   opts: dict[str, Any], *, batch_size: int, progress: bool):
    """(G, y) per example, from the cache or computed now (and cached at once); also the
    seconds per computed example and how many were computed and skipped (no target)."""
    from tqdm.auto import tqdm

    masks, seed, max_new_tokens = opts["masks"], opts["seed"], opts["max_new_tokens"]
    unit = {"sources": opts.get("sources", "tokens"), "keep_prob": opts.get("keep_prob", 0.5)}
    G, Y = [], []
    seconds, computed, skipped = [], 0, 0
    bar = tqdm(exs, desc="examples", unit="ex", disable=not progress)
    for ex in bar:
        path = _cache_file(cache, lm, ex, opts)
        rec: dict[str, np.ndarray] | None
        if path.exists():
            with np.load(path, allow_pickle=False) as z:
                rec = {k: z[k] for k in z.files} if "G" in z.files else None
        else:
            t0 = time.perf_counter()
            rec = process_example(lm, layout, ex, masks=masks, seed=seed,
                                  max_new_tokens=max_new_tokens, batch_size=batch_size, **unit)
            dt = time.perf_counter() - t0
            seconds.append(dt)
            computed += 1
            tmp = path.with_name(path.stem + ".tmp.npz")
            if rec is None:
                np.savez(tmp, empty=np.array(1))
            else:
                np.savez(tmp, seconds=np.array(dt), **rec)
            tmp.replace(path)
        if rec is None:
            skipped += 1
            continue
        G.append(rec["G"])
        Y.append(rec["y"])
        if progress and seconds:
            bar.set_postfix(s_per_ex=f"{np.mean(seconds):.1f}", targets=sum(len(g) for g in G))
    return G, Y, seconds, computed, skipped


def _check_training_options(masks: int, steps: int, sources: str, keep_prob: float, max_passages: int | None) -> None:
    if masks < 4:
        raise InputError(f"--masks must be at least 4, got {masks}")
    if steps < 1:
        raise InputError(f"--steps must be at least 1, got {steps}")
    if sources not in SOURCE_KINDS:
        raise InputError(f"--sources must be one of {', '.join(SOURCE_KINDS)}, got {sources!r}")
    if not 0.0 < keep_prob < 1.0:
        raise InputError(f"--keep-prob must be in (0, 1), got {keep_prob}")
    if max_passages is not None and max_passages < 1:
        raise InputError(f"--max-passages must be at least 1, got {max_passages}")


def train_at2(
    lm: LoadedModel,
    data: Sequence[str | Path],
    out: str | Path,
    *,
    examples: int | None = 150,
    masks: int = 32,
    steps: int = 1000,
    seed: int = 0,
    skip: int = DEFAULT_SKIP,
    max_new_tokens: int = 32,
    batch_size: int = 8,
    lr: float = 1e-3,
    non_negative: bool = False,
    sources: str = "tokens",
    keep_prob: float = 0.5,
    exclude: Sequence[tuple[int, int]] = HELD_OUT_HOTPOTQA_DEV,
    max_passages: int | None = None,
    cache_dir: str | Path | None = None,
    layout: PromptLayout | None = None,
    command: str = "",
    progress: bool = True,
) -> tuple[AT2Weights, dict[str, Any]]:
    """Train AT2 weights for ``lm`` and write them to ``out``. Returns (weights, summary)."""
    _check_training_options(masks, steps, sources, keep_prob, max_passages)
    layout = layout or PromptLayout(lm.tokenizer)
    exs = load_examples(data, n=examples, skip=skip, seed=seed, exclude=exclude, max_passages=max_passages)
    cache = Path(cache_dir) if cache_dir else Path(str(out) + ".cache")
    cache.mkdir(parents=True, exist_ok=True)
    opts = {"masks": masks, "seed": seed, "max_new_tokens": max_new_tokens,
            "system": layout.system_prompt, "instruction": layout.instruction}
    if (sources, keep_prob) != ("tokens", 0.5):  # AT2's recipe keeps the cache keys it always had
        opts.update(sources=sources, keep_prob=keep_prob)
    if max_passages is not None:  # other passages, other results
        opts["max_passages"] = max_passages
    G, Y, seconds, computed, skipped = _training_data(
        lm, layout, exs, cache, opts, batch_size=batch_size, progress=progress)
    if not G:
        raise InputError("no training example produced a usable target")
    fit = fit_weights(np.concatenate(G), np.concatenate(Y), steps=steps, lr=lr, seed=seed,
                      non_negative=non_negative, progress=progress)
    layers, heads = model_shape(lm.model)
    meta = {
        "model": lm.name,
        "architecture": getattr(_config(lm.model), "model_type", None),
        "training_data": {
            "files": [str(p) for p in data],
            "skip_hotpotqa": skip,
            "excluded_hotpotqa": [list(r) for r in exclude],
            "max_passages_hotpotqa": max_passages,
            "examples": len(exs),
            "examples_used": len(exs) - skipped,
            "targets": fit.targets,
            "masks": masks,
            "max_new_tokens": max_new_tokens,
            "sources": f"context {sources}, keep probability {keep_prob}, attention-mask zeros",
        },
        "fit": {
            "steps": steps, "lr": lr, "seed": seed, "non_negative": non_negative,
            "loss": "negative Pearson", "normalised": "unit L1",
            "train_corr_uniform": fit.train_corr_uniform, "train_corr": fit.train_corr,
            "val_corr_uniform": fit.val_corr_uniform, "val_corr": fit.val_corr,
        },
        "command": command,
    }
    weights = AT2Weights(fit.weights.reshape(layers, heads), meta)
    weights.save(out)
    summary = {
        "out": str(out),
        "examples": len(exs),
        "skipped": skipped,
        "computed_now": computed,
        "seconds_per_example": float(np.mean(seconds)) if seconds else None,
        "targets": fit.targets,
        **meta["fit"],
    }
    return weights, summary


__all__ = [
    "FitResult",
    "TrainExample",
    "fit_weights",
    "load_examples",
    "masked_logprobs",
    "pearson",
    "process_example",
    "read_examples",
    "source_token_spans",
    "train_at2",
]
