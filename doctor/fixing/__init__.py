"""Changing the host safely: targets.py (what a change acts on), plan.py (fixes and their
plan), engine.py (apply, verify, revert), persist.py and sysctl.py (boot-time files, the
generic sysctl fix), journal.py (the write-ahead journal), dropins.py (which file wins).
"""
