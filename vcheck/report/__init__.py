"""Run outputs: the metrics.json document (versioned schema) and the HTML report rendered
from it. Nothing here imports pytest, so reports can be rebuilt from a metrics.json alone.
"""
