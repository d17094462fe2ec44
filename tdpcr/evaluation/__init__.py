"""Evaluation: the paper's protocols, Tables I-III, claims and figures.

The metric functions themselves are shared (:mod:`tdpcr.core.metrics`): training validates
with the same code that scores the tables.
"""
