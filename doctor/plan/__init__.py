"""Decisions derived from the facts and shared by checks, launch and fixes: where the model goes,
how fast it runs, which CPUs run it.
"""
