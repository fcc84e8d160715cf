-- Version 3: audit sinks. Each sink ships the journal from its own cursor (how far each
-- segment file is delivered), so an outage of one receiver holds back only that receiver;
-- audit_sink_status is what `gatehouse audit sinks` shows.
CREATE TABLE audit_sink_cursor (
    sink        TEXT   NOT NULL,
    segment     TEXT   NOT NULL,
    byte_offset BIGINT NOT NULL,
    PRIMARY KEY (sink, segment)
);

CREATE TABLE audit_sink_status (
    sink           TEXT   PRIMARY KEY,
    delivered      BIGINT NOT NULL,
    rejected       BIGINT NOT NULL,
    last_delivery  BIGINT,
    last_error     TEXT,
    last_error_at  BIGINT,
    failing_since  BIGINT
);
