"""The results store's schema: its tables, its version and the steps between versions.

Version 2 added ``fingerprints``, version 3 ``claims``, version 4 the ``statistics`` column of
``results`` and ``flags`` (which test-time statistics a row was measured under; ``running`` for
every row before it). A store of an older version is upgraded
when opened for writing and read as it is when opened read-only (store.py).
"""

SCHEMA_VERSION = 4

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    suite TEXT NOT NULL,
    suite_hash TEXT NOT NULL,
    suite_toml TEXT NOT NULL,
    status TEXT NOT NULL,
    started TEXT NOT NULL,
    finished TEXT,
    provenance TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY,
    key TEXT NOT NULL,
    run_id INTEGER NOT NULL REFERENCES runs(id),
    spec TEXT NOT NULL,
    model TEXT NOT NULL,
    norm TEXT NOT NULL,
    batch_size INTEGER NOT NULL,
    seed INTEGER NOT NULL,
    regularizer TEXT NOT NULL,
    status TEXT NOT NULL,
    error TEXT,
    checkpoint TEXT,
    train_log TEXT,
    stability TEXT,
    warnings TEXT,
    wall_seconds REAL,
    created TEXT NOT NULL,
    updated TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_key ON jobs(key, status);
CREATE TABLE IF NOT EXISTS run_jobs (
    run_id INTEGER NOT NULL REFERENCES runs(id),
    key TEXT NOT NULL,
    job_id INTEGER NOT NULL REFERENCES jobs(id),
    PRIMARY KEY (run_id, key)
);
CREATE TABLE IF NOT EXISTS results (
    job_id INTEGER NOT NULL REFERENCES jobs(id),
    family TEXT NOT NULL,
    name TEXT NOT NULL,
    parameter REAL,
    metric TEXT NOT NULL,
    value REAL,
    statistics TEXT NOT NULL DEFAULT 'running'
);
CREATE INDEX IF NOT EXISTS results_job ON results(job_id);
CREATE TABLE IF NOT EXISTS flags (
    job_id INTEGER NOT NULL REFERENCES jobs(id),
    family TEXT NOT NULL,
    name TEXT NOT NULL,
    parameter REAL,
    count INTEGER NOT NULL,
    correct BLOB NOT NULL,
    statistics TEXT NOT NULL DEFAULT 'running'
);
CREATE INDEX IF NOT EXISTS flags_job ON flags(job_id);
"""
FINGERPRINTS_TABLE = """CREATE TABLE IF NOT EXISTS fingerprints (
    run_id INTEGER NOT NULL REFERENCES runs(id),
    label TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    PRIMARY KEY (run_id, label)
)"""
#: which process is computing which job key (job_claims.py): two runs sharing a store never
#: compute the same job twice
CLAIMS_TABLE = """CREATE TABLE IF NOT EXISTS claims (
    key TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    heartbeat REAL NOT NULL
)"""
SCHEMA += FINGERPRINTS_TABLE + ";\n" + CLAIMS_TABLE + ";"

#: schema version → the statements that bring a store of that version to the next one
MIGRATIONS = {
    1: (FINGERPRINTS_TABLE,),
    2: (CLAIMS_TABLE,),
    3: tuple(
        f"ALTER TABLE {table} ADD COLUMN statistics TEXT NOT NULL DEFAULT 'running'"
        for table in ("results", "flags")
    ),
}
