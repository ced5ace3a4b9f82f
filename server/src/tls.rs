//! HTTPS (`--tls-cert`, `--tls-key`): the rustls (ring) configuration the listener puts in
//! front of the same router, HTTP/1.1 only. Nothing Dragonfly serves gains from HTTP/2, and
//! leaving it out keeps an HTTP/2 stack out of the binary.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Reads a PEM certificate chain and private key into a server configuration.
pub fn load(cert: &Path, key: &Path) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let what = || {
        format!(
            "cannot load --tls-cert {} / --tls-key {}",
            cert.display(),
            key.display()
        )
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("{}: the certificate", what()))?;
    anyhow::ensure!(!chain.is_empty(), "{}: no certificate in the file", what());
    let key = PrivateKeyDer::from_pem_file(key).with_context(|| format!("{}: the key", what()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .with_context(what)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
