"""Human-readable views of attributions and citations: the HTML page (the terminal table is ``Attribution.table()``)."""
