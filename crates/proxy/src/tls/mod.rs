//! TLS on a tier's TLS listener (the edge's HTTPS), with rustls: which certificate each
//! handshake gets, and reloading the certificates while the tier serves.
//!
//! - `certs.rs`: `CertStore`, the certificates read from their PEM files and checked (the key
//!   matches its certificate), and rustls's `ResolvesServerCert`: the client's SNI picks the
//!   certificate whose own names cover it (exact, then wildcard), the first answers the rest.
//! - `reload.rs`: `Reloader`, the tier's background service that reads the files again on
//!   SIGHUP and when one changes, and swaps the new set in whole.
//!
//! Pingora's own `TlsSettings::build` panics on a bad file; here the files are read and
//! checked when the tier is built, so a bad one is a start-up error, and Pingora is handed
//! only the resolver. A handshake takes the certificate in use at that moment and keeps it:
//! a reload changes what new connections get, never a connection already up.

mod certs;
mod reload;

pub use certs::{CertError, CertErrorKind, Part};
pub(crate) use reload::{Hangup, Reloader};

use cdn_config::TlsConfig;
use certs::CertStore;
use pingora::listeners::tls::TlsSettings;
use pingora::listeners::ALPN;
use reload::Stamps;
use std::sync::Arc;

/// A TLS listener's certificates, read and checked, and the protocols it offers.
pub(crate) struct TlsListener {
    store: Arc<CertStore>,
    /// How the files looked just before they were read.
    stamps: Stamps,
    http2: bool,
}

impl TlsListener {
    pub(crate) fn load(config: &TlsConfig) -> Result<TlsListener, CertError> {
        let stamps = Stamps::take(&config.certificates);
        Ok(TlsListener {
            store: Arc::new(CertStore::load(&config.certificates)?),
            stamps,
            http2: config.http2,
        })
    }

    /// The names served, for the log (see `CertStore::describe`).
    pub(crate) fn describe(&self) -> String {
        self.store.describe()
    }

    /// Pingora's settings for the listener: TLS 1.2 and 1.3 (Pingora's choice with rustls),
    /// ALPN `h2` then `http/1.1`, or `http/1.1` alone; certificates from the store.
    pub(crate) fn settings(&self) -> TlsSettings {
        // With a resolver set, Pingora never reads the (empty) paths given here.
        let mut settings =
            TlsSettings::intermediate("", "").expect("TlsSettings::intermediate does not fail");
        settings.set_cert_resolver(Arc::clone(&self.store) as _);
        if self.http2 {
            settings.enable_h2();
        } else {
            settings.set_alpn(ALPN::H1);
        }
        settings
    }
}
