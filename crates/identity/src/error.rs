//! Errors of the identity layer.

/// A failure to set up or reach identity infrastructure (not a caller's bad token: that is an
/// [`AuthFailure`](crate::AuthFailure)).
#[derive(Debug, Clone, thiserror::Error)]
pub enum IdentityError {
    /// The configuration cannot work (bad URL, unreadable secret).
    #[error("identity configuration: {reason}")]
    Config {
        /// What is wrong.
        reason: String,
    },
    /// The IdP, JWKS or token endpoint could not be reached or answered nonsense.
    #[error("{reason}")]
    Unavailable {
        /// What happened.
        reason: String,
    },
}

/// Why an outbound credential could not be obtained. The call fails; the caller's own token is
/// never sent instead.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CredentialError {
    /// The token endpoint could not be reached.
    #[error("the token endpoint of server {server} is unreachable: {reason}")]
    Unavailable {
        /// The upstream server the credential is for.
        server: String,
        /// What happened.
        reason: String,
    },
    /// The authorization server refused the request.
    #[error("the authorization server refused a credential for server {server}: {error}{}", description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Refused {
        /// The upstream server the credential is for.
        server: String,
        /// The OAuth error code.
        error: String,
        /// The server's explanation.
        description: Option<String>,
    },
    /// The credential needs an authenticated caller and there is none.
    #[error("server {server} acts for the calling user, but the caller is not authenticated")]
    NoUser {
        /// The upstream server.
        server: String,
    },
    /// The user has not (or no longer) authorized Gatehouse at the server's authorization server.
    #[error("authorization required for server {server}: open {url}")]
    AuthorizationRequired {
        /// The upstream server.
        server: String,
        /// Where the user authorizes.
        url: String,
    },
    /// The vault could not be read or written.
    #[error("credential vault: {reason}")]
    Vault {
        /// What happened.
        reason: String,
    },
}
