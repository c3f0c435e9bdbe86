"""Tools: throughput benchmarks (`speed`), dry-run cost estimates (`cost`), the GPU check."""
