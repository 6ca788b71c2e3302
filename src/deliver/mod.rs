//! Delivery: the inconsistency [`event`], the [`ledger`] of open rows, the sled [`state`] store with its
//! outbox, and the [`sink`]s the outbox drains into at least once.

pub mod event;
pub mod ledger;
pub mod metrics;
pub mod sink;
pub mod state;
