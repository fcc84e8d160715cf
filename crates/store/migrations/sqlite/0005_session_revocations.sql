-- Version 5: revoked handshake-era sessions. A session id is sealed, so any replica (or this
-- one after a restart) could open it again; a session its client ended with DELETE is kept
-- here until it would have expired anyway, so no process accepts it again. Only a SHA-256
-- digest of the id is stored: the id itself is a credential.
-- AUTOINCREMENT: seq values are never reused after pruning, so a replica's cursor cannot
-- skip a new row that took the number of a pruned one.
CREATE TABLE session_revocations (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    digest     BLOB    NOT NULL UNIQUE,
    expires_at INTEGER NOT NULL,
    revoked_at INTEGER NOT NULL DEFAULT (CAST(strftime('%s', 'now') AS INTEGER))
);

CREATE INDEX session_revocations_expires ON session_revocations (expires_at);
