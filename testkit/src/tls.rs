//! Certificates for TLS tests, made on the spot with rcgen: a `TestCa` issues leaf
//! certificates (`Leaf`) for the names a test serves; they are written as the PEM files the
//! edge's config names (`TlsFiles`), and replaced as operators replace them: a new file
//! written beside the old one, then renamed over it.

use std::path::{Path, PathBuf};

/// A certificate authority of a test's own. Clients trust it by its PEM file (`write`).
pub struct TestCa {
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

impl TestCa {
    /// A new CA (its own key) named `name`.
    pub fn new(name: &str) -> TestCa {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let key = rcgen::KeyPair::generate().expect("CA key");
        TestCa {
            issuer: rcgen::CertifiedIssuer::self_signed(params, key).expect("CA certificate"),
        }
    }

    /// Writes the CA's certificate (PEM) to `path`, for `curl --cacert`.
    pub fn write(&self, path: &Path) -> PathBuf {
        std::fs::write(path, self.issuer.pem()).expect("write the CA certificate");
        path.to_owned()
    }

    /// A leaf certificate and key for `names` (DNS names, or IP addresses such as
    /// `127.0.0.1`), signed by this CA; its common name is the first name.
    pub fn issue(&self, names: &[&str]) -> Leaf {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = rcgen::CertificateParams::new(names.clone()).expect("leaf params");
        params.distinguished_name.push(
            rcgen::DnType::CommonName,
            names.first().cloned().unwrap_or_default(),
        );
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let key = rcgen::KeyPair::generate().expect("leaf key");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("sign the leaf certificate");
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

/// A certificate and its private key, as PEM text.
#[derive(Clone)]
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
}

impl Leaf {
    /// Writes `<dir>/<stem>.pem` and `<dir>/<stem>.key`.
    pub fn write(&self, dir: &Path, stem: &str) -> TlsFiles {
        let files = TlsFiles {
            cert: dir.join(format!("{stem}.pem")),
            key: dir.join(format!("{stem}.key")),
        };
        std::fs::write(&files.cert, &self.cert_pem).expect("write a certificate");
        std::fs::write(&files.key, &self.key_pem).expect("write a key");
        files
    }
}

/// The files of one certificate the edge serves: `cert` and `key` in its `tls.certificates`.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TlsFiles {
    /// Replaces both files with `leaf`'s, the key first, each by a rename.
    pub fn replace_with(&self, leaf: &Leaf) {
        replace_file(&self.key, leaf.key_pem.as_bytes());
        replace_file(&self.cert, leaf.cert_pem.as_bytes());
    }
}

/// Replaces `path` whole: writes the new contents beside it, then renames them over it.
pub fn replace_file(path: &Path, contents: &[u8]) {
    let mut staging = path.as_os_str().to_owned();
    staging.push(".new");
    std::fs::write(&staging, contents).expect("write the new file");
    std::fs::rename(&staging, path).expect("rename the new file over the old");
}
