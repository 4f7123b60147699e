"""Foundation: argument checks, the config base, walking models, graph copies.

Imports nothing else of tfprune; every other layer builds on it.
"""
