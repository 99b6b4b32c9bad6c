"""Benchmark of target-tiktok-audiences against meltanolabs-target-csv (see bench/README.md)."""
