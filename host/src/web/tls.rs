//! HTTPS: rustls on the aws-lc-rs provider, certificate chain and key from
//! PEM files (`[web.tls]`), HTTP/1.1 over ALPN.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::plan::TlsPlan;

pub fn acceptor(plan: &TlsPlan) -> anyhow::Result<TlsAcceptor> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&plan.cert)
        .and_then(|i| i.collect())
        .map_err(|e| anyhow::anyhow!("web.tls.cert {}: {e}", plan.cert.display()))?;
    if certs.is_empty() {
        anyhow::bail!(
            "web.tls.cert {}: no PEM certificate in it",
            plan.cert.display()
        );
    }
    let key = PrivateKeyDer::from_pem_file(&plan.key)
        .map_err(|e| anyhow::anyhow!("web.tls.key {}: {e}", plan.key.display()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            anyhow::anyhow!(
                "web.tls: {} and {} do not make a usable pair: {e}",
                plan.cert.display(),
                plan.key.display()
            )
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
