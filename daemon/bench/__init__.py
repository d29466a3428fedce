"""`anchord bench …`: benchmarks of the daemon's hot paths (timings are machine-dependent)."""
