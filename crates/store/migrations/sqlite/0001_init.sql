-- Version 1: sealed credentials, one row per (principal, server, kind).
CREATE TABLE credentials (
    id          INTEGER PRIMARY KEY,
    issuer      TEXT    NOT NULL,
    subject     TEXT    NOT NULL,
    server      TEXT    NOT NULL,
    kind        TEXT    NOT NULL,
    key_id      TEXT    NOT NULL,
    ciphertext  BLOB    NOT NULL,
    expires_at  INTEGER,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    UNIQUE (issuer, subject, server, kind)
);

CREATE INDEX credentials_expires_at ON credentials (expires_at) WHERE expires_at IS NOT NULL;
