-- Version 4: usage attribution and anomaly detection.
--
-- usage_rollup: one row per hour and (group, principal, issuer, tenant, virtual server,
-- server, method, target) with additive counters, upserted in the same transaction as the
-- audit index rows and cursor, so every journal line is counted exactly once. `grp` is '' on
-- the row that counts a call once; a caller in groups g1 and g2 adds one more row for each
-- group (grp = g1, grp = g2, every other key column ''), which only `--by group` reads.
-- Missing values are '' so that they take part in the primary key. lat_0 … lat_10 are a fixed
-- latency histogram (upper bounds 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000 ms, +inf)
-- for a rough p95.
CREATE TABLE usage_rollup (
    hour           BIGINT NOT NULL,
    grp            TEXT   NOT NULL,
    principal      TEXT   NOT NULL,
    issuer         TEXT   NOT NULL,
    tenant         TEXT   NOT NULL,
    virtual_server TEXT   NOT NULL,
    server         TEXT   NOT NULL,
    method         TEXT   NOT NULL,
    target         TEXT   NOT NULL,
    email          TEXT   NOT NULL,
    calls          BIGINT NOT NULL,
    errors         BIGINT NOT NULL,
    tool_errors    BIGINT NOT NULL,
    denied         BIGINT NOT NULL,
    timed          BIGINT NOT NULL,
    latency_sum_us BIGINT NOT NULL,
    latency_max_us BIGINT NOT NULL,
    request_bytes  BIGINT NOT NULL,
    response_bytes BIGINT NOT NULL,
    tokens         BIGINT NOT NULL,
    lat_0 BIGINT NOT NULL, lat_1 BIGINT NOT NULL, lat_2 BIGINT NOT NULL, lat_3 BIGINT NOT NULL,
    lat_4 BIGINT NOT NULL, lat_5 BIGINT NOT NULL, lat_6 BIGINT NOT NULL, lat_7 BIGINT NOT NULL,
    lat_8 BIGINT NOT NULL, lat_9 BIGINT NOT NULL, lat_10 BIGINT NOT NULL,
    PRIMARY KEY (hour, grp, principal, issuer, tenant, virtual_server, server, method, target)
);

CREATE INDEX usage_rollup_principal ON usage_rollup (principal, hour);
CREATE INDEX usage_rollup_server ON usage_rollup (server, hour);

-- A baseline per user (scope 'user', name = subject) or server (scope 'server'), computed from
-- usage_rollup over the anomaly window before `as_of_hour`. `profile` is 24 comma-separated
-- shares of calls per hour of day (UTC).
CREATE TABLE usage_baseline (
    scope          TEXT             NOT NULL,
    name           TEXT             NOT NULL,
    as_of_hour     BIGINT           NOT NULL,
    first_seen     BIGINT           NOT NULL,
    hours_observed BIGINT           NOT NULL,
    mean_calls     DOUBLE PRECISION NOT NULL,
    stddev_calls   DOUBLE PRECISION NOT NULL,
    mean_tools     DOUBLE PRECISION NOT NULL,
    error_rate     DOUBLE PRECISION NOT NULL,
    profile        TEXT             NOT NULL,
    PRIMARY KEY (scope, name)
);

-- What a principal has been seen with before ('delete_tool' → tool, 'network' → masked
-- source network), for the first-use detectors.
CREATE TABLE anomaly_seen (
    principal  TEXT   NOT NULL,
    kind       TEXT   NOT NULL,
    value      TEXT   NOT NULL,
    first_seen BIGINT NOT NULL,
    PRIMARY KEY (principal, kind, value)
);

-- Which detector fired for which key in which hour: at most one anomaly event each, also
-- across restarts and replicas.
CREATE TABLE anomaly_fired (
    detector TEXT   NOT NULL,
    name     TEXT   NOT NULL,
    hour     BIGINT NOT NULL,
    PRIMARY KEY (detector, name, hour)
);
