"""ContextCite: a sparse linear surrogate fitted on random ablations.

``ablations`` (default 64) seeded random masks over the sources, each source kept with
probability ``keep_prob`` (1/2). Each mask's prompt (the removed sources' text deleted and
the prompt re-rendered, as LOO does) is scored one mask per forward pass, each continuing
the KV cache of the longest prompt start it shares with the full prompt or the mask run
before it (``Scorer.ablation_logprobs_chained``; ``batch_size`` > 1: the batched scorer).
The regression target is the target span's logit-probability y = log p - log(1 - p), with
log p the sum of the span's token log-probs. A LASSO (scikit-learn, ``alpha`` 0.01) on
standardized masks, with y divided by the number of target tokens, as ContextCite does;
the coefficients are mapped back to raw masks and rescaled: score(s) = the change in
the span's logit-probability from including s.

The ablations are run once per task and kept per answer token (:class:`AblationEffects`),
so any span of the answer (each sentence, for citations) is one more LASSO fit, not
another set of ablations.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .base import AttributionMethod, AttributionTask, Effects, MethodOutput, register_method


def logit_prob(logp: np.ndarray | float) -> np.ndarray:
    """log p - log(1 - p) for log-probabilities logp <= 0, computed stably."""
    lp = np.minimum(np.asarray(logp, dtype=np.float64), -1e-12)
    # log(1 - e^lp): expm1 near 0, log1p far from 0
    log1m = np.where(lp > -0.693, np.log(-np.expm1(lp)), np.log1p(-np.exp(lp)))
    return lp - log1m


def random_masks(num_masks: int, num_sources: int, keep_prob: float = 0.5, seed: int = 0) -> np.ndarray:
    """[num_masks, num_sources] boolean keep-masks, i.i.d. Bernoulli(keep_prob), seeded
    (the one mask generator: ContextCite's ablations and the LDS masks of the metrics)."""
    if num_masks < 1 or num_sources < 1:
        raise ValueError("need at least one mask and one source")
    rng = np.random.default_rng(seed)
    return rng.random((num_masks, num_sources)) < keep_prob


def fit_lasso(masks: np.ndarray, y: np.ndarray, num_tokens: int, alpha: float = 0.01) -> tuple[np.ndarray, float]:
    """ContextCite's solver: LASSO on standardized masks, mapped back to raw masks."""
    from sklearn.linear_model import Lasso
    from sklearn.preprocessing import StandardScaler

    x = masks.astype(np.float64)
    scaler = StandardScaler()
    xs = scaler.fit_transform(x)
    lasso = Lasso(alpha=alpha, fit_intercept=True, random_state=0, max_iter=10000)
    lasso.fit(xs, y / num_tokens)
    coef = lasso.coef_ / scaler.scale_
    weights = num_tokens * coef
    bias = num_tokens * (float(lasso.intercept_) - float(np.sum(scaler.mean_ * coef)))
    return weights, bias


@register_method
class ContextCite(AttributionMethod):
    name = "contextcite"

    def __init__(
        self,
        ablations: int = 64,
        keep_prob: float = 0.5,
        alpha: float = 0.01,
        seed: int = 0,
        batch_size: int | None = None,
    ) -> None:
        if ablations < 2:
            raise ValueError(f"contextcite needs at least 2 ablations, got {ablations}")
        if not 0.0 < keep_prob < 1.0:
            raise ValueError(f"keep_prob must be in (0, 1), got {keep_prob}")
        self.ablations = int(ablations)
        self.keep_prob = float(keep_prob)
        self.alpha = float(alpha)
        self.seed = int(seed)
        self.batch_size = batch_size

    def effects(self, task: AttributionTask) -> Effects:
        masks = random_masks(self.ablations, len(task.sources), self.keep_prob, self.seed)
        full = task.full_pass()
        removals = [[task.sources[i].index for i in np.flatnonzero(~m)] for m in masks]
        prompts = task.ablated_prompt_ids(removals)
        if self.batch_size is None or self.batch_size == 1:
            per_mask = task.scorer.ablation_logprobs_chained(full, prompts)
        else:
            per_mask = task.scorer.ablation_logprobs(full, prompts, batch_size=self.batch_size)
        return AblationEffects(masks, np.array(per_mask, dtype=np.float64), full.logprobs, self.alpha)


@dataclass
class AblationEffects(Effects):
    """The ablations, run once: masks and each mask's per-token log-probs of the answer; a
    span's scores are the LASSO fitted to that span's logit-probabilities."""

    masks: np.ndarray  # [M, S] keep-masks
    logprobs: np.ndarray  # [M, r] per-token log-probs of the answer under each mask
    full_logprobs: np.ndarray  # [r]
    alpha: float = 0.01

    def query(self, target: tuple[int, int]) -> MethodOutput:
        a, b = target
        y = logit_prob(self.logprobs[:, a:b].sum(axis=1))
        weights, bias = fit_lasso(self.masks, y, b - a, self.alpha)
        info = {
            "bias": bias,
            "ablations": len(self.masks),
            "full_logit_prob": float(logit_prob(float(np.sum(self.full_logprobs[a:b])))),
        }
        return MethodOutput(weights.astype(np.float64), info)
