//! The TOML configuration of SPEC.md, its defaults, environment overrides and validation.
//!
//! Every key can be overridden from the environment as `BV_<SECTION>_<KEY>` (`BV_SOURCE_URL`,
//! `BV_CHECK_BATCH_SIZE`, `BV_BASE`), so secrets need not sit in files; librdkafka properties go through
//! `BV_SINK_KAFKA_<PROPERTY>` with `_` for `.` (`BV_SINK_KAFKA_SASL_PASSWORD`). Unknown keys, in the file
//! or the environment, are errors: a typo must not silently fall back to a default. Passwords never
//! appear in `Debug` output or logs.

mod endpoint;

use crate::error::{Error, Result, Side};
pub use endpoint::{redact_url, Endpoint, SslMode, Tls};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Sections that take `BV_<SECTION>_<KEY>` overrides.
const SECTIONS: &[&str] = &["source", "target", "check", "binlog", "poll", "sink", "state", "http", "full"];

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "default_base")]
    pub base: String,
    #[serde(default)]
    pub source: Endpoint,
    #[serde(default)]
    pub target: Endpoint,
    #[serde(default, rename = "table")]
    pub tables: Vec<TableConfig>,
    #[serde(default)]
    pub check: CheckConfig,
    #[serde(default)]
    pub full: FullConfig,
    #[serde(default)]
    pub binlog: BinlogConfig,
    #[serde(default)]
    pub poll: PollConfig,
    #[serde(default)]
    pub sink: SinkConfig,
    #[serde(default)]
    pub state: StateConfig,
    #[serde(default)]
    pub http: HttpConfig,
}

fn default_base() -> String {
    "source".into()
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct TableConfig {
    pub name: String,
    /// Key columns; default: the primary key.
    #[serde(default)]
    pub key: Option<Vec<String>>,
    /// Poll mode's change-time column.
    #[serde(default)]
    pub utime: Option<String>,
    /// Columns left out of the comparison.
    #[serde(default)]
    pub ignore: Vec<String>,
    /// The table's name on the [target] side, when it differs (`name` is the [source] side's).
    #[serde(default)]
    pub target_name: Option<String>,
    /// Renamed columns: [source] name → [target] name. Every other column name in this [[table]]
    /// (`key`, `ignore`, `utime`) is the [source] side's.
    #[serde(default)]
    pub columns: BTreeMap<String, String>,
}

impl TableConfig {
    /// The table's name on one side.
    pub fn table_on(&self, side: Side) -> &str {
        match side {
            Side::Source => &self.name,
            Side::Target => self.target_name.as_deref().unwrap_or(&self.name),
        }
    }

    /// A column, named as the [source] side names it, as `side` names it.
    pub fn column_on(&self, side: Side, source_name: &str) -> String {
        match side {
            Side::Source => source_name.to_string(),
            Side::Target => self
                .columns
                .iter()
                .find(|(s, _)| s.eq_ignore_ascii_case(source_name))
                .map_or_else(|| source_name.to_string(), |(_, t)| t.clone()),
        }
    }

    /// A column as `side` names it, in [source] names.
    pub fn source_column(&self, side: Side, name: &str) -> String {
        match side {
            Side::Source => name.to_string(),
            Side::Target => self
                .columns
                .iter()
                .find(|(_, t)| t.eq_ignore_ascii_case(name))
                .map_or_else(|| name.to_string(), |(s, _)| s.clone()),
        }
    }
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields, default)]
pub struct CheckConfig {
    pub batch_size: usize,
    #[serde(deserialize_with = "de_duration")]
    pub settle: Duration,
    /// How long a run waits for the settle window and the outbox to empty before it gives up waiting.
    #[serde(deserialize_with = "de_duration")]
    pub drain_timeout: Duration,
}

impl Default for CheckConfig {
    fn default() -> Self {
        CheckConfig { batch_size: 1000, settle: Duration::from_secs(5), drain_timeout: Duration::from_secs(60) }
    }
}

/// Full-mode tuning (an extension of SPEC.md).
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields, default)]
pub struct FullConfig {
    /// Key ranges checked at once, across all tables.
    pub parallel: usize,
    /// Tables with at least this many rows (server estimate) are split into `parallel` ranges.
    pub split_rows: u64,
    /// Rows read per query while walking a range (the first summary chunk's size too).
    pub chunk_rows: usize,
    /// Summary chunks are resized to take about this long (pt-table-checksum's `--chunk-time`).
    #[serde(deserialize_with = "de_duration")]
    pub chunk_time: Duration,
    /// `Status_variable=limit` (e.g. `Threads_running=25`): pause between chunks while either side is above.
    pub max_load: String,
    /// Rows read per second per side, 0 = unlimited.
    pub rate: u64,
}

impl Default for FullConfig {
    fn default() -> Self {
        FullConfig {
            parallel: 4,
            split_rows: 200_000,
            chunk_rows: 5000,
            chunk_time: Duration::from_millis(500),
            max_load: String::new(),
            rate: 0,
        }
    }
}

impl FullConfig {
    /// `max_load` parsed: the status variable and its limit.
    pub fn max_load(&self) -> Option<(String, u64)> {
        let (var, limit) = self.max_load.split_once('=')?;
        let var = var.trim();
        let ok = !var.is_empty() && var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        ok.then_some(())?;
        Some((var.to_string(), limit.trim().parse().ok()?))
    }
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields, default)]
pub struct BinlogConfig {
    pub server_id: u32,
    pub start: String,
}

impl Default for BinlogConfig {
    fn default() -> Self {
        BinlogConfig { server_id: 9001, start: "now".into() }
    }
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields, default)]
pub struct PollConfig {
    #[serde(deserialize_with = "de_duration")]
    pub interval: Duration,
    pub since: i64,
    #[serde(deserialize_with = "de_duration")]
    pub sweep: Duration,
    /// How late a row may commit behind the newest utime already read (commit and clock skew); each
    /// poll re-reads this much (plus the column's precision) behind its cursor.
    #[serde(deserialize_with = "de_duration")]
    pub skew: Duration,
}

impl Default for PollConfig {
    fn default() -> Self {
        PollConfig {
            interval: Duration::from_secs(1),
            since: 0,
            sweep: Duration::from_secs(600),
            skew: Duration::from_secs(1),
        }
    }
}

#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SinkKind {
    Kafka,
    File,
    Stdout,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields, default)]
pub struct SinkConfig {
    pub kind: SinkKind,
    pub brokers: String,
    pub topic: String,
    pub path: PathBuf,
    /// Undelivered events kept before validation pauses (it never drops one).
    pub outbox_max: usize,
    /// Also send a `resolved` event when a reported row is found equal again.
    pub resolved_events: bool,
    /// librdkafka properties, passed through.
    pub kafka: BTreeMap<String, String>,
}

impl Default for SinkConfig {
    fn default() -> Self {
        SinkConfig {
            kind: SinkKind::Stdout,
            brokers: "127.0.0.1:9092".into(),
            topic: "inconsistent_events".into(),
            path: PathBuf::from("events.jsonl"),
            outbox_max: 100_000,
            resolved_events: false,
            kafka: BTreeMap::new(),
        }
    }
}

impl fmt::Debug for SinkConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kafka: BTreeMap<&str, &str> =
            self.kafka.iter().map(|(k, v)| (k.as_str(), if is_secret_key(k) { "***" } else { v.as_str() })).collect();
        f.debug_struct("SinkConfig")
            .field("kind", &self.kind)
            .field("brokers", &self.brokers)
            .field("topic", &self.topic)
            .field("path", &self.path)
            .field("outbox_max", &self.outbox_max)
            .field("resolved_events", &self.resolved_events)
            .field("kafka", &kafka)
            .finish()
    }
}

fn is_secret_key(k: &str) -> bool {
    let k = k.to_ascii_lowercase();
    k.contains("password") || k.contains("secret") || k.contains("token") || k.ends_with(".key")
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields, default)]
pub struct StateConfig {
    pub dir: PathBuf,
    /// Open rows the inconsistency ledger keeps; past it, reported rows are counted as untracked (with
    /// a warning) and the cutover gate does not answer clean.
    pub ledger_max: usize,
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig { dir: PathBuf::from("./state"), ledger_max: 1_000_000 }
    }
}

#[derive(Deserialize, Clone, Default)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Where `serve` listens; when set, `incr` serves the API too (the cutover gate needs it).
    pub listen: Option<String>,
    pub token: Option<String>,
}

impl HttpConfig {
    /// `listen`, or loopback port 8080 when it is not set.
    pub fn listen(&self) -> &str {
        self.listen.as_deref().unwrap_or("127.0.0.1:8080")
    }
}

impl fmt::Debug for HttpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpConfig")
            .field("listen", &self.listen)
            .field("token", &self.token.as_ref().map(|_| "***"))
            .finish()
    }
}

fn de_duration<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    humantime::parse_duration(&s).map_err(|e| {
        serde::de::Error::custom(format!("`{s}` is not a duration ({e}); write it like \"250ms\", \"5s\" or \"1m\""))
    })
}

impl Config {
    /// The side whose data is the truth.
    pub fn base_side(&self) -> Side {
        if self.base == "target" {
            Side::Target
        } else {
            Side::Source
        }
    }

    /// SPEC.md's `direction`: `SRC` when the base is the source, `DST` when it is the target.
    pub fn direction(&self) -> &'static str {
        match self.base_side() {
            Side::Source => "SRC",
            Side::Target => "DST",
        }
    }

    pub fn endpoint(&self, side: Side) -> &Endpoint {
        match side {
            Side::Source => &self.source,
            Side::Target => &self.target,
        }
    }

    /// Loads `path` (or, when `explicit` is false and the file does not exist, nothing), applies the
    /// `BV_*` environment overrides from `env`, and validates.
    pub fn load(path: &Path, explicit: bool, env: impl IntoIterator<Item = (String, String)>) -> Result<Config> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => String::new(),
            Err(e) => {
                return Err(Error::Config(format!(
                    "cannot read config file {}: {e}; pass --config FILE with a readable file",
                    path.display()
                )))
            }
        };
        let where_ = format!("config file {}", path.display());
        let mut table: toml::Table =
            toml::from_str(&text).map_err(|e| Error::Config(format!("{where_}: {}", one_line(&e, &text))))?;
        let overridden = apply_env(&mut table, env)?;
        let cfg: Config = if overridden {
            let merged = toml::Value::Table(table);
            Config::deserialize(merged)
                .map_err(|e| Error::Config(format!("{where_} with BV_* overrides: {}", e.message().trim())))?
        } else {
            toml::from_str(&text).map_err(|e| Error::Config(format!("{where_}: {}", one_line(&e, &text))))?
        };
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        if self.base != "source" && self.base != "target" {
            return bad(format!("base = \"{}\" is not valid; use \"source\" or \"target\"", self.base));
        }
        for side in [Side::Source, Side::Target] {
            let url = &self.endpoint(side).url;
            if url.is_empty() {
                return bad(format!(
                    "{side}.url is missing; set it in [{side}] or as BV_{}_URL, like mysql://user:pass@127.0.0.1:3306/app",
                    side.as_str().to_uppercase()
                ));
            }
            let opts = mysql_async::Opts::from_url(url).map_err(|e| {
                Error::Config(format!("{side}.url ({}) is not a valid MySQL URL: {e}", redact_url(url)))
            })?;
            if opts.db_name().is_none_or(str::is_empty) {
                return bad(format!(
                    "{side}.url ({}) names no database; add it as the path: mysql://user:pass@host:3306/app",
                    redact_url(url)
                ));
            }
            let tls = Tls::resolve(side, self.endpoint(side))?;
            if self.endpoint(side).ssl_ca.is_some() && !tls.mode.verifies() && tls.mode != SslMode::Disabled {
                // The MySQL client warns the same way: a CA that is not used is a false sense of safety.
                tracing::warn!(
                    "{side}.ssl_ca is not used with {side}.ssl_mode = {}: the server certificate is not verified; set {side}.ssl_mode = \"verify_identity\" (or \"verify_ca\") to verify it",
                    tls.mode
                );
            }
        }
        if self.tables.is_empty() {
            return bad("no [[table]] is configured; add at least one [[table]] with name = \"...\"".into());
        }
        let mut seen = std::collections::HashSet::new();
        for t in &self.tables {
            if t.name.trim().is_empty() {
                return bad("a [[table]] has an empty name; set name = \"...\"".into());
            }
            if !seen.insert(t.name.as_str()) {
                return bad(format!("table `{}` is configured twice; keep one [[table]] per table", t.name));
            }
            if t.target_name.as_deref().is_some_and(|n| n.trim().is_empty()) {
                return bad(format!(
                    "table `{}`: target_name is empty; set it to the table's name on the target",
                    t.name
                ));
            }
            let mut targets = std::collections::HashSet::new();
            for (s, d) in &t.columns {
                if s.trim().is_empty() || d.trim().is_empty() {
                    return bad(format!(
                        "table `{}`: columns maps an empty name; write columns = {{ source_name = \"target_name\" }}",
                        t.name
                    ));
                }
                if !targets.insert(d.to_ascii_lowercase()) {
                    return bad(format!(
                        "table `{}`: columns maps two source columns onto `{d}`; each target column takes one",
                        t.name
                    ));
                }
            }
            if t.key.as_ref().is_some_and(Vec::is_empty) {
                return bad(format!(
                    "table `{}`: key = [] is empty; list the key columns or remove `key` to use the primary key",
                    t.name
                ));
            }
        }
        if self.check.batch_size == 0 || self.check.batch_size > 100_000 {
            return bad(format!("check.batch_size = {} is out of range; use 1 to 100000", self.check.batch_size));
        }
        if self.full.chunk_rows < 2 || self.full.chunk_rows > 1_000_000 {
            return bad(format!("full.chunk_rows = {} is out of range; use 2 to 1000000", self.full.chunk_rows));
        }
        if !self.full.max_load.trim().is_empty() && self.full.max_load().is_none() {
            return bad(format!(
                "full.max_load = \"{}\" is malformed; use \"Status_variable=limit\", e.g. \"Threads_running=25\"",
                self.full.max_load
            ));
        }
        if self.full.chunk_time < Duration::from_millis(10) || self.full.chunk_time > Duration::from_secs(600) {
            return bad("full.chunk_time is out of range; use 10ms to 10m".into());
        }
        if self.full.parallel == 0 || self.full.parallel > 64 {
            return bad(format!("full.parallel = {} is out of range; use 1 to 64", self.full.parallel));
        }
        match self.sink.kind {
            SinkKind::Kafka if self.sink.brokers.is_empty() || self.sink.topic.is_empty() => {
                return bad("sink.kind = \"kafka\" needs sink.brokers and sink.topic".into())
            }
            SinkKind::File if self.sink.path.as_os_str().is_empty() => {
                return bad("sink.kind = \"file\" needs sink.path".into())
            }
            _ => {}
        }
        if self.state.ledger_max == 0 {
            return bad("state.ledger_max must be at least 1".into());
        }
        if self.sink.outbox_max == 0 {
            return bad("sink.outbox_max must be at least 1".into());
        }
        if self.http.listen().parse::<SocketAddr>().is_err() {
            return bad(format!(
                "http.listen = \"{}\" is not an address; use host:port like 127.0.0.1:8080",
                self.http.listen()
            ));
        }
        Ok(())
    }
}

/// A TOML error on one line: position, the key it is about, and the message, without the source snippet
/// (which could show a password).
fn one_line(e: &toml::de::Error, text: &str) -> String {
    let message = e.message().trim();
    let Some(span) = e.span() else { return message.to_string() };
    let before = &text[..span.start.min(text.len())];
    let line_no = before.matches('\n').count() + 1;
    let mut section = String::new();
    for l in before.lines() {
        let l = l.trim();
        if l.starts_with('[') {
            section = l.trim_matches(|c| c == '[' || c == ']').trim().to_string();
        }
    }
    let line = text.lines().nth(line_no - 1).unwrap_or_default();
    match line.split_once('=') {
        Some((k, _)) if !k.trim().is_empty() && !k.contains('[') => {
            let key = if section.is_empty() { k.trim().to_string() } else { format!("{section}.{}", k.trim()) };
            format!("line {line_no}, key `{key}`: {message}")
        }
        _ => format!("line {line_no}: {message}"),
    }
}

/// Applies `BV_*` overrides onto the parsed file. Returns whether any applied.
fn apply_env(table: &mut toml::Table, env: impl IntoIterator<Item = (String, String)>) -> Result<bool> {
    let mut any = false;
    for (name, value) in env {
        let Some(rest) = name.strip_prefix("BV_") else {
            continue;
        };
        let rest = rest.to_ascii_lowercase();
        any = true;
        if rest == "base" {
            table.insert("base".into(), toml::Value::String(value));
            continue;
        }
        let Some((section, key)) = SECTIONS
            .iter()
            .find_map(|s| rest.strip_prefix(s).and_then(|k| k.strip_prefix('_')).map(|k| (*s, k.to_string())))
        else {
            return Err(Error::Config(format!(
                "environment variable {name} is not a known override; use BV_<SECTION>_<KEY> with a section of {} (or BV_BASE)",
                SECTIONS.join(", ")
            )));
        };
        let sec = table
            .entry(section)
            .or_insert_with(|| toml::Value::Table(Default::default()))
            .as_table_mut()
            .ok_or_else(|| Error::Config(format!("`{section}` must be a table ([{section}])")))?;
        if section == "sink" && key.starts_with("kafka_") {
            let prop = key["kafka_".len()..].replace('_', ".");
            let kafka = sec
                .entry("kafka")
                .or_insert_with(|| toml::Value::Table(Default::default()))
                .as_table_mut()
                .ok_or_else(|| Error::Config("`sink.kafka` must be a table ([sink.kafka])".into()))?;
            kafka.insert(prop, toml::Value::String(value));
        } else {
            sec.insert(key, typed(&value));
        }
    }
    Ok(any)
}

/// An environment value as TOML: integers and booleans typed, everything else a string.
fn typed(v: &str) -> toml::Value {
    if let Ok(i) = v.parse::<i64>() {
        return toml::Value::Integer(i);
    }
    match v {
        "true" => toml::Value::Boolean(true),
        "false" => toml::Value::Boolean(false),
        _ => toml::Value::String(v.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[source]
url = "mysql://u:secret@127.0.0.1:3306/app"
[target]
url = "mysql://u:secret@127.0.0.1:3307/app"
[[table]]
name = "users"
"#;

    fn load_str(text: &str, env: Vec<(&str, &str)>) -> Result<Config> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, text).unwrap();
        Config::load(&path, true, env.into_iter().map(|(a, b)| (a.to_string(), b.to_string())))
    }

    #[test]
    fn defaults_and_direction() {
        let c = load_str(MINIMAL, vec![]).unwrap();
        assert_eq!(c.check.batch_size, 1000);
        assert_eq!(c.check.settle, Duration::from_secs(5));
        assert_eq!(c.direction(), "SRC");
        assert_eq!(c.sink.kind, SinkKind::Stdout);
    }

    #[test]
    fn env_overrides_win() {
        let c = load_str(
            MINIMAL,
            vec![
                ("BV_BASE", "target"),
                ("BV_CHECK_BATCH_SIZE", "7"),
                ("BV_CHECK_SETTLE", "250ms"),
                ("BV_SOURCE_URL", "mysql://a:b@h:1/x"),
                ("BV_SINK_KAFKA_SASL_PASSWORD", "pw"),
                ("PATH", "/bin"),
            ],
        )
        .unwrap();
        assert_eq!(c.direction(), "DST");
        assert_eq!(c.check.batch_size, 7);
        assert_eq!(c.check.settle, Duration::from_millis(250));
        assert_eq!(c.source.url, "mysql://a:b@h:1/x");
        assert_eq!(c.sink.kafka.get("sasl.password").map(String::as_str), Some("pw"));
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = load_str(&format!("{MINIMAL}\n[check]\nbatsh_size = 5\n"), vec![]).unwrap_err().to_string();
        assert!(e.contains("batsh_size"), "{e}");
        let e = load_str(MINIMAL, vec![("BV_NOPE_X", "1")]).unwrap_err().to_string();
        assert!(e.contains("BV_NOPE_X"), "{e}");
    }

    #[test]
    fn bad_values_name_the_key_and_the_fix() {
        let e = load_str(&format!("{MINIMAL}\n[check]\nsettle = \"soon\"\n"), vec![]).unwrap_err().to_string();
        assert!(e.contains("settle") && e.contains("5s"), "{e}");
        let e = load_str(MINIMAL, vec![("BV_BASE", "left")]).unwrap_err().to_string();
        assert!(e.contains("base") && e.contains("\"target\""), "{e}");
        let e = load_str("[[table]]\nname='t'\n", vec![]).unwrap_err().to_string();
        assert!(e.contains("source.url is missing"), "{e}");
        let e = load_str("this is not toml", vec![]).unwrap_err().to_string();
        assert!(e.contains("config file"), "{e}");
    }

    #[test]
    fn passwords_are_redacted() {
        let c = load_str(MINIMAL, vec![("BV_HTTP_TOKEN", "tok"), ("BV_SINK_KAFKA_SASL_PASSWORD", "pw")]).unwrap();
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("secret") && !dbg.contains("tok\"") && !dbg.contains("\"pw\""), "{dbg}");
        assert_eq!(redact_url("mysql://u:p@h:1/d"), "mysql://u:***@h:1/d");
        assert_eq!(redact_url("mysql://u@h:1/d"), "mysql://u@h:1/d");
    }
}
