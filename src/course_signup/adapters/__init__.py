"""Adapters at the edge: database, cache, tokens, rate limits, metrics."""
