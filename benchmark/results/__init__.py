"""One strict-JSON record per run, finished or failed, written atomically; the suite resumes
from them. A record is the only thing the leaderboard reads.

By job: `schema` (the keys, their types and ranges: the schema is documented there),
`store` (write, read, status, load a folder), `migrate` (older records as the current schema
sees them), `provenance` (versions, git commit, device, environment) and `build` (a finished or
failed run's record from its RunSpec). Every name is also here, as `benchmark.results.X`.
"""

from benchmark.results.build import failed_record, make_record, one_line
from benchmark.results.migrate import RENAMED, normalise, renamed
from benchmark.results.provenance import (
    GENERATED,
    device_name,
    environment,
    git_commit,
    utc_date,
    versions,
)
from benchmark.results.schema import (
    COUNT,
    FAILED,
    FINISHED,
    FRACTION,
    PERCENT,
    RANGES,
    READABLE_SCHEMAS,
    REQUIRED,
    ROBUSTNESS_FRACTIONS,
    ROBUSTNESS_PLACEMENTS,
    ROBUSTNESS_SEED,
    SCHEMA,
    STATUSES,
    is_record_like,
    non_finite,
    record_problem,
    robustness_problem,
    strict,
    value_problem,
)
from benchmark.results.store import (
    NotARecord,
    is_finished,
    load_records,
    read_record,
    record_path,
    set_aside_damaged,
    status,
    write_record,
)

__all__ = ["COUNT", "FAILED", "FINISHED", "FRACTION", "GENERATED", "PERCENT", "RANGES",
           "READABLE_SCHEMAS", "RENAMED", "REQUIRED", "ROBUSTNESS_FRACTIONS",
           "ROBUSTNESS_PLACEMENTS", "ROBUSTNESS_SEED", "SCHEMA", "STATUSES", "device_name",
           "environment", "failed_record", "git_commit", "is_finished", "is_record_like",
           "load_records", "make_record", "non_finite", "normalise", "one_line", "read_record",
           "record_path", "record_problem", "renamed", "robustness_problem", "set_aside_damaged",
           "status", "strict", "utc_date",
           "value_problem", "versions", "write_record", "NotARecord"]
