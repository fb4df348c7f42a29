"""Training what methods ship: AT2 head weights (``attribot-rag train-at2``).

A layer above scoring and the methods: the trainer generates answers, masks context and
scores them, then writes a weights file that :mod:`attribot_rag.at2.weights` reads."""
