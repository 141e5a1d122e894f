//! A client for the tests: requests over fresh connections, fully read answers, raw bytes.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// A response, fully read.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().expect("ascii header"))
    }

    pub fn all(&self, name: &str) -> Vec<String> {
        self.headers.get_all(name).iter().map(|v| v.to_str().unwrap_or("?").to_owned()).collect()
    }

    /// Whether any `Access-Control-Allow-*` header is present.
    pub fn has_allow_headers(&self) -> bool {
        self.headers.keys().any(|k| k.as_str().starts_with("access-control-allow-"))
    }
}

pub async fn send(method: &str, url: &str, headers: &[(&str, &str)]) -> Result<Answer, String> {
    let mut req = Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    exchange(req.body(Full::new(Bytes::new())).map_err(|e| e.to_string())?).await
}

/// Sends a request over a fresh client and reads the whole answer (15 s at most).
async fn exchange(req: Request<Full<Bytes>>) -> Result<Answer, String> {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let resp = tokio::time::timeout(Duration::from_secs(15), client.request(req))
        .await
        .map_err(|_| "timeout".to_owned())?
        .map_err(|e| e.to_string())?;
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok(Answer { status: parts.status.as_u16(), headers: parts.headers, body })
}

pub async fn get(url: &str, headers: &[(&str, &str)]) -> Result<Answer, String> {
    send("GET", url, headers).await
}

/// Writes raw bytes to `addr` and returns everything read until the server closes or 2 s pass.
pub fn raw(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(2))).expect("timeout");
    s.write_all(request).expect("write");
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                if out.windows(4).any(|w| w == b"\r\n\r\n") && !out.starts_with(b"HTTP/1.1 101") {
                    // Enough for a status line and headers of our small error answers.
                    if String::from_utf8_lossy(&out).contains("content-length: ") {
                        let text = String::from_utf8_lossy(&out).into_owned();
                        if body_complete(&text) {
                            break;
                        }
                    }
                }
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn body_complete(text: &str) -> bool {
    let Some((head, body)) = text.split_once("\r\n\r\n") else { return false };
    let len = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length: ").map(|v| v.trim().parse::<usize>().ok()))
        .flatten();
    len.is_some_and(|n| body.len() >= n)
}

pub fn header_map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// Sends a request with a JSON body.
pub async fn send_body(method: &str, url: &str, body: &str) -> Result<Answer, String> {
    let req = Request::builder()
        .method(method)
        .uri(url)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_owned())))
        .map_err(|e| e.to_string())?;
    exchange(req).await
}

/// One HTTP/1.1 response read off a blocking socket: status, headers (lower-case names) and
/// body (content-length or chunked).
pub struct Http1Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Http1Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// Reads responses from a blocking keep-alive socket, one at a time, keeping bytes that arrived beyond the one being read.
pub struct Http1Reader {
    pub s: TcpStream,
    /// Bytes read beyond the answers taken so far.
    pub buf: Vec<u8>,
}

impl Http1Reader {
    /// Reads from `s`, each read waiting at most 20 s.
    pub fn new(s: TcpStream) -> Self {
        s.set_read_timeout(Some(Duration::from_secs(20))).expect("read timeout");
        Self { s, buf: vec![] }
    }

    fn fill(&mut self) {
        let mut chunk = [0u8; 16384];
        let n = self.s.read(&mut chunk).expect("read from the sidecar");
        assert!(n > 0, "the sidecar closed the connection; had {:?}", String::from_utf8_lossy(&self.buf));
        self.buf.extend_from_slice(&chunk[..n]);
    }

    /// The next `n` bytes (reading until they have come).
    pub fn take(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            self.fill();
        }
        self.buf.drain(..n).collect()
    }

    fn line(&mut self) -> String {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = self.take(i + 2);
                return String::from_utf8_lossy(&line[..i]).into_owned();
            }
            self.fill();
        }
    }

    /// The next answer (status line, headers, and a `content-length` or chunked body).
    pub fn answer(&mut self) -> Http1Answer {
        let status_line = self.line();
        let status = status_line.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        let mut headers = vec![];
        loop {
            let l = self.line();
            if l.is_empty() {
                break;
            }
            let (n, v) = l.split_once(':').expect("a header line");
            headers.push((n.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
        let mut a = Http1Answer { status, headers, body: vec![] };
        if let Some(len) = a.header("content-length") {
            let len: usize = len.parse().expect("content-length");
            a.body = self.take(len);
        } else if a.header("transfer-encoding").is_some_and(|t| t.contains("chunked")) {
            loop {
                let size = usize::from_str_radix(self.line().split(';').next().unwrap_or("0"), 16).expect("chunk size");
                if size == 0 {
                    while !self.line().is_empty() {}
                    break;
                }
                let chunk = self.take(size);
                a.body.extend_from_slice(&chunk);
                assert_eq!(self.line(), "", "chunk end");
            }
        }
        a
    }

    /// The peer closed the connection (after all answers were read): a read gives 0 bytes.
    pub fn closed(&mut self) -> bool {
        let mut b = [0u8; 64];
        matches!(self.s.read(&mut b), Ok(0)) && self.buf.is_empty()
    }
}
