"""Human-readable views of attributions (terminal tables; HTML pages in later issues)."""
