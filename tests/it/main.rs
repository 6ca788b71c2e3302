//! Integration tests against the real MariaDB pair and broker started by scripts/testenv.sh
//! (scripts/test.sh starts them, runs these, and stops them).

mod api;
mod binlog;
mod cli;
mod compare;
mod conformance;
mod cutover;
mod full;
mod harness;
mod images;
mod kafka;
mod lagging;
mod layout;
mod mapping;
mod poll;
mod restart;
mod stream;
mod summary;
mod tls;
