//! Verdicts: the pure compare core ([`compare`]), key batches read and judged ([`check`]), and the settle
//! stage that tells lag from inconsistency ([`settle`]).

pub mod check;
pub mod compare;
pub mod observed;
pub mod settle;
pub mod versions;
