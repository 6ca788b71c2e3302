//! A minimal HTTP/1.1 client for the command-line clients of the API (`cutover`): one request on a fresh
//! loopback connection, `Connection: close`, the whole answer read. No TLS: the API listens on loopback.

use crate::error::{Error, Result};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The answer: HTTP status and the JSON body (`Null` when it is not JSON).
pub struct Answer {
    pub status: u16,
    pub body: serde_json::Value,
}

/// Where to connect for an API listening on `listen` (a wildcard address means this host's loopback).
fn connect_addr(listen: &str) -> String {
    match listen.rsplit_once(':') {
        Some(("0.0.0.0", port)) => format!("127.0.0.1:{port}"),
        Some(("[::]", port)) => format!("[::1]:{port}"),
        _ => listen.to_string(),
    }
}

/// GETs `path`; waits at most `timeout` for the whole answer.
pub async fn get(listen: &str, path: &str, token: Option<&str>, timeout: Duration) -> Result<Answer> {
    request(listen, "GET", path, token, None, timeout).await
}

/// POSTs `body` to `path`; waits at most `timeout` for the whole answer.
pub async fn post(
    listen: &str,
    path: &str,
    token: Option<&str>,
    body: &serde_json::Value,
    timeout: Duration,
) -> Result<Answer> {
    request(listen, "POST", path, token, Some(body), timeout).await
}

async fn request(
    listen: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&serde_json::Value>,
    timeout: Duration,
) -> Result<Answer> {
    let addr = connect_addr(listen);
    let unreachable = |e: std::io::Error| {
        Error::Config(format!(
            "cannot reach the validator's HTTP API at {addr} ({e}); start `serve`, or `incr` with http.listen set, with this config"
        ))
    };
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(&addr).await.map_err(unreachable)?;
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).await.map_err(unreachable)?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await.map_err(unreachable)?;
        Ok::<_, Error>(raw)
    };
    let raw = tokio::time::timeout(timeout, exchange).await.map_err(|_| {
        Error::Config(format!("the validator's HTTP API at {addr} did not answer within {timeout:?}"))
    })??;
    parse(&raw)
        .ok_or_else(|| Error::Config(format!("the validator's HTTP API at {addr} sent an answer that is not HTTP")))
}

fn parse(raw: &[u8]) -> Option<Answer> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    // The API answers with a Content-Length body (axum); chunked bodies are not expected here.
    let body = serde_json::from_str(body).unwrap_or(serde_json::Value::Null);
    Some(Answer { status, body })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_and_addresses() {
        let a = parse(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 11\r\n\r\n{\"code\":1}").unwrap();
        assert_eq!((a.status, a.body["code"].as_i64()), (503, Some(1)));
        assert!(parse(b"garbage").is_none());
        assert_eq!(connect_addr("0.0.0.0:8080"), "127.0.0.1:8080");
        assert_eq!(connect_addr("127.0.0.1:9"), "127.0.0.1:9");
    }
}
