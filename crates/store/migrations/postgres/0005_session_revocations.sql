-- Version 5: revoked handshake-era sessions. A session id is sealed, so any replica (or this
-- one after a restart) could open it again; a session its client ended with DELETE is kept
-- here until it would have expired anyway, so no process accepts it again. Only a SHA-256
-- digest of the id is stored: the id itself is a credential.
-- revoked_at comes from the database's clock (one clock for every replica): a replica's
-- cursor only passes rows old enough that no insert holding a lower seq can still commit.
CREATE TABLE session_revocations (
    seq        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    digest     BYTEA  NOT NULL UNIQUE,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT NOT NULL DEFAULT (EXTRACT(EPOCH FROM clock_timestamp())::BIGINT)
);

CREATE INDEX session_revocations_expires ON session_revocations (expires_at);
