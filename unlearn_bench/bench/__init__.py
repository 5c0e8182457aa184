"""Measurements of the suite's speed (results/bench): `unlearn-bench-bench`."""
