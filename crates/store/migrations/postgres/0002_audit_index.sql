-- Version 2: the audit journal's query index. One row per journal line, without argument
-- values (those stay in the segment files); audit_cursor says how far each segment is indexed.
CREATE TABLE audit_events (
    instance       TEXT   NOT NULL,
    seq            BIGINT NOT NULL,
    time_us        BIGINT NOT NULL,
    type           TEXT   NOT NULL,
    outcome        TEXT   NOT NULL,
    subject        TEXT,
    email          TEXT,
    issuer         TEXT,
    virtual_server TEXT,
    server         TEXT,
    method         TEXT,
    target         TEXT,
    latency_us     BIGINT,
    segment        TEXT   NOT NULL,
    byte_offset    BIGINT NOT NULL,
    PRIMARY KEY (instance, seq)
);

CREATE INDEX audit_events_time ON audit_events (time_us);
CREATE INDEX audit_events_subject ON audit_events (subject, time_us);
CREATE INDEX audit_events_target ON audit_events (target, time_us);

CREATE TABLE audit_cursor (
    segment     TEXT   PRIMARY KEY,
    byte_offset BIGINT NOT NULL
);
