"""Keeps `pytest suites/` working from a plain checkout.

When vcheck is pip-installed the plugin arrives through its `pytest11` entry point, registered
under the name "vcheck.plugin"; pytest then sees the name below as already loaded.
"""

pytest_plugins = ["vcheck.plugin"]
