//! TLS for every connection of a side (pools and the binlog stream) with the settings that
//! [`crate::config::Tls`] resolved (`ssl_mode`, `ssl_ca`, `ssl_cert`, `ssl_key` in `[source]`/`[target]`),
//! and connect errors whose hint names the setting to change.
//!
//! What each mode does with rustls (mysql_async's `SslOpts`):
//! - `disabled`: no TLS.
//! - `preferred` (default): TLS without certificate checks; a server that does not offer TLS (no
//!   `CLIENT_SSL` in its greeting) is connected to in plain text. A TLS handshake that fails does not
//!   fall back.
//! - `required`: TLS without certificate checks; fails when the server does not offer TLS.
//! - `verify_ca`: TLS; the certificate must chain to `ssl_ca` (or, without it, to the built-in public
//!   roots); the host name is not checked.
//! - `verify_identity`: as `verify_ca`, and the certificate must name the host of the URL.
//!
//! As with the MySQL client, `ssl_ca` without `ssl_mode` means `verify_ca`. With `ssl_ca`, only that file's
//! CAs are trusted. TLS parameters in the URL itself (`require_ssl`, `verify_ca`, ...) still work when no
//! `ssl_*` key is set; mixing both is a config error.

use crate::config::{Endpoint, SslMode, Tls};
use crate::error::{rustls_error, Error, Result, Side};
use mysql_async::{ClientIdentity, Opts, OptsBuilder, SslOpts};
use std::future::Future;

/// The TLS options for a connection: `None` for plain text. `host` replaces the name the certificate
/// is checked against (see [`Connector::establish`] for why `verify_ca` needs it).
fn ssl_opts(tls: &Tls, url_opts: &Opts, host: Option<&str>) -> Option<SslOpts> {
    let opts = if tls.from_url {
        url_opts.ssl_opts().cloned()?
    } else {
        let mut o = match tls.mode {
            SslMode::Disabled => return None,
            SslMode::Preferred | SslMode::Required => SslOpts::default().with_danger_accept_invalid_certs(true),
            SslMode::VerifyCa => SslOpts::default().with_danger_skip_domain_validation(true),
            SslMode::VerifyIdentity => SslOpts::default(),
        };
        if let Some(ca) = &tls.ca {
            o = o.with_root_certs(vec![ca.clone().into()]).with_disable_built_in_roots(true);
        }
        if let Some((cert, key)) = &tls.identity {
            o = o.with_client_identity(Some(ClientIdentity::new(cert.clone().into(), key.clone().into())));
        }
        o
    };
    Some(match host {
        Some(h) => opts.with_danger_tls_hostname_override(Some(h.to_string())),
        None => opts,
    })
}

/// How a connection ended up: what doctor reports.
#[derive(Clone, Debug)]
pub struct Link {
    pub tls: Tls,
    /// `preferred` found a server without TLS and connected in plain text.
    pub plain_fallback: bool,
    /// The URL's host.
    pub host: String,
}

impl Link {
    /// Whether connections try TLS at all.
    pub fn encrypted(&self) -> bool {
        self.tls.mode != SslMode::Disabled && !self.plain_fallback
    }

    /// What is verified about the server, given the TLS version the server reports (empty if none).
    pub fn describe(&self, version: &str) -> String {
        let mode = self.tls.mode;
        let how = if self.tls.from_url { ", set by the URL's parameters" } else { "" };
        if mode == SslMode::Disabled {
            return format!("not encrypted (ssl_mode = disabled{how})");
        }
        if self.plain_fallback {
            return "not encrypted: the server does not offer TLS (ssl_mode = preferred)".into();
        }
        let version = if version.is_empty() { "TLS" } else { version };
        match mode {
            SslMode::VerifyIdentity => format!(
                "encrypted, {version}; server identity verified: certificate from {} for {} (ssl_mode = verify_identity{how})",
                self.tls.trust(),
                self.host
            ),
            SslMode::VerifyCa => format!(
                "encrypted, {version}; certificate verified against {}, host name not checked (ssl_mode = verify_ca{how})",
                self.tls.trust()
            ),
            _ => format!("encrypted, {version}; server certificate NOT verified (ssl_mode = {mode}{how})"),
        }
    }
}

/// Opens one side's connections with its TLS settings, with the two retries the modes need.
pub struct Connector {
    side: Side,
    url_opts: Opts,
    pub addr: String,
    pub tls: Tls,
}

impl Connector {
    pub fn new(side: Side, ep: &Endpoint) -> Result<Connector> {
        let tls = Tls::resolve(side, ep)?;
        let url_opts =
            Opts::from_url(&ep.url).map_err(|e| Error::Config(format!("{side}.url is not a valid MySQL URL: {e}")))?;
        let addr = format!("{}:{}", url_opts.ip_or_hostname(), url_opts.tcp_port());
        Ok(Connector { side, url_opts, addr, tls })
    }

    /// The URL names this host by a loopback address or `localhost` (mysql_async's own test misses
    /// `127.0.0.1` in a `mysql://` URL, whose host the URL parser keeps as a name).
    fn loopback(&self) -> bool {
        let host = self.url_opts.ip_or_hostname().trim_matches(['[', ']']);
        host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }

    /// The URL's database.
    pub fn database(&self) -> &str {
        self.url_opts.db_name().unwrap_or_default()
    }

    /// The URL's options with the TLS of this side.
    fn builder(&self, plain: bool, host: Option<&str>) -> OptsBuilder {
        let ssl = if plain { None } else { ssl_opts(&self.tls, &self.url_opts, host) };
        let builder = OptsBuilder::from_opts(self.url_opts.clone()).ssl_opts(ssl);
        // mysql_async moves a connection onto the Unix socket the server names (`@@socket`) whenever that
        // path exists here, leaving TLS behind; a mode that demands TLS keeps the connection it verified.
        // It does so for any address, so a server on another host (or in another network namespace)
        // whose socket path happens to exist here would be swapped for whatever listens on it locally:
        // only a loopback address may move to a socket.
        let demands_tls = matches!(self.tls.mode, SslMode::Required | SslMode::VerifyCa | SslMode::VerifyIdentity);
        if demands_tls || !self.loopback() {
            builder.prefer_socket(false)
        } else {
            builder
        }
    }

    /// Runs `attempt` (which opens a connection or a pool with the options it is given) until it
    /// succeeds or fails for good:
    /// - `preferred` retries in plain text when the server does not offer TLS;
    /// - `verify_ca` retries once checking the name the certificate itself presents: mysql_async skips
    ///   the host check by matching rustls's error text, which rustls 0.23 no longer writes that way, so
    ///   without this `verify_ca` would act as `verify_identity`. The chain is still fully verified.
    pub async fn establish<T, F, Fut>(&self, mut attempt: F) -> Result<(T, Link)>
    where
        F: FnMut(OptsBuilder) -> Fut,
        Fut: Future<Output = std::result::Result<T, mysql_async::Error>>,
    {
        let mut plain = false;
        let mut host: Option<String> = None;
        loop {
            match attempt(self.builder(plain, host.as_deref())).await {
                Ok(v) => {
                    let link = Link {
                        tls: self.tls.clone(),
                        plain_fallback: plain,
                        host: self.url_opts.ip_or_hostname().to_string(),
                    };
                    return Ok((v, link));
                }
                Err(e) if !plain && self.tls.mode == SslMode::Preferred && !self.tls.from_url && no_tls_offered(&e) => {
                    tracing::debug!(side = %self.side, "the server does not offer TLS; connecting in plain text (ssl_mode = preferred)");
                    plain = true;
                }
                Err(e) if host.is_none() && self.tls.mode == SslMode::VerifyCa => match presented_name(&e) {
                    Some(name) => host = Some(name),
                    None => return Err(self.error(e, plain)),
                },
                Err(e) => return Err(self.error(e, plain)),
            }
        }
    }

    /// One connection (the binlog stream's), tuned by `tune`.
    pub async fn conn(&self, tune: impl Fn(OptsBuilder) -> OptsBuilder) -> Result<mysql_async::Conn> {
        let (conn, _) = self.establish(|o| mysql_async::Conn::new(tune(o))).await?;
        Ok(conn)
    }

    /// The connect error, with a hint that names the setting to change.
    fn error(&self, source: mysql_async::Error, plain: bool) -> Error {
        let plain = match (self.tls.mode, plain) {
            (SslMode::Disabled, _) => Plain::BySetting,
            (_, true) => Plain::NotOffered,
            _ => Plain::No,
        };
        let hint = hint(self.side, &self.tls, plain, &self.addr, &source);
        Error::Connect { side: self.side, addr: self.addr.clone(), source, hint }
    }
}

fn no_tls_offered(e: &mysql_async::Error) -> bool {
    matches!(e, mysql_async::Error::Driver(mysql_async::DriverError::NoClientSslFlagFromServer))
}

/// For a certificate that does not name the host we connected to, one name it does present (a wildcard
/// made concrete), so the chain can be verified against it.
fn presented_name(e: &mysql_async::Error) -> Option<String> {
    let Some(rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForNameContext { presented, .. })) =
        rustls_error(e)
    else {
        return None;
    };
    // webpki lists the subjectAltNames as `DnsName("db.example.com")` and `IpAddress(10.0.0.1)`.
    presented.iter().find_map(|p| {
        if let Some(dns) = p.strip_prefix("DnsName(\"").and_then(|s| s.strip_suffix("\")")) {
            Some(dns.replacen('*', "x", 1))
        } else {
            p.strip_prefix("IpAddress(").and_then(|s| s.strip_suffix(')')).map(str::to_string)
        }
    })
}

/// MySQL refuses a plain connection under `require_secure_transport=ON` with ER_SECURE_TRANSPORT_REQUIRED;
/// MariaDB (10.11, tried) answers 1045 "Access denied", as it does for a REQUIRE SSL/X509 account.
const SECURE_TRANSPORT_REQUIRED: &[u16] = &[3159];
const ACCESS_DENIED: u16 = 1045;

/// Why a connection went without TLS, when it did.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Plain {
    /// It used TLS.
    No,
    /// `ssl_mode = disabled` (or the URL's `require_ssl=false`).
    BySetting,
    /// `preferred` found a server that does not offer TLS.
    NotOffered,
}

fn hint(side: Side, tls: &Tls, plain: Plain, addr: &str, e: &mysql_async::Error) -> String {
    let setting = if tls.from_url {
        format!("the TLS parameters of {side}.url")
    } else {
        format!("{side}.ssl_mode = {}", tls.mode)
    };
    if let Some(re) = rustls_error(e) {
        use rustls::{AlertDescription as A, CertificateError as C, Error as R};
        return match re {
            R::InvalidCertificate(C::NotValidForNameContext { .. } | C::NotValidForName) => format!(
                "the server's certificate does not name the host in {side}.url ({addr}); connect by a name the certificate lists, or set {side}.ssl_mode = \"verify_ca\" to check only the CA"
            ),
            R::InvalidCertificate(_) if tls.from_url => format!(
                "the server's certificate was not accepted when checked against {}; the URL's TLS parameters cannot name a CA: remove them from {side}.url and set {side}.ssl_ca to the PEM file (or bundle) of the CA that issued it",
                tls.trust()
            ),
            R::InvalidCertificate(_) => format!(
                "the server's certificate was not accepted when checked against {} ({setting}); set {side}.ssl_ca to the PEM file (or bundle) of the CA that issued it",
                tls.trust()
            ),
            R::PeerIncompatible(_) | R::AlertReceived(A::ProtocolVersion) => format!(
                "the server's TLS is older than TLS 1.2, which this client needs (MySQL 5.6 and early 5.7 builds); enable TLS 1.2 on the server, or set {side}.ssl_mode = \"disabled\" to connect without TLS"
            ),
            R::AlertReceived(_) => format!(
                "the server ended the TLS handshake; if it requires a client certificate, set {side}.ssl_cert and {side}.ssl_key, and check that the server trusts their CA"
            ),
            _ => format!("the TLS handshake failed ({setting}); check {side}.ssl_mode, {side}.ssl_ca, {side}.ssl_cert and {side}.ssl_key"),
        };
    }
    let denied = matches!(e, mysql_async::Error::Server(s) if s.code == ACCESS_DENIED);
    match e {
        mysql_async::Error::Io(mysql_async::IoError::Tls(_)) => format!(
            "the TLS settings could not be used; check the files in {side}.ssl_ca, {side}.ssl_cert and {side}.ssl_key"
        ),
        e if no_tls_offered(e) => format!(
            "the server does not offer TLS but {setting} requires it; enable TLS on the server or set {side}.ssl_mode = \"preferred\""
        ),
        mysql_async::Error::Server(s) if SECURE_TRANSPORT_REQUIRED.contains(&s.code) => format!(
            "the server requires a secure (TLS) connection and {setting} connects without one; set {side}.ssl_mode = \"verify_identity\" and {side}.ssl_ca to the server's CA"
        ),
        _ if denied && plain == Plain::BySetting => format!(
            "the login was refused on a connection without TLS ({setting}), which is how a server with require_secure_transport=ON or an account with REQUIRE SSL/X509 answers: set {side}.ssl_mode = \"verify_identity\" and {side}.ssl_ca; otherwise check the user and password in {side}.url"
        ),
        _ if denied && plain == Plain::No && tls.identity.is_none() => format!(
            "check the user and password in {side}.url; if the account requires a client certificate (REQUIRE X509), set {side}.ssl_cert and {side}.ssl_key"
        ),
        _ if denied && plain == Plain::No => format!(
            "check the user and password in {side}.url, and that the account accepts the certificate in {side}.ssl_cert"
        ),
        _ if denied => format!("check the user and password in {side}.url"),
        _ => format!("check {side}.url and that the server is running"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::error::is_tls_failure;
    use std::path::Path;

    /// A CA certificate (public part only) made by scripts/testenv.sh's make_certs.
    fn ca() -> String {
        format!("{}/fixtures/tls/test-ca.pem", env!("CARGO_MANIFEST_DIR"))
    }

    fn load(source: &str, env: &[(&str, &str)]) -> Result<Config> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        let text = format!(
            "[source]\n{source}\n[target]\nurl = \"mysql://u:secret@127.0.0.1:3307/app\"\n[[table]]\nname = \"t\"\n"
        );
        std::fs::write(&path, text).unwrap();
        Config::load(&path, true, env.iter().map(|(a, b)| (a.to_string(), b.to_string())))
    }

    fn tls(source: &str, env: &[(&str, &str)]) -> Result<Tls> {
        let c = load(source, env)?;
        Tls::resolve(Side::Source, &c.source)
    }

    const URL: &str = "url = \"mysql://u:secret@127.0.0.1:3306/app\"";

    #[test]
    fn modes_and_their_defaults() {
        let t = tls(URL, &[]).unwrap();
        assert_eq!((t.mode, t.ca.is_none(), t.identity.is_none(), t.from_url), (SslMode::Preferred, true, true, false));
        // The MySQL client's rule: a CA without a mode verifies the CA.
        let t = tls(&format!("{URL}\nssl_ca = \"{}\"", ca()), &[]).unwrap();
        assert_eq!(t.mode, SslMode::VerifyCa);
        assert_eq!(t.ca.as_deref(), Some(Path::new(&ca())));
        // The client's spellings; a CA is not used by the modes that do not verify.
        let t = tls(&format!("{URL}\nssl_mode = \"REQUIRED\"\nssl_ca = \"{}\"", ca()), &[]).unwrap();
        assert_eq!((t.mode, t.ca), (SslMode::Required, None));
        assert_eq!(tls(&format!("{URL}\nssl_mode = \"verify-identity\""), &[]).unwrap().mode, SslMode::VerifyIdentity);
    }

    #[test]
    fn only_a_loopback_address_may_move_to_a_unix_socket() {
        let prefer = |url: &str| {
            let ep = Endpoint { url: url.into(), ..Default::default() };
            let c = Connector::new(Side::Source, &ep).unwrap();
            mysql_async::Opts::from(c.builder(true, None)).prefer_socket()
        };
        assert!(prefer("mysql://u:p@127.0.0.1:3306/app"));
        assert!(prefer("mysql://u:p@localhost:3306/app"));
        assert!(prefer("mysql://u:p@[::1]:3306/app"));
        assert!(!prefer("mysql://u:p@10.200.0.2:3306/app"));
        assert!(!prefer("mysql://u:p@db.example.com:3306/app"));
    }

    #[test]
    fn environment_overrides_the_tls_keys() {
        let env = [("BV_SOURCE_SSL_MODE", "verify_identity"), ("BV_SOURCE_SSL_CA", ca().leak())];
        let t = tls(URL, &env).unwrap();
        assert_eq!((t.mode, t.ca.is_some()), (SslMode::VerifyIdentity, true));
        let e = load(URL, &[("BV_TARGET_SSL_CA", "/nonexistent/ca.pem")]).unwrap_err().to_string();
        assert!(e.contains("target.ssl_ca") && e.contains("/nonexistent/ca.pem"), "{e}");
    }

    #[test]
    fn bad_values_and_files_name_the_key() {
        let e = load(&format!("{URL}\nssl_mode = \"strict\""), &[]).unwrap_err().to_string();
        assert!(e.contains("source.ssl_mode") && e.contains("verify_identity"), "{e}");
        let e = load(&format!("{URL}\nssl_ca = \"/nonexistent/ca.pem\""), &[]).unwrap_err().to_string();
        assert!(e.contains("source.ssl_ca") && e.contains("cannot read"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate\n").unwrap();
        let e = load(&format!("{URL}\nssl_ca = \"{}\"", junk.display()), &[]).unwrap_err().to_string();
        assert!(e.contains("source.ssl_ca") && e.contains("no PEM certificate"), "{e}");
        let e = load(&format!("{URL}\nssl_cert = \"{}\"", ca()), &[]).unwrap_err().to_string();
        assert!(e.contains("source.ssl_cert") && e.contains("source.ssl_key"), "{e}");
        // A key file that holds no key: named, its content not shown.
        std::fs::write(&junk, "-----BEGIN SECRET-----\nc2VjcmV0LWtleS1ieXRlcw==\n-----END SECRET-----\n").unwrap();
        let e = load(&format!("{URL}\nssl_cert = \"{}\"\nssl_key = \"{}\"", ca(), junk.display()), &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("source.ssl_key") && !e.contains("c2VjcmV0"), "{e}");
        let e = load(&format!("{URL}\nssl_key_file = \"x\""), &[]).unwrap_err().to_string();
        assert!(e.contains("ssl_key_file"), "{e}");
    }

    #[test]
    fn tls_in_the_url_still_works_but_not_mixed_with_the_keys() {
        let url = "url = \"mysql://u:secret@127.0.0.1:3306/app?require_ssl=true&verify_ca=false\"";
        let t = tls(url, &[]).unwrap();
        assert_eq!((t.mode, t.from_url), (SslMode::Required, true));
        let t = tls("url = \"mysql://u:p@h:1/app?require_ssl=true&verify_identity=false\"", &[]).unwrap();
        assert_eq!(t.mode, SslMode::VerifyCa);
        let e = load(&format!("{url}\nssl_mode = \"verify_identity\""), &[]).unwrap_err().to_string();
        assert!(e.contains("require_ssl") && e.contains("source.ssl_mode") && !e.contains("secret"), "{e}");
    }

    fn tls_error(e: rustls::Error) -> mysql_async::Error {
        mysql_async::Error::Io(mysql_async::IoError::Io(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))
    }

    #[test]
    fn certificate_failures_are_definite_and_verify_ca_finds_a_presented_name() {
        let unknown = tls_error(rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer));
        assert!(is_tls_failure(&unknown));
        let connect = |source| Error::Connect { side: Side::Source, addr: "h:1".into(), source, hint: String::new() };
        assert!(!connect(unknown).is_transient());
        let dropped = mysql_async::Error::Io(mysql_async::IoError::Io(std::io::ErrorKind::ConnectionReset.into()));
        assert!(connect(dropped).is_transient());
        let refused = tls_error(rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRequired));
        assert!(!connect(refused).is_transient());
        assert!(connect(tls_error(rustls::Error::DecryptError)).is_transient());
        let name = |presented: &[&str]| {
            presented_name(&tls_error(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForNameContext {
                    expected: rustls::pki_types::ServerName::try_from("localhost").unwrap(),
                    presented: presented.iter().map(|s| s.to_string()).collect(),
                },
            )))
        };
        assert_eq!(name(&["DirectoryName", "DnsName(\"*.db.example.com\")"]).as_deref(), Some("x.db.example.com"));
        assert_eq!(name(&["IpAddress(10.0.0.1)"]).as_deref(), Some("10.0.0.1"));
        assert_eq!(name(&[]), None);
    }
}
