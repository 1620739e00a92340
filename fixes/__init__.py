"""Fixes, one module per fix (the fix engine issue fills this package)."""
