//! Everything that speaks MySQL: connection pools and raw queries ([`db`]), reads by plan ([`read`]), table metadata and the column plan
//! ([`schema`]) with each column's comparison [`kind`], binlog positions and GTIDs ([`position`]), and TLS for every connection ([`tls`]).

pub mod db;
pub mod digest;
pub mod kind;
pub mod position;
pub mod read;
pub mod schema;
pub mod tls;
