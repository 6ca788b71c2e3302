//! Everything that speaks MySQL: connection pools and reads ([`db`]), table metadata and the column plan
//! ([`schema`]), binlog positions and GTIDs ([`position`]), and TLS for every connection ([`tls`]).

pub mod db;
pub mod position;
pub mod schema;
pub mod tls;
