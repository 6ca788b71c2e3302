//! TLS against a real MariaDB that accepts only TLS (require_secure_transport=ON), with a private CA made
//! by openssl when the test starts it (scripts/testenv.sh start-tls-mariadb): verified connections for
//! full and binlog modes, a client certificate for a REQUIRE X509 account, and the messages a DBA sees
//! when the CA, the client certificate or ssl_mode is wrong.

use crate::harness::*;
use serde_json::json;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

static SERVER_IDS: AtomicU32 = AtomicU32::new(0);

/// A replica server id no other test uses (binlog.rs uses 20000-84000).
fn server_id() -> u32 {
    7_000_000 + (std::process::id() % 1000) * 16 + SERVER_IDS.fetch_add(1, Ordering::Relaxed)
}

/// The TLS-only server of one test; destroyed (data and certificates) when dropped.
struct TlsServer {
    name: String,
    port: u16,
    /// ca.pem, other-ca.pem, client.pem, client.key, ... (see make_certs in scripts/testenv.sh)
    certs: PathBuf,
}

impl TlsServer {
    fn start(tag: &str, port: u16) -> TlsServer {
        let name = format!("{tag}-{}", std::process::id());
        let dir = PathBuf::from(env_var("BVT_TESTENV_DIR"));
        script(&dir, &["start-tls-mariadb", &name, &port.to_string()]);
        TlsServer { certs: dir.join(&name).join("tls"), name, port }
    }

    fn cert(&self, file: &str) -> String {
        self.certs.join(file).display().to_string()
    }

    /// The URL the test itself uses for setup: TLS without verification (mysql_async's own parameters).
    fn setup_url(&self) -> String {
        format!("mysql://bv:bv@127.0.0.1:{}?require_ssl=true&verify_ca=false", self.port)
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        script(&PathBuf::from(env_var("BVT_TESTENV_DIR")), &["destroy", &self.name]);
    }
}

/// scripts/testenv.sh with its data directory pinned to the one the test reads certificates from.
fn script(dir: &std::path::Path, args: &[&str]) {
    let st = Command::new("bash").arg(env_var("BVT_TESTENV")).args(args).env("BV_TESTENV_DIR", dir).status().unwrap();
    assert!(st.success(), "testenv {args:?} failed");
}

/// Writes the pair's config with a TLS `[source]`: its URL (user, password, host) and ssl_* lines.
fn tls_config(p: &Pair, s: &TlsServer, user: &str, host: &str, ssl: &str, tables: &str) {
    let text = format!(
        "[source]\nurl = \"mysql://{user}@{host}:{}/{}\"\n{ssl}\n[target]\nurl = \"{}\"\n[state]\ndir = \"{}\"\n\
         [sink]\nkind = \"file\"\npath = \"{}\"\n[check]\nsettle = \"200ms\"\n[binlog]\nserver_id = {}\n{tables}",
        s.port,
        p.db,
        p.url(Side::Target),
        p.dir.path().join("state").display(),
        p.events_path().display(),
        server_id(),
    );
    std::fs::write(p.dir.path().join("binlog-validator.toml"), text).unwrap();
}

const TABLE_T: &str = "[[table]]\nname = \"t\"\n";

#[tokio::test(flavor = "multi_thread")]
async fn verify_identity_with_the_right_ca_checks_full_and_binlog_over_tls() {
    let s = TlsServer::start("tls_ok", 23090);
    let p = Pair::new_with_source("tls_ok", &s.setup_url()).await;
    p.both("CREATE TABLE t (id INT PRIMARY KEY, v INT)").await;
    p.exec(Side::Source, "INSERT INTO t VALUES (1, 1), (2, 2)").await;
    p.exec(Side::Target, "INSERT INTO t VALUES (1, 1)").await;
    let verified = format!("ssl_mode = \"verify_identity\"\nssl_ca = \"{}\"", s.cert("ca.pem"));

    // doctor: encrypted, the TLS version, the identity verified.
    tls_config(&p, &s, "bv:bv", "127.0.0.1", &verified, TABLE_T);
    let out = p.run(&["doctor"]);
    let log = text(&out);
    assert_eq!(out.status.code(), Some(0), "{log}");
    let line = log.lines().find(|l| l.contains("source tls")).unwrap_or_else(|| panic!("no source tls line: {log}"));
    assert!(line.contains("encrypted, TLSv1.") && line.contains("server identity verified"), "{line}");
    assert!(line.contains("ca.pem") && line.contains("127.0.0.1"), "{line}");
    let target = log.lines().find(|l| l.contains("target tls")).unwrap_or_else(|| panic!("no target tls line: {log}"));
    assert!(target.contains("not encrypted"), "{target}");

    // full mode reads the source over the verified connection.
    let out = p.run(&["full"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(kinds_and_keys(&p.events()), expect(&[("target_missing", json!({"id": 2}))]));

    // binlog mode, as the REQUIRE X509 account with its client certificate.
    let with_cert =
        format!("{verified}\nssl_cert = \"{}\"\nssl_key = \"{}\"", s.cert("client.pem"), s.cert("client.key"));
    tls_config(&p, &s, "bvx:x509-pass", "127.0.0.1", &with_cert, TABLE_T);
    let incr = Incr::start(&p, &[]);
    incr.wait_ready().await;
    p.exec(Side::Source, "INSERT INTO t VALUES (3, 3)").await;
    p.wait_events(&expect(&[("target_missing", json!({"id": 3}))])).await;
    let (code, log) = incr.stop();
    assert_eq!(code, Some(0), "{log}");
    assert!(!log.contains("x509-pass"), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_ca_missing_client_certificate_and_disabled_tls_fail_with_the_setting_to_fix() {
    let s = TlsServer::start("tls_bad", 23091);
    let p = Pair::new_with_source("tls_bad", &s.setup_url()).await;
    p.both("CREATE TABLE t (id INT PRIMARY KEY, v INT)").await;
    let key_line = std::fs::read_to_string(s.certs.join("client.key")).unwrap().lines().nth(1).unwrap().to_string();
    let mut outputs = Vec::new();

    // The wrong CA: the certificate is refused, and the message names ssl_ca.
    let wrong_ca = format!("ssl_mode = \"verify_identity\"\nssl_ca = \"{}\"", s.cert("other-ca.pem"));
    tls_config(&p, &s, "bv:bv", "127.0.0.1", &wrong_ca, TABLE_T);
    let out = p.run(&["full"]);
    assert_clean_failure(&out, &["source", "certificate", "source.ssl_ca", "other-ca.pem"]);
    outputs.push(text(&out));
    let out = p.run(&["doctor"]);
    let log = text(&out);
    assert!(log.contains("FAIL source connection") && log.contains("fix: ") && log.contains("source.ssl_ca"), "{log}");
    outputs.push(log);

    // The REQUIRE X509 account without a client certificate: the message names ssl_cert and ssl_key.
    let no_cert = format!("ssl_mode = \"verify_identity\"\nssl_ca = \"{}\"", s.cert("ca.pem"));
    tls_config(&p, &s, "bvx:x509-pass", "127.0.0.1", &no_cert, TABLE_T);
    let out = p.run(&["full"]);
    assert_clean_failure(&out, &["Access denied", "source.ssl_cert", "source.ssl_key"]);
    outputs.push(text(&out));

    // TLS turned off (from the environment) against the TLS-only server: the hint names ssl_mode, not
    // "start the server".
    tls_config(&p, &s, "bv:bv", "127.0.0.1", "", TABLE_T);
    let out = p.command(&["full"]).env("BV_SOURCE_SSL_MODE", "disabled").output().unwrap();
    assert_clean_failure(
        &out,
        &["without TLS (source.ssl_mode = disabled)", "require_secure_transport", "verify_identity"],
    );
    assert!(!text(&out).contains("server is running"), "{}", text(&out));
    outputs.push(text(&out));
    let out = p.command(&["doctor"]).env("BV_SOURCE_SSL_MODE", "disabled").output().unwrap();
    let log = text(&out);
    assert!(log.contains("FAIL source connection") && log.contains("fix: ") && log.contains("ssl_mode"), "{log}");
    outputs.push(log);

    // `required` against a server without TLS (the plain target) fails and says so; `preferred` would not.
    tls_config(&p, &s, "bv:bv", "127.0.0.1", &no_cert, TABLE_T);
    let out = p.command(&["full"]).env("BV_TARGET_SSL_MODE", "required").output().unwrap();
    assert_clean_failure(&out, &["target", "does not offer TLS", "target.ssl_mode = required"]);

    // A host the certificate does not name: verify_identity refuses it and names verify_ca, which checks
    // the CA only and connects.
    tls_config(&p, &s, "bv:bv", "localhost", &no_cert, TABLE_T);
    let out = p.run(&["full"]);
    assert_clean_failure(&out, &["does not name the host", "verify_ca"]);
    let ca_only = format!("ssl_mode = \"verify_ca\"\nssl_ca = \"{}\"", s.cert("ca.pem"));
    tls_config(&p, &s, "bv:bv", "localhost", &ca_only, TABLE_T);
    let out = p.run(&["doctor"]);
    let log = text(&out);
    assert_eq!(out.status.code(), Some(0), "{log}");
    assert!(log.contains("host name not checked (ssl_mode = verify_ca)"), "{log}");
    // ...and verify_ca with the wrong CA still fails: the chain is checked.
    let ca_only_wrong = format!("ssl_mode = \"verify_ca\"\nssl_ca = \"{}\"", s.cert("other-ca.pem"));
    tls_config(&p, &s, "bv:bv", "localhost", &ca_only_wrong, TABLE_T);
    assert_clean_failure(&p.run(&["full"]), &["source.ssl_ca"]);

    // The only way before ssl_ca existed, mysql_async's own URL parameter, now leads to ssl_ca.
    tls_config(&p, &s, "bv:bv", "127.0.0.1", "", TABLE_T);
    let path = p.dir.path().join("binlog-validator.toml");
    let with_param = std::fs::read_to_string(&path).unwrap().replacen(
        &format!("/{}\"", p.db),
        &format!("/{}?require_ssl=true\"", p.db),
        1,
    );
    std::fs::write(&path, with_param).unwrap();
    assert_clean_failure(&p.run(&["full"]), &["UnknownIssuer", "remove them from source.url", "source.ssl_ca"]);

    // Files that cannot be used are config errors naming the key: a key that is not the certificate's,
    // a CA file that is missing.
    let mismatched =
        format!("{no_cert}\nssl_cert = \"{}\"\nssl_key = \"{}\"", s.cert("client.pem"), s.cert("other-ca.key"));
    tls_config(&p, &s, "bvx:x509-pass", "127.0.0.1", &mismatched, TABLE_T);
    let out = p.run(&["full"]);
    assert_clean_failure(&out, &["source.ssl_key", "does not belong"]);
    outputs.push(text(&out));
    tls_config(&p, &s, "bv:bv", "127.0.0.1", &format!("ssl_ca = \"{}\"", s.cert("nope.pem")), TABLE_T);
    assert_clean_failure(&p.run(&["full"]), &["source.ssl_ca", "cannot read"]);

    // No secret in any of it: not the password, not the key file's content.
    for o in &outputs {
        assert!(!o.contains("x509-pass") && !o.contains(":bv@") && !o.contains(&key_line), "{o}");
    }
}
