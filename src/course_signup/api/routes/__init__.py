"""Thin routes: parse, call one use case, wrap the result in the envelope."""
