//! Request-path normalisation shared by `compile` (domain and route prefixes) and the sidecar
//! (every request), so that what is matched is what is configured: one implementation.
//!
//! RFC 3986 §6.2.2: percent-encoded unreserved characters are decoded and hex digits upper-cased
//! (§6.2.2.1-2), then dot segments are removed (§5.2.4). `/public/../admin` becomes `/admin`,
//! `/%61dmin` becomes `/admin`, so neither can borrow a Bypass policy on `/public`.

use std::borrow::Cow;

/// Why a path cannot be normalised.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the path must start with '/'")]
    NotAbsolute,
    #[error("the path has a '%' not followed by two hex digits")]
    BadPercentEncoding,
    #[error("the path contains a control character or space")]
    InvalidCharacter,
}

/// Normalises an origin-form path (no query). Borrows when nothing changes, the common case.
pub fn normalize_path(path: &str) -> Result<Cow<'_, str>, PathError> {
    if !path.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    let bytes = path.as_bytes();
    if bytes.iter().any(|b| *b <= b' ' || *b == 0x7f) {
        return Err(PathError::InvalidCharacter);
    }
    let needs_decode = bytes.contains(&b'%');
    let needs_dots = has_dot_segment(path);
    if !needs_decode && !needs_dots {
        return Ok(Cow::Borrowed(path));
    }
    let decoded = if needs_decode { decode_unreserved(path)? } else { path.to_owned() };
    Ok(Cow::Owned(remove_dot_segments(&decoded)))
}

fn has_dot_segment(path: &str) -> bool {
    path.split('/').skip(1).any(|seg| seg == "." || seg == "..")
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn decode_unreserved(path: &str) -> Result<String, PathError> {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let (Some(hi), Some(lo)) =
                (bytes.get(i + 1).copied().and_then(hex_val), bytes.get(i + 2).copied().and_then(hex_val))
            else {
                return Err(PathError::BadPercentEncoding);
            };
            let v = hi * 16 + lo;
            if is_unreserved(v) {
                out.push(v as char);
            } else {
                out.push('%');
                out.push(char::from(b"0123456789ABCDEF"[usize::from(hi)]));
                out.push(char::from(b"0123456789ABCDEF"[usize::from(lo)]));
            }
            i += 3;
        } else {
            // Multi-byte UTF-8 is copied byte-run by byte-run through the char boundary.
            let ch_len = path[i..].chars().next().map_or(1, char::len_utf8);
            out.push_str(&path[i..i + ch_len]);
            i += ch_len;
        }
    }
    Ok(out)
}

/// RFC 3986 §5.2.4 on an absolute path; the result always starts with '/'.
fn remove_dot_segments(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let last = segments.len().saturating_sub(1);
    let mut trailing_slash = false;
    for (i, seg) in segments.iter().enumerate() {
        match *seg {
            "." => trailing_slash = i == last,
            ".." => {
                out.pop();
                trailing_slash = i == last;
            }
            s => {
                out.push(s);
                trailing_slash = false;
            }
        }
    }
    let mut result = String::with_capacity(path.len());
    for seg in &out {
        result.push('/');
        result.push_str(seg);
    }
    if trailing_slash || result.is_empty() {
        result.push('/');
    }
    result
}

/// Whether `path` is under `prefix` on a segment boundary. `prefix` is normalised and has no
/// trailing slash (`/v2` matches `/v2` and `/v2/x`, never `/v2beta`); `""` or `/` match all.
pub fn prefix_matches(prefix: &str, path: &str) -> bool {
    let prefix = prefix.strip_suffix('/').unwrap_or(prefix);
    if prefix.is_empty() {
        return true;
    }
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn normalises() {
        let cases = [
            ("/", "/"),
            ("/a/b", "/a/b"),
            ("/public/../admin", "/admin"),
            ("/public/./x", "/public/x"),
            ("/a/b/..", "/a/"),
            ("/..", "/"),
            ("/../../etc/passwd", "/etc/passwd"),
            ("/%61dmin", "/admin"),
            ("/public/%2e%2e/admin", "/admin"),
            ("/a%2fb", "/a%2Fb"),
            ("/caf%C3%A9", "/caf%C3%A9"),
            ("/x/%7euser", "/x/~user"),
            ("/a//b", "/a//b"),
        ];
        for (input, want) in cases {
            assert_eq!(normalize_path(input).as_deref(), Ok(want), "{input}");
        }
    }

    #[test]
    fn rejects_invalid() {
        assert_eq!(normalize_path("a/b"), Err(PathError::NotAbsolute));
        assert_eq!(normalize_path("/%zz"), Err(PathError::BadPercentEncoding));
        assert_eq!(normalize_path("/%4"), Err(PathError::BadPercentEncoding));
        assert_eq!(normalize_path("/a b"), Err(PathError::InvalidCharacter));
    }

    #[test]
    fn prefix_on_segment_boundaries() {
        assert!(prefix_matches("/v2", "/v2"));
        assert!(prefix_matches("/v2", "/v2/x"));
        assert!(prefix_matches("/v2/", "/v2/x"));
        assert!(!prefix_matches("/v2", "/v2beta"));
        assert!(!prefix_matches("/v2", "/v"));
        assert!(prefix_matches("", "/anything"));
        assert!(prefix_matches("/", "/anything"));
    }

    proptest! {
        #[test]
        fn normalisation_is_idempotent_and_has_no_dot_segments(p in "/[a-z./%0-9A-F]{0,40}") {
            if let Ok(n) = normalize_path(&p) {
                let again = normalize_path(&n).unwrap();
                prop_assert_eq!(again.as_ref(), n.as_ref());
                prop_assert!(!has_dot_segment(&n));
                prop_assert!(n.starts_with('/'));
            }
        }

        #[test]
        fn a_prefix_match_survives_no_traversal(seg in "[a-z]{1,8}") {
            // `/public/../<seg>` never stays under `/public`.
            let p = format!("/public/../{seg}");
            let n = normalize_path(&p).unwrap();
            prop_assert!(!prefix_matches("/public", &n) || seg == "public");
        }
    }
}
