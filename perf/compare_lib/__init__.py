"""perf/compare's code, one module per part (perf/compare lists them)."""
