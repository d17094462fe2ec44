"""Benchmarks that write JSON/CSV under results/ (run through Snakemake targets)."""
