//! How a column's values are compared, decided from its SQL type when the plan is made; the compare core
//! ([`crate::verdict::compare`]) applies it.

/// How a column's values are compared, derived from its SQL type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Kind {
    /// TINYINT … BIGINT (signed or not), YEAR
    Int,
    Decimal,
    /// FLOAT: single precision, compared after widening to double
    Float,
    /// DOUBLE, REAL
    Double,
    /// DATE, DATETIME, TIMESTAMP
    DateTime,
    Time,
    Json,
    /// strings, blobs, binary, ENUM, SET, BIT: byte-exact
    Bytes,
}

impl Kind {
    /// Maps an information_schema `DATA_TYPE` to a comparison kind.
    pub fn from_data_type(data_type: &str) -> Kind {
        match data_type.to_ascii_lowercase().as_str() {
            "tinyint" | "smallint" | "mediumint" | "int" | "integer" | "bigint" | "year" => Kind::Int,
            "decimal" | "numeric" => Kind::Decimal,
            "float" => Kind::Float,
            "double" | "real" | "double precision" => Kind::Double,
            "date" | "datetime" | "timestamp" => Kind::DateTime,
            "time" => Kind::Time,
            "json" => Kind::Json,
            _ => Kind::Bytes,
        }
    }
}
