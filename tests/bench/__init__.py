"""Tests of the benchmark harness (bench/): it must keep working, whatever the numbers."""
