"""Exact leave-one-out: score(s) = LL(C) - LL(C without s) over the target span.

Both keep the effect of removing each source on every answer token, so any span's score
is a sum of a slice. ``loo`` reuses the full prompt's KV cache up to each ablation's
common token prefix and runs the ablations in batches (:meth:`AttributionTask.loo_rows`);
``loo-naive`` is the reference: every ablated prompt gets its own full forward pass,
batch size 1, no cache. Both give the same scores (to float precision); ``loo`` feeds far
fewer tokens through the model.
"""

from __future__ import annotations

import numpy as np

from .base import AttributionMethod, AttributionTask, Effects, TokenEffects, register_method


@register_method
class LeaveOneOut(AttributionMethod):
    name = "loo"
    score_unit = "nats"  # log-probability changes summed over the span
    null_floor_key = "nats_per_token"

    def __init__(self, batch_size: int | None = None) -> None:
        self.batch_size = batch_size

    def effects(self, task: AttributionTask) -> Effects:
        rows = task.loo_rows([s.index for s in task.sources], batch_size=self.batch_size)
        return TokenEffects(rows, "sum", full_logprobs=task.full_pass().logprobs)


@register_method
class NaiveLeaveOneOut(AttributionMethod):
    name = "loo-naive"
    score_unit = "nats"  # log-probability changes summed over the span
    null_floor_key = "nats_per_token"

    def effects(self, task: AttributionTask) -> Effects:
        full_lp = task.scorer.logprobs(task.prompt.input_ids, task.response.token_ids)
        rows = [
            full_lp - task.scorer.logprobs(task.render([s.index]).input_ids, task.response.token_ids)
            for s in task.sources
        ]
        per_token = np.array(rows, dtype=np.float64).reshape(len(task.sources), len(task.response))
        return TokenEffects(per_token, "sum", full_logprobs=full_lp)
