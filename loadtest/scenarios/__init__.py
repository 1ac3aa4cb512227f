"""Locust scenarios for course-signup: seed, rush and browse (entry point: loadtest/locustfile.py)."""
