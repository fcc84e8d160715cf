//! The listener's TLS: a rustls server configuration (aws-lc-rs, like the rest of the
//! process) from PEM files, offering HTTP/2 and HTTP/1.1 by ALPN.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Why the listener's certificate cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("cannot use certificate {} with key {}: {reason}", cert.display(), key.display())]
pub struct TlsError {
    /// The certificate chain file.
    pub cert: PathBuf,
    /// The private key file.
    pub key: PathBuf,
    /// What went wrong.
    pub reason: String,
}

/// Reads `cert` (a PEM chain, leaf first) and `key` (a PEM private key) into a server
/// configuration that offers `h2` and `http/1.1`.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let fail = |reason: String| TlsError {
        cert: cert.to_path_buf(),
        key: key.to_path_buf(),
        reason,
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| fail(format!("{}: {e}", cert.display())))?;
    if chain.is_empty() {
        return Err(fail(format!("{} holds no certificate", cert.display())));
    }
    let private =
        PrivateKeyDer::from_pem_file(key).map_err(|e| fail(format!("{}: {e}", key.display())))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| fail(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| fail(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_or_empty_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("missing.pem");
        std::fs::write(&cert, "").unwrap();
        let err = server_config(&cert, &key).unwrap_err().to_string();
        assert!(err.contains("holds no certificate"), "{err}");
        std::fs::write(
            &cert,
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let err = server_config(&cert, &key).unwrap_err().to_string();
        assert!(err.contains("missing.pem"), "{err}");
    }
}
