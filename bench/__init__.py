"""Benchmark harness: bzzlite against the servers a user would otherwise write by hand."""
