"""Changing the host safely: the fix targets, the plan, the engine that applies, verifies and
reverts, the journal and drop-in files.
"""
