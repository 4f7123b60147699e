"""Runnable tfprune examples on real data (see examples/README or each module).

The package form lets tests import them: `from examples import datasets`.
"""
