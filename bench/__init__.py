"""Benchmarks: scripts that print numbers, run by hand or by the smoke test."""
