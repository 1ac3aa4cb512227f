"""Use cases: each opens a unit of work, applies the rules, commits, then touches the cache."""
