//! binlog-validator: keeps two MySQL-protocol databases honest during an online migration.
//!
//! # Layout
//! The pipeline shows in the tree: a feed finds keys, a verdict judges them, delivery reports them.
//! Imports run one way: [`control`] → [`feed`] → [`engine`] → [`verdict`] → [`deliver`], all over
//! [`mysql`] and the shared leaves below.
//!
//! - [`feed`]: where keys come from
//!   - [`feed::binlog`]: replica stream → whole transactions (compressed events, XA, DDL re-checks) → keys,
//!     accounting for every row change; row images decoded and normalised to the binary protocol's form
//!   - [`feed::poll`]: `(utime, key)` keyset cursor with a re-read overlap, and the reverse `base_missing` sweep
//!   - [`feed::full`]: segments, chunked keyset walk, resume; chunk summaries and bisection
//!     ([`feed::full::summary`]), the `max_load` pause and `rate` limit ([`feed::full::throttle`])
//! - [`engine`]: the connected pieces every mode shares, and their background tasks
//! - [`verdict`]: the pure compare core ([`verdict::compare`]), key batches → verdicts ([`verdict::check`]),
//!   the settle stage for mismatches ([`verdict::settle`]) with binlog mode's rule by row versions
//!   ([`verdict::versions`]) and poll mode's by observed versions ([`verdict::observed`])
//! - [`deliver`]: the inconsistency event and mismatch ([`deliver::event`]), the ledger of open rows
//!   ([`deliver::ledger`]), the sled store with its outbox ([`deliver::state`]), sinks and the drain
//!   ([`deliver::sink`]), counters and Prometheus text ([`deliver::metrics`])
//! - [`mysql`]: pools and raw queries ([`mysql::db`]), reads by plan ([`mysql::read`]), table metadata and the
//!   column plan ([`mysql::schema`]) with each column's comparison kind ([`mysql::kind`]), the summary
//!   strategy's row digest SQL ([`mysql::digest`]), binlog positions
//!   and GTIDs ([`mysql::position`]), TLS for every connection ([`mysql::tls`])
//! - [`control`]: the HTTP API, its scheduler, the cutover gate and its client ([`control::api`]); preflight
//!   checks ([`control::doctor`])
//! - shared leaves: [`config`] (TOML, `BV_*` overrides, validation; each side's URL and TLS settings in
//!   [`config::Endpoint`]), [`error`] (transient vs definite), [`key`] (row keys by canonical bytes), [`retry`]
//!   (the one backoff policy), [`clock`], [`calendar`]
//!
//! Data flows from a feed through [`verdict::check`]/[`verdict::compare`] into [`verdict::settle`], then
//! into the [`deliver::state`] outbox, from which [`deliver::sink::drain`] delivers at least once.

pub mod calendar;
pub mod clock;
pub mod config;
pub mod control;
pub mod deliver;
pub mod engine;
pub mod error;
pub mod feed;
pub mod key;
pub mod mysql;
pub mod retry;
pub mod verdict;

pub use config::Config;
pub use error::{Error, Result};
