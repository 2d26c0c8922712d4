"""Helpers for bench/run.py: data sets, servers, peer-tool commands, measurement, reports."""
