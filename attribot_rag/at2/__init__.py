"""AT2: attention-row features without the N x N matrix, learned per-head weights.

* :mod:`.attention` -- per-layer recomputation of the response's attention rows (family adapters)
* :mod:`.capture` -- the same inputs captured during generation (no extra forward pass)
* :mod:`.features` -- features of an attribution task, scores of a target span
* :mod:`.weights` -- the weights file (safetensors + JSON header), shipped defaults

The trainer (``attribot-rag train-at2``) sits a layer above, in :mod:`attribot_rag.training.at2`.
"""

from .weights import AT2Weights, default_weights_path, load_default_weights, resolve_weights

__all__ = ["AT2Weights", "default_weights_path", "load_default_weights", "resolve_weights"]
