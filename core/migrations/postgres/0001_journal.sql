-- Runs, their step records, and one lock per target: the SQLite journal's schema.
CREATE TABLE runs (
    id          TEXT PRIMARY KEY,
    target      TEXT NOT NULL,
    kind        TEXT NOT NULL,
    plan        TEXT NOT NULL,           -- JSON Plan
    started_ms  BIGINT NOT NULL,
    host        TEXT NOT NULL,
    pid         BIGINT NOT NULL,
    status      TEXT NOT NULL,           -- running | an Outcome name
    ended_ms    BIGINT,                  -- set when the outcome is terminal
    report      TEXT                     -- JSON Report
);
CREATE INDEX runs_by_target ON runs (target, started_ms);

CREATE TABLE entries (
    run_id  TEXT NOT NULL REFERENCES runs (id),
    seq     BIGINT NOT NULL,
    at_ms   BIGINT NOT NULL,
    entry   TEXT NOT NULL,               -- JSON Entry
    PRIMARY KEY (run_id, seq)
);

CREATE TABLE locks (
    target        TEXT PRIMARY KEY,
    run_id        TEXT NOT NULL,
    host          TEXT NOT NULL,
    pid           BIGINT NOT NULL,
    acquired_ms   BIGINT NOT NULL,
    heartbeat_ms  BIGINT NOT NULL
);
