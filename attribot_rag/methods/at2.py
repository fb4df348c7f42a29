"""AT2 (learned attention-head weights) and its uniform special case, average attention.

``at2``: score(s) = mean over the target's tokens t of w . f_s(t), with f_s(t)[l, h] the
attention from the position predicting t to the tokens of s (recomputed per layer, see
:mod:`attribot_rag.at2.attention`) and w one weight per (layer, head). Options:
``weights`` (a path to a weights file, an :class:`~attribot_rag.at2.weights.AT2Weights`
or a [L, H] array; default: the weights shipped for the model name, else an error that
says how to train them) and ``check_model`` (refuse weights made for another model name).

``attention``: the same features with w = 1 / (L * H).
"""

from __future__ import annotations

from typing import Any

from ..at2.attention import model_shape
from ..at2.features import capture_info, span_scores, task_features
from ..at2.weights import AT2Weights, resolve_weights
from .base import AttributionMethod, AttributionTask, MethodOutput, register_method


@register_method
class AT2(AttributionMethod):
    name = "at2"

    def __init__(self, weights: Any = None, check_model: bool = True) -> None:
        self.weights = weights
        self.check_model = check_model
        self._resolved: dict[int, AT2Weights] = {}

    def _weights(self, task: AttributionTask) -> AT2Weights:
        key = id(task.lm.model)
        if key not in self._resolved:
            self._resolved[key] = resolve_weights(self.weights, task.lm, self.check_model)
        return self._resolved[key]

    def score(self, task: AttributionTask) -> MethodOutput:
        w = self._weights(task)  # fails early (no forward pass) without weights
        feats = task_features(task)
        scores = span_scores(feats, w.vector, task.target)
        info = {
            "weights": w.metadata.get("path", "given"),
            "features": int(feats.shape[-1]),
            **capture_info(task),
        }
        return MethodOutput(scores, info)


@register_method
class AverageAttention(AttributionMethod):
    name = "attention"

    def score(self, task: AttributionTask) -> MethodOutput:
        layers, heads = model_shape(task.lm.model)
        w = AT2Weights.uniform(layers, heads)
        feats = task_features(task)
        info = {"features": layers * heads, **capture_info(task)}
        return MethodOutput(span_scores(feats, w.vector, task.target), info)
