//! Error types at module boundaries.
//!
//! Every error is either *transient* (a dropped connection, a lock wait, a broker that is down: retry with
//! backoff) or *definite* (a missing table, a table without a key, a malformed config: stop and tell the
//! user what to fix). [`Error::is_transient`] draws that line once, for every caller.

use std::fmt;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Which database an error came from, as the user names it in the config.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Side {
    Source,
    Target,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Source => "source",
            Side::Target => "target",
        }
    }
    pub fn other(self) -> Side {
        match self {
            Side::Source => Side::Target,
            Side::Target => Side::Source,
        }
    }
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(thiserror::Error, Debug)]
pub enum Error {
    /// The configuration is wrong; the message names the key and the fix.
    #[error("{0}")]
    Config(String),

    /// A table's layout makes validation impossible; the message says how to fix it.
    #[error("table `{table}`: {problem}")]
    Schema { table: String, problem: String },

    /// A server could not be reached or refused the login; `hint` names the setting to check
    /// (built by [`crate::mysql::tls`], which knows whether the connection was encrypted).
    #[error("cannot connect to the {side} database at {addr}: {}; {hint}", describe(.source))]
    Connect {
        side: Side,
        addr: String,
        #[source]
        source: mysql_async::Error,
        hint: String,
    },

    /// A query failed.
    #[error("{side} database: {context}: {source}")]
    Db {
        side: Side,
        context: String,
        #[source]
        source: mysql_async::Error,
    },

    /// The embedded state store failed.
    #[error("state store: {context}: {source}")]
    State {
        context: String,
        #[source]
        source: sled::Error,
    },

    /// A stored record could not be decoded (the store was written by an incompatible version or is damaged).
    #[error("state store: cannot decode {what}: {source}; move the state directory away to start fresh")]
    Decode {
        what: String,
        #[source]
        source: postcard::Error,
    },

    /// The event sink failed.
    #[error("sink: {0}")]
    Sink(String),

    /// The sink refuses events for good (authorization, unknown topic, message too large): retrying
    /// cannot help, so validation stops; the message names the fix.
    #[error("sink: {0}")]
    SinkRefused(String),

    /// The binlog cannot be used as it is (binlog off, minimal row metadata, an event that cannot be
    /// decoded); the message says what to change.
    #[error("binlog: {0}")]
    Binlog(String),

    /// The binlog file to resume from is gone from the server.
    #[error("binlog file {file} is no longer on the base server (purged: {detail}); changes since the checkpoint cannot be read. Run `binlog-validator full` to re-establish parity, then start incr again with a fresh state.dir (or binlog.start = \"now\")")]
    BinlogGone { file: String, detail: String },

    /// The binlog stream went silent or closed; reconnect.
    #[error("binlog stream: {0}")]
    Stalled(String),

    /// Checking a table's changed rows failed for good; binlog mode stops with this.
    #[error("table `{table}`: checking changed rows failed: {problem}; {fix}")]
    Check { table: String, problem: String, fix: String },

    /// A task of ours ended abnormally (it panicked or was cancelled): a bug, never worth a retry.
    #[error("internal error: {0}; please report it with the log")]
    Internal(String),

    /// The user asked to stop.
    #[error("interrupted")]
    Interrupted,
}

impl Error {
    pub fn db(side: Side, context: impl Into<String>, source: mysql_async::Error) -> Self {
        Error::Db { side, context: context.into(), source }
    }

    pub fn state(context: impl Into<String>, source: sled::Error) -> Self {
        Error::State { context: context.into(), source }
    }

    pub fn schema(table: impl Into<String>, problem: impl Into<String>) -> Self {
        Error::Schema { table: table.into(), problem: problem.into() }
    }

    /// The server's error code, when a server refused a query.
    pub fn server_code(&self) -> Option<u16> {
        match self {
            Error::Db { source: mysql_async::Error::Server(s), .. } => Some(s.code),
            _ => None,
        }
    }

    /// True for failures worth retrying with backoff: the same request may succeed later.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Db { source, .. } | Error::Connect { source, .. } => mysql_transient(source),
            Error::Sink(_) | Error::Stalled(_) => true,
            _ => false,
        }
    }
}

/// Server error codes that clear up by themselves: lock waits, deadlocks, too many connections, a server
/// shutting down or restarting, lost connections. A TLS failure (a certificate not trusted, a handshake
/// refused) is definite: it arrives as an I/O error, but retrying cannot cure it.
fn mysql_transient(e: &mysql_async::Error) -> bool {
    match e {
        e if is_tls_failure(e) => false,
        mysql_async::Error::Io(_) => true,
        mysql_async::Error::Driver(d) => matches!(d, mysql_async::DriverError::ConnectionClosed),
        mysql_async::Error::Server(s) => matches!(s.code, 1040 | 1053 | 1205 | 1213 | 1317 | 2006 | 2013 | 1927),
        _ => false,
    }
}

/// The rustls error under a connect error, if the TLS handshake failed.
pub fn rustls_error(e: &mysql_async::Error) -> Option<&rustls::Error> {
    match e {
        mysql_async::Error::Io(mysql_async::IoError::Io(io)) => io.get_ref()?.downcast_ref::<rustls::Error>(),
        _ => None,
    }
}

/// A connect error as one phrase: a failed TLS handshake says so (mysql_async writes "Input/output error"
/// twice before it).
pub fn describe(e: &mysql_async::Error) -> String {
    match rustls_error(e) {
        Some(re) => format!("TLS handshake failed: {re}"),
        None => e.to_string(),
    }
}

/// Whether an error is about TLS settings or certificates, which retrying cannot cure: the driver could
/// not use the files, or the handshake was refused. Other TLS errors (a record damaged mid-stream) stay
/// transient like any broken connection.
pub fn is_tls_failure(e: &mysql_async::Error) -> bool {
    use rustls::{AlertDescription as A, Error as R};
    if matches!(e, mysql_async::Error::Io(mysql_async::IoError::Tls(_))) {
        return true;
    }
    matches!(
        rustls_error(e),
        Some(R::InvalidCertificate(_) | R::PeerIncompatible(_) | R::NoCertificatesPresented | R::UnsupportedNameType)
    ) || matches!(rustls_error(e), Some(R::AlertReceived(a)) if *a != A::CloseNotify)
}
