//! TLS for the PostgreSQL request log: a tokio-postgres connector on the
//! rustls (aws-lc-rs) the rest of the host uses. The server's certificate
//! is always verified — chain to a trusted root (the platform's, plus
//! `web.request_log.ca_file`) and host name — whatever the `sslmode`;
//! `sslmode` only says whether TLS may be skipped.

use std::future::Future;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{CertificateError, ClientConfig, RootCertStore};
use sha2::Digest;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};

/// The client configuration: the platform's roots (unless `platform` is
/// false) and the certificates of `ca_file`.
pub fn client_config(ca_file: Option<&Path>, platform: bool) -> anyhow::Result<ClientConfig> {
    let mut roots = RootCertStore::empty();
    if platform {
        let native = rustls_native_certs::load_native_certs();
        for e in &native.errors {
            tracing::debug!("request log: a platform root certificate is unreadable: {e}");
        }
        roots.add_parsable_certificates(native.certs);
    }
    if let Some(path) = ca_file {
        let what = || format!("web.request_log.ca_file {}", path.display());
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .and_then(|i| i.collect())
            .map_err(|e| anyhow::anyhow!("{}: {e}", what()))?;
        if certs.is_empty() {
            anyhow::bail!("{}: no PEM certificate in it", what());
        }
        for c in certs {
            roots
                .add(c)
                .map_err(|e| anyhow::anyhow!("{}: not a usable CA certificate: {e}", what()))?;
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Makes a connector per connection; `encrypted` turns true once a
/// handshake succeeded (tokio-postgres says nothing about it).
#[derive(Clone)]
pub struct MakeRustls {
    pub config: Arc<ClientConfig>,
    pub encrypted: Arc<AtomicBool>,
}

pub struct RustlsConnect {
    make: MakeRustls,
    host: String,
    name: ServerName<'static>,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> MakeTlsConnect<S> for MakeRustls {
    type Stream = RustlsStream<S>;
    type TlsConnect = RustlsConnect;
    type Error = io::Error;

    fn make_tls_connect(&mut self, host: &str) -> io::Result<RustlsConnect> {
        let name = ServerName::try_from(host.to_string()).map_err(|e| {
            io::Error::new(io::ErrorKind::InvalidInput, format!("host {host:?}: {e}"))
        })?;
        Ok(RustlsConnect {
            make: self.clone(),
            host: host.to_string(),
            name,
        })
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> TlsConnect<S> for RustlsConnect {
    type Stream = RustlsStream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<RustlsStream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            let connector = tokio_rustls::TlsConnector::from(self.make.config);
            let tls = connector
                .connect(self.name, stream)
                .await
                .map_err(|e| explain(e, &self.host))?;
            self.make.encrypted.store(true, Ordering::Relaxed);
            Ok(RustlsStream(tls))
        })
    }
}

/// A handshake failure in words: untrusted, wrong host, expired.
fn explain(e: io::Error, host: &str) -> io::Error {
    let kind = e.kind();
    let Some(rustls::Error::InvalidCertificate(c)) =
        e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>())
    else {
        return e;
    };
    let text = match c {
        CertificateError::UnknownIssuer => "the server's certificate is not trusted: it is not \
            signed by a platform root certificate nor one in web.request_log.ca_file"
            .to_string(),
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            format!("host name mismatch: the server's certificate is not valid for {host:?}")
        }
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            "the server's certificate has expired".to_string()
        }
        other => format!("the server's certificate is refused: {other:?}"),
    };
    io::Error::new(kind, text)
}

pub struct RustlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> TlsStream for RustlsStream<S> {
    fn channel_binding(&self) -> ChannelBinding {
        let cert = self
            .0
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first());
        match cert.and_then(|c| end_point(c)) {
            Some(hash) => ChannelBinding::tls_server_end_point(hash),
            None => ChannelBinding::none(),
        }
    }
}

/// RFC 5929 `tls-server-end-point`: the certificate hashed with its
/// signature's hash (SHA-256 for MD5 and SHA-1); `None` (no channel binding)
/// for algorithms without one (Ed25519) or not recognised (RSASSA-PSS).
fn end_point(cert: &[u8]) -> Option<Vec<u8>> {
    // Certificate ::= SEQUENCE { tbsCertificate SEQUENCE,
    //     signatureAlgorithm SEQUENCE { algorithm OID, .. }, signature }
    let (body, _) = der(cert, 0x30)?;
    let (_, rest) = der(body, 0x30)?;
    let (alg, _) = der(rest, 0x30)?;
    let (oid, _) = der(alg, 0x06)?;
    const RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01];
    const ECDSA: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04];
    let (prefix, last) = oid.split_at(oid.len().checked_sub(1)?);
    let bits = match (prefix, last[0]) {
        (RSA, 4 | 5 | 11) => 256,
        (RSA, 12) => 384,
        (RSA, 13) => 512,
        (ECDSA, 1) => 256, // ecdsa-with-SHA1
        ([p @ .., 3], n) if p == ECDSA => match n {
            2 => 256,
            3 => 384,
            4 => 512,
            _ => return None,
        },
        _ => return None,
    };
    Some(match bits {
        256 => sha2::Sha256::digest(cert).to_vec(),
        384 => sha2::Sha384::digest(cert).to_vec(),
        _ => sha2::Sha512::digest(cert).to_vec(),
    })
}

/// One DER element of `tag` at the start of `b`: (its contents, what follows).
fn der(b: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    if *b.first()? != tag {
        return None;
    }
    let (len, head) = match *b.get(1)? {
        n if n < 0x80 => (usize::from(n), 2),
        n @ 0x81..=0x84 => {
            let k = usize::from(n - 0x80);
            let len = b
                .get(2..2 + k)?
                .iter()
                .fold(0usize, |a, &x| a << 8 | usize::from(x));
            (len, 2 + k)
        }
        _ => return None,
    };
    let end = head.checked_add(len)?;
    Some((b.get(head..end)?, b.get(end..)?))
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for RustlsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RustlsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_channel_binding_hashes_the_certificate_with_its_signature_hash() {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["db.example".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let der = cert.der().to_vec();
        assert_eq!(end_point(&der), Some(sha2::Sha384::digest(&der).to_vec()));
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["db.example".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        assert_eq!(end_point(cert.der()), None);
        assert_eq!(end_point(b"\x30\x85"), None);
    }
}
