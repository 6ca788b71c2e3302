//! Feeds: where the keys to check come from. [`binlog`] tails the base's binlog, [`poll`] follows a
//! `(utime, key)` cursor and sweeps for hard deletes, [`full`] walks whole tables.

pub mod binlog;
pub mod full;
pub mod poll;
