//! Control, on top of the pipeline: the HTTP [`api`] (scheduler, cutover gate, client) and the
//! [`doctor`]'s preflight checks.

pub mod api;
pub mod doctor;
