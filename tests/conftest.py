"""Shared test settings: hypothesis runs derandomized, so CI sees the same examples every run."""

from hypothesis import settings

from vcheck.plugin import prefer_passive_openmp

prefer_passive_openmp()  # as the suites do: two xdist workers' torch threads stop spinning

settings.register_profile("vcheck", derandomize=True, deadline=None, database=None)
settings.load_profile("vcheck")
