"""Shared test settings: hypothesis runs derandomized, so CI sees the same examples every run."""

from hypothesis import settings

settings.register_profile("vcheck", derandomize=True, deadline=None, database=None)
settings.load_profile("vcheck")
