//! binlog-validator: keeps two MySQL-protocol databases honest during an online migration.
//!
//! # Layout
//! - [`config`]: the TOML of SPEC.md, `BV_*` environment overrides, validation, secret redaction
//! - [`error`]: error enums; transient (retry) vs definite (stop with the fix)
//! - [`key`]: row keys, owned and serialisable, compared by canonical bytes
//! - [`compare`]: the pure compare core: value normalisation and row comparison
//! - [`db`]: connection pools, keyset range reads, batched key reads, identifier quoting
//! - [`tls`]: `ssl_mode`/`ssl_ca`/`ssl_cert`/`ssl_key` per side for every connection, connect-error hints
//! - [`schema`]: table metadata from information_schema and the column plan shared by every mode
//! - [`check`]: key batches → verdicts, reading both sides by key
//! - [`ledger`]: the inconsistency ledger: reported rows stay open until found equal again
//! - [`settle`]: the re-check stage for mismatches; the pending set is persisted
//! - [`state`]: the sled store: versioned records, outbox, pending re-checks, progress
//! - [`event`]: the inconsistency event of SPEC.md
//! - [`sink`]: event sinks (Kafka, file, stdout) and the outbox drain
//! - [`engine`]: the connected pieces every mode shares, and their background tasks
//! - [`scan`]: full mode: segments, chunked keyset walk, resume
//! - [`summary`]: full mode's chunk summaries: the byte-exact row digest SQL, bucketed sums, index cut points
//! - [`throttle`]: full mode's `max_load` pause and `rate` limit between chunks
//! - [`api`]: the HTTP control API of `serve`, its scheduler, the cutover gate and its client, the OpenAPI
//!   document
//! - [`binlog`]: binlog mode: replica stream → whole transactions (compressed events, XA, DDL re-checks)
//!   → keys → checks → checkpoint, accounting for every row change; row images decoded and normalised to
//!   the binary protocol's form ([`binlog::normal`], [`binlog::image`])
//! - [`doctor`]: preflight checks with their fixes
//! - [`metrics`]: counters and every metric name
//! - [`poll`]: poll mode: `(utime, key)` keyset cursor with a re-read overlap, and the reverse `base_missing` sweep
//! - [`calendar`]: Gregorian day arithmetic shared by poll mode and binlog TIMESTAMP values
//! - [`retry`]: the one retry policy of every loop (exponential backoff with jitter, shutdown-aware)
//! - [`position`]: binlog positions (numeric file order), checkpoints, MariaDB GTID state, MySQL GTID sets,
//!   the validated-through position
//!
//! Data flows from a feed (full scan, later binlog and poll) through [`check`]/[`compare`] into
//! [`settle`], then into the [`state`] outbox, from which [`sink::drain`] delivers at least once.

pub mod api;
pub mod binlog;
pub mod calendar;
pub mod check;
pub mod compare;
pub mod config;
pub mod db;
pub mod doctor;
pub mod engine;
pub mod error;
pub mod event;
pub mod key;
pub mod ledger;
pub mod metrics;
pub mod poll;
pub mod position;
pub mod retry;
pub mod scan;
pub mod schema;
pub mod settle;
pub mod sink;
pub mod state;
pub mod summary;
pub mod throttle;
pub mod tls;

pub use config::Config;
pub use error::{Error, Result};
