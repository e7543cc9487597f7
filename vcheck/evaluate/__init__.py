"""Turn cached predictions into Measurements (value, interval, n), one module per suite."""
