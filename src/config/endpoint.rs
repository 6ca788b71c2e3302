//! A side's connection settings: its URL and its TLS settings (the MySQL client's `--ssl-mode`:
//! `ssl_mode`, `ssl_ca`, `ssl_cert`, `ssl_key`), resolved and with their files checked when the config
//! loads, so a bad file is a config error that names the key. Connecting with them is
//! [`crate::mysql::tls`]'s.

use crate::error::{Error, Result, Side};
use mysql_async::Opts;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use std::fmt;
use std::path::{Path, PathBuf};

/// A database connection and its TLS settings ([`crate::mysql::tls`]); `Debug` hides the password.
#[derive(Deserialize, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    #[serde(default)]
    pub url: String,
    /// The MySQL client's `--ssl-mode`; unset: `verify_ca` with `ssl_ca`, else `preferred`.
    #[serde(default)]
    pub ssl_mode: Option<SslMode>,
    /// PEM file (or bundle) of the CA that issued the server's certificate.
    #[serde(default)]
    pub ssl_ca: Option<PathBuf>,
    /// PEM client certificate (chain), for accounts that require X509.
    #[serde(default)]
    pub ssl_cert: Option<PathBuf>,
    /// PEM private key of `ssl_cert`.
    #[serde(default)]
    pub ssl_key: Option<PathBuf>,
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("url", &redact_url(&self.url))
            .field("ssl_mode", &self.ssl_mode)
            .field("ssl_ca", &self.ssl_ca)
            .field("ssl_cert", &self.ssl_cert)
            .field("ssl_key", &self.ssl_key)
            .finish()
    }
}

/// `mysql://user:secret@host/db` → `mysql://user:***@host/db`.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_string();
    };
    let rest = &url[scheme_end..];
    let Some(at) = rest.rfind('@') else {
        return url.to_string();
    };
    match rest[..at].find(':') {
        Some(colon) => format!("{}{}:***{}", &url[..scheme_end], &rest[..colon], &rest[at..]),
        None => url.to_string(),
    }
}

/// The MySQL client's `--ssl-mode` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SslMode {
    Disabled,
    Preferred,
    Required,
    VerifyCa,
    VerifyIdentity,
}

impl SslMode {
    pub const ALL: [SslMode; 5] =
        [SslMode::Disabled, SslMode::Preferred, SslMode::Required, SslMode::VerifyCa, SslMode::VerifyIdentity];

    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disabled => "disabled",
            SslMode::Preferred => "preferred",
            SslMode::Required => "required",
            SslMode::VerifyCa => "verify_ca",
            SslMode::VerifyIdentity => "verify_identity",
        }
    }

    /// Whether the server certificate is checked against a CA.
    pub fn verifies(self) -> bool {
        matches!(self, SslMode::VerifyCa | SslMode::VerifyIdentity)
    }
}

impl std::fmt::Display for SslMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for SslMode {
    type Err = String;
    /// Accepts the MySQL client's spellings too (`VERIFY_IDENTITY`, `verify-ca`).
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let norm = s.trim().to_ascii_lowercase().replace('-', "_");
        SslMode::ALL.into_iter().find(|m| m.as_str() == norm).ok_or_else(|| {
            format!(
                "`{s}` is not an ssl_mode; use one of {}",
                SslMode::ALL.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(", ")
            )
        })
    }
}

impl<'de> serde::Deserialize<'de> for SslMode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// URL parameters through which mysql_async sets TLS itself.
const URL_TLS_PARAMS: &[&str] = &["require_ssl", "verify_ca", "verify_identity", "built_in_roots"];

/// One side's resolved TLS settings, its files checked.
#[derive(Clone, Debug)]
pub struct Tls {
    pub mode: SslMode,
    /// The CA file the verify modes trust; `None`: the built-in public roots.
    pub ca: Option<PathBuf>,
    /// Client certificate (chain) and key files.
    pub identity: Option<(PathBuf, PathBuf)>,
    /// TLS comes from the URL's own parameters and is used as they set it.
    pub from_url: bool,
}

impl Tls {
    /// Resolves a side's settings and checks the files: unreadable or malformed is a config error naming
    /// the key. Never puts file content in a message.
    pub fn resolve(side: Side, ep: &Endpoint) -> Result<Tls> {
        let opts = Opts::from_url(&ep.url).map_err(|e| {
            Error::Config(format!("{side}.url ({}) is not a valid MySQL URL: {e}", redact_url(&ep.url)))
        })?;
        let any_key = ep.ssl_mode.is_some() || ep.ssl_ca.is_some() || ep.ssl_cert.is_some() || ep.ssl_key.is_some();
        let url_params: Vec<&str> = url_query_keys(&ep.url).filter(|k| URL_TLS_PARAMS.contains(k)).collect();
        if !url_params.is_empty() {
            if any_key {
                return Err(Error::Config(format!(
                    "{side}.url sets TLS with {} while {side}.ssl_* keys are set too; remove them from the URL and use {side}.ssl_mode",
                    url_params.join(", ")
                )));
            }
            let mode = match opts.ssl_opts() {
                None => SslMode::Disabled,
                Some(o) if o.accept_invalid_certs() => SslMode::Required,
                Some(o) if o.skip_domain_validation() => SslMode::VerifyCa,
                Some(_) => SslMode::VerifyIdentity,
            };
            return Ok(Tls { mode, ca: None, identity: None, from_url: true });
        }
        let mode = ep.ssl_mode.unwrap_or(if ep.ssl_ca.is_some() { SslMode::VerifyCa } else { SslMode::Preferred });
        if let Some(ca) = &ep.ssl_ca {
            check_ca(side, ca)?;
        }
        let identity = match (&ep.ssl_cert, &ep.ssl_key) {
            (Some(cert), Some(key)) => {
                check_identity(side, cert, key)?;
                Some((cert.clone(), key.clone()))
            }
            (None, None) => None,
            (Some(_), None) => {
                return Err(Error::Config(format!(
                    "{side}.ssl_cert is set without {side}.ssl_key; set both (the client certificate and its private key) or neither"
                )))
            }
            (None, Some(_)) => {
                return Err(Error::Config(format!(
                    "{side}.ssl_key is set without {side}.ssl_cert; set both (the client certificate and its private key) or neither"
                )))
            }
        };
        // Like the MySQL client, the CA only matters to the modes that verify.
        let ca = if mode.verifies() { ep.ssl_ca.clone() } else { None };
        Ok(Tls { mode, ca, identity, from_url: false })
    }

    /// Where the verify modes' trust comes from, for messages.
    pub fn trust(&self) -> String {
        match &self.ca {
            Some(ca) => format!("the CA in {}", ca.display()),
            None => "the built-in public CAs".into(),
        }
    }
}

fn url_query_keys(url: &str) -> impl Iterator<Item = &str> {
    url.split_once('?').map(|(_, q)| q).unwrap_or("").split('&').filter_map(|kv| kv.split('=').next())
}

fn read(side: Side, key: &str, path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| {
        Error::Config(format!(
            "{side}.{key}: cannot read {}: {e}; point {side}.{key} at a readable PEM file",
            path.display()
        ))
    })
}

/// Every certificate in a PEM file; an error names the key, never the content.
fn pem_certs(side: Side, key: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let data = read(side, key, path)?;
    let certs = CertificateDer::pem_slice_iter(&data).collect::<std::result::Result<Vec<_>, _>>().map_err(|e| {
        Error::Config(format!("{side}.{key}: {} is not a valid PEM certificate file ({e})", path.display()))
    })?;
    if certs.is_empty() {
        return Err(Error::Config(format!(
            "{side}.{key}: {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            path.display()
        )));
    }
    Ok(certs)
}

/// The CA file must hold certificates the driver accepts as trust anchors.
fn check_ca(side: Side, path: &Path) -> Result<()> {
    let mut store = rustls::RootCertStore::empty();
    for (i, cert) in pem_certs(side, "ssl_ca", path)?.into_iter().enumerate() {
        store.add(cert).map_err(|e| {
            Error::Config(format!(
                "{side}.ssl_ca: certificate {} in {} is not a usable CA certificate: {e}",
                i + 1,
                path.display()
            ))
        })?;
    }
    Ok(())
}

/// The client certificate and key must parse, and the key must belong to the certificate.
fn check_identity(side: Side, cert: &Path, key: &Path) -> Result<()> {
    let certs = pem_certs(side, "ssl_cert", cert)?;
    let data = read(side, "ssl_key", key)?;
    let der = PrivateKeyDer::from_pem_slice(&data).map_err(|e| {
        Error::Config(format!(
            "{side}.ssl_key: {} holds no usable private key ({e}); it must be an unencrypted PEM key (PKCS#8, PKCS#1 or SEC1): decrypt one with `openssl pkey -in KEY -out KEY.pem`",
            key.display()
        ))
    })?;
    let signer = rustls::crypto::ring::sign::any_supported_type(&der)
        .map_err(|e| Error::Config(format!("{side}.ssl_key: the key in {} is not supported: {e}", key.display())))?;
    match rustls::sign::CertifiedKey::new(certs, signer).keys_match() {
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => Err(Error::Config(format!(
            "{side}.ssl_key: the key in {} does not belong to the certificate in {} ({side}.ssl_cert)",
            key.display(),
            cert.display()
        ))),
        _ => Ok(()),
    }
}
