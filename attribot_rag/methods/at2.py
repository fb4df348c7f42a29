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

from typing import Any, Mapping

from ..at2.attention import model_shape
from ..at2.features import capture_info, task_features, token_scores
from ..at2.weights import AT2Weights, resolve_weights, shipped_weights_tag
from .base import AttributionMethod, AttributionTask, Effects, TokenEffects, register_method


@register_method
class AT2(AttributionMethod):
    name = "at2"
    null_floor_key = "at2"  # its floor holds for the weights the calibration ships beside

    def __init__(self, weights: Any = None, check_model: bool = True) -> None:
        self.weights = weights
        self.check_model = check_model
        self._resolved: dict[int, AT2Weights] = {}

    @classmethod
    def cache_identity(cls, options: Mapping[str, Any], model: str | None = None) -> Mapping[str, Any]:
        # the shipped default changes when better weights ship; given weights are in the options
        tag = shipped_weights_tag(model) if model and options.get("weights") is None else None
        return {"at2_weights": tag} if tag else {}

    def _weights(self, task: AttributionTask) -> AT2Weights:
        key = id(task.lm.model)
        if key not in self._resolved:
            self._resolved[key] = resolve_weights(self.weights, task.lm, self.check_model)
        return self._resolved[key]

    def effects(self, task: AttributionTask) -> Effects:
        w = self._weights(task)  # fails early (no forward pass) without weights
        feats = task_features(task)
        info = {"weights": w.metadata.get("path", "given"), "features": int(feats.shape[-1]), **capture_info(task)}
        return TokenEffects(token_scores(feats, w.vector), "mean", info)


@register_method
class AverageAttention(AttributionMethod):
    name = "attention"

    def effects(self, task: AttributionTask) -> Effects:
        layers, heads = model_shape(task.lm.model)
        feats = task_features(task)
        info = {"features": layers * heads, **capture_info(task)}
        return TokenEffects(token_scores(feats, AT2Weights.uniform(layers, heads).vector), "mean", info)
