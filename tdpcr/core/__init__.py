"""The shared layer: what every stage needs and nothing stage-specific.

Piece specifications, band and class names, palette and metric names (:mod:`.specs`); errors
(:mod:`.errors`); atomic outputs (:mod:`.io`); the config schema and its defaults
(:mod:`.config`); device, threads and CPU memory (:mod:`.runtime`); checkpoints
(:mod:`.checkpoint`); the metric functions (:mod:`.metrics`); display helpers
(:mod:`.rendering`); the paper's reported figures (:mod:`.paper`).

It imports no stage (``tdpcr.data``, ``models``, ``training``, ``evaluation``, ``prediction``,
``benchmarks``, ``cli``); ``tests/test_architecture.py`` checks that.
"""
