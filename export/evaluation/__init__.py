"""Evaluation: metrics, the accuracy harness over every method, bundle evaluation, plots.

Nothing in training or serving imports this package; it imports them.
"""
