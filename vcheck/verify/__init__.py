"""Verifiers and bounds: auto_LiRPA adapters (IBP, CROWN, alpha-CROWN) on plain torch networks."""
