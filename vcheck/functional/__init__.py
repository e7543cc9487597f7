"""Pure metric functions on numpy arrays; no pytest, no torch."""
