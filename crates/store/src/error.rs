//! The errors of the store, and the redaction of database URLs for them.

/// Everything that can go wrong opening or using a [`Store`](crate::Store).
///
/// No variant panics the caller: a database that went away mid-operation surfaces as
/// [`StoreError::Query`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The URL names no supported database (`sqlite://`, `postgres://`, `postgresql://`).
    #[error(
        "unsupported database URL {url}: expected sqlite://PATH, postgres://… or postgresql://…"
    )]
    UnsupportedUrl {
        /// The URL with any password replaced by `***`.
        url: String,
    },
    /// The database could not be reached or opened.
    #[error("cannot connect to database {url}: {source}")]
    Connect {
        /// The URL with any password replaced by `***`.
        url: String,
        /// What sqlx reported.
        #[source]
        source: sqlx::Error,
    },
    /// A migration failed; its transaction was rolled back, so the schema is unchanged.
    #[error("database migration {version} ({name}) failed: {source}")]
    Migration {
        /// Version of the failed migration.
        version: i64,
        /// Name of the failed migration.
        name: &'static str,
        /// What the database reported.
        #[source]
        source: sqlx::Error,
    },
    /// The database was migrated by a newer Gatehouse; this binary refuses to touch it.
    #[error(
        "database schema version {found} is newer than this gatehouse binary supports \
         ({supported}); upgrade gatehouse or use another database"
    )]
    SchemaTooNew {
        /// Highest version recorded in the database.
        found: i64,
        /// Highest version this binary knows ([`SCHEMA_VERSION`](crate::SCHEMA_VERSION)).
        supported: i64,
    },
    /// A query failed (including a connection lost or a closed store).
    #[error("database query failed: {0}")]
    Query(#[source] sqlx::Error),
    /// A row holds a value no Gatehouse writes (edited by hand, or another program's table).
    #[error("unreadable row in the database: {what}")]
    Corrupt {
        /// Which row and what is wrong with it.
        what: String,
    },
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::Query(e)
    }
}

/// Returns `url` with its password (in the user info or a `password=` query parameter)
/// replaced by `***`, for error messages and logs.
pub fn redact_url(url: &str) -> String {
    if let Ok(mut parsed) = url::Url::parse(url) {
        if parsed.password().is_some() {
            // Cannot fail: a URL with a password has a host.
            let _ = parsed.set_password(Some("***"));
        }
        if parsed.query_pairs().any(|(k, _)| k == "password") {
            let pairs: Vec<(String, String)> = parsed
                .query_pairs()
                .map(|(k, v)| {
                    let v = if k == "password" {
                        "***".into()
                    } else {
                        v.into_owned()
                    };
                    (k.into_owned(), v)
                })
                .collect();
            parsed.query_pairs_mut().clear().extend_pairs(pairs);
        }
        return parsed.to_string();
    }
    // Unparseable: keep scheme, host and path, drop any user info and query.
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let rest = rest.split('?').next().unwrap_or_default();
    let rest = match rest.split_once('/') {
        Some((authority, path)) => {
            let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            format!("{host}/{path}")
        }
        None => rest.rsplit_once('@').map_or(rest, |(_, h)| h).to_owned(),
    };
    if scheme.is_empty() {
        rest
    } else {
        format!("{scheme}://{rest}")
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(
            redact_url("postgres://gh:s3cret@db.internal:5432/gatehouse"),
            "postgres://gh:***@db.internal:5432/gatehouse"
        );
        assert_eq!(
            redact_url("postgresql://db/gh?user=gh&password=s3cret"),
            "postgresql://db/gh?user=gh&password=***"
        );
        assert_eq!(redact_url("postgres://gh@db/gh"), "postgres://gh@db/gh");
        assert_eq!(
            redact_url("sqlite:///var/lib/gh.db"),
            "sqlite:///var/lib/gh.db"
        );
        assert!(!redact_url("postgres://u:s3cret@[bad/db").contains("s3cret"));
    }
}
