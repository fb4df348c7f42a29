"""AT2: attention-row features without the N x N matrix, learned per-head weights, trainer."""
