//! Fuzz targets of Portcullis, one module each: bytes in, no panic and the module's invariants
//! out. The same functions run under libFuzzer (`fuzz_targets/`, built on the stable toolchain
//! by `fuzz/run.sh`) and under `cargo test` (`tests/corpus.rs` replays `fuzz/corpus/<target>/`
//! on every CI run). Test-only code: nothing here is linked into the sidecar or the operator.

pub mod decide;
pub mod headers;
pub mod jwt;
pub mod manifests;
pub mod push;

use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Method, Uri};

/// A fuzz target: bytes in; a panic is a finding.
pub type Target = fn(&[u8]);

/// The targets, by the name of their corpus directory.
pub const TARGETS: [(&str, Target); 5] = [
    ("decide", decide::run),
    ("manifests", manifests::run),
    ("push", push::run),
    ("jwt", jwt::run),
    ("headers", headers::run),
];

/// Reads `data` as a request: the first line the method, the second the target, then
/// `name: value` header lines (lines that are not a valid header are skipped). `None` when the
/// target is not a valid URI.
pub fn request(data: &[u8]) -> Option<(Method, Uri, HeaderMap)> {
    let mut lines = data.split(|b| *b == b'\n');
    let method = lines.next().and_then(|m| Method::from_bytes(m).ok()).unwrap_or(Method::GET);
    let uri = lines.next().and_then(|u| Uri::try_from(u).ok())?;
    let mut headers = HeaderMap::new();
    for line in lines {
        let Some(colon) = line.iter().position(|b| *b == b':') else { continue };
        let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(&line[..colon]), HeaderValue::from_bytes(line[colon + 1..].trim_ascii()))
        else {
            continue;
        };
        headers.append(name, value);
    }
    Some((method, uri, headers))
}
