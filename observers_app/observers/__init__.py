"""Observers added, counted, inspected, re-enabled and removed (with a record of why each went)."""
