"""Speed benchmarks behind ``radtex-bench bench ...``; each prints one JSON line."""
