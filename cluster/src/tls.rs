//! TLS for the cluster transport (mutual: both nodes present a certificate that chains to the
//! cluster's CA, and check the other's) and the PEM loading the admin plane's TLS shares.
//!
//! Everything runs on rustls' `ring` provider. The binary also links aws-lc-rs (reqwest's
//! choice), so rustls cannot pick a process default by itself: the transport's configs name
//! their provider, and [`install_crypto_provider`] makes ring the default for tonic, whose server
//! asks for the default.

use std::sync::Arc;

use tokio_rustls::rustls::crypto::{CryptoProvider, ring};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// Which of the PEM inputs a [`TlsError`] is about, so the caller can name its setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsInput {
    /// This side's certificate chain (leaf first).
    CertificateChain,
    /// This side's private key.
    PrivateKey,
    /// The CA bundle the other side's certificate must chain to.
    CaBundle,
}

/// A TLS setting that cannot be used: the operator's to fix, never retryable.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct TlsError {
    pub input: TlsInput,
    pub message: String,
}

impl TlsError {
    fn new(input: TlsInput, message: impl Into<String>) -> Self {
        Self { input, message: message.into() }
    }
}

/// Makes ring the process's default rustls provider (tonic's TLS server asks for the default).
/// Idempotent; a default installed earlier is kept.
pub fn install_crypto_provider() {
    let _ = ring::default_provider().install_default();
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

/// Every certificate of a PEM bundle, in order; at least one.
pub(crate) fn certificates(pem: &[u8], input: TlsInput) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::new(input, format!("not a PEM certificate bundle: {e}")))?;
    if certs.is_empty() {
        return Err(TlsError::new(input, "no PEM certificate (-----BEGIN CERTIFICATE-----) found"));
    }
    Ok(certs)
}

/// The first private key of a PEM file (PKCS#8, PKCS#1 or SEC1).
pub(crate) fn private_key(pem: &[u8]) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem)
        .map_err(|e| TlsError::new(TlsInput::PrivateKey, format!("no usable PEM private key: {e}")))
}

/// The trust anchors of a PEM CA bundle; every certificate in it must be usable as one.
pub(crate) fn roots(pem: &[u8]) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(pem, TlsInput::CaBundle)? {
        roots.add(cert).map_err(|e| TlsError::new(TlsInput::CaBundle, format!("not a usable CA certificate: {e}")))?;
    }
    Ok(roots)
}

/// The transport's TLS: the acceptor of its listener and the connector of its outgoing
/// connections, both requiring the peer's certificate to chain to the cluster's CA. Cheap to
/// clone.
#[derive(Clone)]
pub struct TransportTls {
    acceptor: TlsAcceptor,
    connector: TlsConnector,
}

impl std::fmt::Debug for TransportTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransportTls").finish_non_exhaustive()
    }
}

impl TransportTls {
    /// From this node's certificate chain and key and the cluster's CA bundle, all PEM.
    pub fn from_pem(cert_chain: &[u8], key: &[u8], ca: &[u8]) -> Result<Self, TlsError> {
        let chain = certificates(cert_chain, TlsInput::CertificateChain)?;
        let key = private_key(key)?;
        let roots = Arc::new(roots(ca)?);
        let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
            .build()
            .map_err(|e| TlsError::new(TlsInput::CaBundle, e.to_string()))?;
        let key_mismatch = |e: tokio_rustls::rustls::Error| {
            TlsError::new(TlsInput::PrivateKey, format!("does not go with the certificate chain: {e}"))
        };
        let server = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::new(TlsInput::CertificateChain, e.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(key_mismatch)?;
        let client = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::new(TlsInput::CertificateChain, e.to_string()))?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(key_mismatch)?;
        Ok(Self { acceptor: TlsAcceptor::from(Arc::new(server)), connector: TlsConnector::from(Arc::new(client)) })
    }

    pub(crate) fn acceptor(&self) -> TlsAcceptor {
        self.acceptor.clone()
    }

    pub(crate) fn connector(&self) -> TlsConnector {
        self.connector.clone()
    }
}

/// The name a peer's certificate must carry, from the `host:port` it is reached at: the IP
/// address (an `IP:` SAN) or the host name (a `DNS:` SAN). `[::1]:7400` is an IPv6 address.
pub(crate) fn server_name(addr: &str) -> Option<ServerName<'static>> {
    let host = match addr.parse::<std::net::SocketAddr>() {
        Ok(socket) => return Some(ServerName::IpAddress(socket.ip().into())),
        Err(_) => addr.rsplit_once(':').map_or(addr, |(host, _)| host),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_owned()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names_come_from_the_host_part() {
        assert_eq!(
            server_name("127.0.0.1:7400"),
            Some(ServerName::IpAddress("127.0.0.1".parse::<std::net::IpAddr>().map(Into::into).expect("ip")))
        );
        assert_eq!(
            server_name("[::1]:7400"),
            Some(ServerName::IpAddress("::1".parse::<std::net::IpAddr>().map(Into::into).expect("ip")))
        );
        assert_eq!(
            server_name("node-2.internal:7400"),
            ServerName::try_from("node-2.internal").ok().map(|n| n.to_owned())
        );
        assert_eq!(server_name("bad host:7400"), None);
    }

    #[test]
    fn garbage_is_named_by_its_input() {
        let e = TransportTls::from_pem(b"nope", b"nope", b"nope").expect_err("not PEM");
        assert_eq!(e.input, TlsInput::CertificateChain);
        assert!(roots(b"").is_err_and(|e| e.input == TlsInput::CaBundle));
        assert!(private_key(b"-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n").is_err());
    }
}
