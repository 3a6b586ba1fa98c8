//! The certificates a TLS listener serves: read from their PEM files, checked, and picked per
//! handshake by the client's SNI. The set in use sits behind a lock as one `Arc`; a reload
//! builds a whole new set and swaps the pointer, so a handshake sees either set, never a mix,
//! and a set that fails to build is never swapped in.

use cdn_config::CertificateFiles;
use parking_lot::RwLock;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

/// Which file of a configured certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Cert,
    Key,
}

impl Part {
    /// Its field name in the config (`cert`, `key`).
    pub fn field(self) -> &'static str {
        match self {
            Part::Cert => "cert",
            Part::Key => "key",
        }
    }
}

/// A configured certificate that cannot be served: which one (its place in
/// `tls.certificates`), which of its files, and why. Never shows key material.
#[derive(Debug, thiserror::Error)]
#[error("`{}` ({}): {kind}", self.field(), path.display())]
pub struct CertError {
    pub index: usize,
    pub part: Part,
    pub path: PathBuf,
    pub kind: CertErrorKind,
}

impl CertError {
    /// The config field at fault, below the tier's section: `tls.certificates[0].key`.
    pub fn field(&self) -> String {
        format!("tls.certificates[{}].{}", self.index, self.part.field())
    }
}

/// Why a certificate or key file cannot be used.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum CertErrorKind {
    #[error("cannot read it: {0}")]
    Read(#[source] std::io::Error),
    #[error("not valid PEM: {0}")]
    Pem(#[source] pem::Error),
    #[error("holds no certificate (a PEM `CERTIFICATE` section)")]
    NoCertificate,
    #[error("holds no private key (a PEM `PRIVATE KEY` section)")]
    NoKey,
    #[error("its first certificate is not a usable X.509 certificate: {0}")]
    BadCertificate(String),
    #[error("the private key cannot be used: {0}")]
    BadKey(#[source] rustls::Error),
    #[error("the private key does not match the certificate in {}", .0.display())]
    KeyMismatch(PathBuf),
}

/// The certificates of one TLS listener, and the resolver rustls asks on every handshake.
#[derive(Debug)]
pub(crate) struct CertStore {
    files: Vec<CertificateFiles>,
    serving: RwLock<Arc<CertSet>>,
}

impl CertStore {
    /// Reads and checks every certificate and key; the first fault is the error.
    pub(crate) fn load(files: &[CertificateFiles]) -> Result<CertStore, CertError> {
        Ok(CertStore {
            files: files.to_vec(),
            serving: RwLock::new(Arc::new(CertSet::load(files)?)),
        })
    }

    /// Reads every file again and, if all of them are good, serves the new set from the next
    /// handshake on. On an error the set in use stays.
    pub(crate) fn reload(&self) -> Result<(), CertError> {
        let fresh = Arc::new(CertSet::load(&self.files)?);
        *self.serving.write() = fresh;
        Ok(())
    }

    pub(crate) fn files(&self) -> &[CertificateFiles] {
        &self.files
    }

    /// The names served, certificate by certificate, for the log: `a.example, *.b.example;
    /// c.example` (the first is also the default).
    pub(crate) fn describe(&self) -> String {
        self.serving
            .read()
            .listed
            .iter()
            .map(|names| match names.is_empty() {
                true => "(no DNS name)".to_owned(),
                false => names.join(", "),
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let set = self.serving.read();
        set.keys.get(set.names.pick(hello.server_name())).cloned()
    }
}

/// One loaded set: each certificate with its key, and who answers which name.
#[derive(Debug)]
struct CertSet {
    keys: Vec<Arc<CertifiedKey>>,
    /// Each certificate's DNS names (subjectAltName), lowercase, as listed.
    listed: Vec<Vec<String>>,
    names: Names,
}

impl CertSet {
    fn load(files: &[CertificateFiles]) -> Result<CertSet, CertError> {
        let mut keys = Vec::with_capacity(files.len());
        let mut listed = Vec::with_capacity(files.len());
        for (index, pair) in files.iter().enumerate() {
            let (key, names) = load_one(index, pair)?;
            keys.push(Arc::new(key));
            listed.push(names);
        }
        let names = Names::new(&listed);
        Ok(CertSet {
            keys,
            listed,
            names,
        })
    }
}

/// Reads one certificate chain and its key, checks that they belong together, and returns
/// them with the DNS names the certificate is for.
fn load_one(
    index: usize,
    files: &CertificateFiles,
) -> Result<(CertifiedKey, Vec<String>), CertError> {
    let fail = |part: Part, kind: CertErrorKind| CertError {
        index,
        part,
        path: match part {
            Part::Cert => files.cert.clone(),
            Part::Key => files.key.clone(),
        },
        kind,
    };
    let cert_pem =
        std::fs::read(&files.cert).map_err(|e| fail(Part::Cert, CertErrorKind::Read(e)))?;
    // Only `CERTIFICATE` sections are taken: a file holding the key as well is fine.
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(Part::Cert, CertErrorKind::Pem(e)))?;
    let leaf = chain
        .first()
        .ok_or_else(|| fail(Part::Cert, CertErrorKind::NoCertificate))?;
    let names = webpki::EndEntityCert::try_from(leaf)
        .map_err(|e| fail(Part::Cert, CertErrorKind::BadCertificate(e.to_string())))?
        .valid_dns_names()
        .map(str::to_ascii_lowercase)
        .collect();

    let key_pem = std::fs::read(&files.key).map_err(|e| fail(Part::Key, CertErrorKind::Read(e)))?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| match e {
        pem::Error::NoItemsFound => fail(Part::Key, CertErrorKind::NoKey),
        e => fail(Part::Key, CertErrorKind::Pem(e)),
    })?;
    // The provider every TLS listener here uses; named, not taken from the process default.
    let provider = rustls::crypto::ring::default_provider();
    let key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| fail(Part::Key, CertErrorKind::BadKey(e)))?;
    let certified = CertifiedKey::new(chain, key);
    match certified.keys_match() {
        Ok(()) => Ok((certified, names)),
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => Err(fail(
            Part::Key,
            CertErrorKind::KeyMismatch(files.cert.clone()),
        )),
        // A key whose public half rustls cannot derive: nothing to compare.
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
            Ok((certified, names))
        }
        Err(e) => Err(fail(
            Part::Cert,
            CertErrorKind::BadCertificate(e.to_string()),
        )),
    }
}

/// Which certificate answers which server name: exact names, then wildcards (`*.example.com`
/// covers `a.example.com`, one label, not `example.com` nor `a.b.example.com`), else the
/// first certificate. A name two certificates list goes to the one listed first.
#[derive(Debug, Default)]
struct Names {
    exact: HashMap<String, usize>,
    /// `example.com` for `*.example.com`.
    wildcard: HashMap<String, usize>,
}

impl Names {
    fn new(listed: &[Vec<String>]) -> Names {
        let mut names = Names::default();
        for (index, list) in listed.iter().enumerate() {
            for name in list {
                let (table, key) = match name.strip_prefix("*.") {
                    Some(parent) => (&mut names.wildcard, parent),
                    None => (&mut names.exact, name.as_str()),
                };
                table.entry(key.to_owned()).or_insert(index);
            }
        }
        names
    }

    /// The index of the certificate for a handshake that asked for `sni`.
    fn pick(&self, sni: Option<&str>) -> usize {
        let Some(sni) = sni else { return 0 };
        let name = sni.trim_end_matches('.').to_ascii_lowercase();
        if let Some(&index) = self.exact.get(&name) {
            return index;
        }
        name.split_once('.')
            .and_then(|(_, parent)| self.wildcard.get(parent))
            .copied()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::Names;

    #[test]
    fn sni_picks_exact_then_wildcard_then_the_first() {
        let names = Names::new(&[
            vec!["a.example".into(), "shared.example".into()],
            vec![
                "b.example".into(),
                "*.b.example".into(),
                "shared.example".into(),
            ],
            vec!["*.example".into()],
        ]);
        let check = |sni: Option<&str>, expected: usize| {
            assert_eq!(names.pick(sni), expected, "{sni:?}");
        };
        check(None, 0);
        check(Some("a.example"), 0);
        check(Some("A.Example."), 0);
        check(Some("b.example"), 1);
        check(Some("x.b.example"), 1);
        check(Some("shared.example"), 0);
        check(Some("other.example"), 2);
        check(Some("x.y.b.example"), 0);
        check(Some("example"), 0);
        check(Some("unknown.test"), 0);
    }
}
