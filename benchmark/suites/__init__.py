"""Suites: YAML -> typed config (`config`), the runs it expands to (`expand`), the packs they
train in (`plan`) and each run's fingerprint (`fingerprint`)."""
