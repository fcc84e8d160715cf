-- Version 1: sealed credentials, one row per (principal, server, kind).
CREATE TABLE credentials (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    issuer      TEXT   NOT NULL,
    subject     TEXT   NOT NULL,
    server      TEXT   NOT NULL,
    kind        TEXT   NOT NULL,
    key_id      TEXT   NOT NULL,
    ciphertext  BYTEA  NOT NULL,
    expires_at  BIGINT,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    UNIQUE (issuer, subject, server, kind)
);

CREATE INDEX credentials_expires_at ON credentials (expires_at) WHERE expires_at IS NOT NULL;
