//! Request-path canonicalisation shared by `compile` (domain and route prefixes) and the sidecar
//! (every request), so that what is matched is what is configured, and what is forwarded is
//! what was matched: one implementation (api.md, "Domains" and "What the app receives is what
//! was decided").
//!
//! RFC 3986 §6.2.2: percent-encoded unreserved characters are decoded and hex digits upper-cased
//! (§6.2.2.1-2), then dot segments are removed (§5.2.4) and repeated slashes merged. A segment's
//! `;parameters` are kept in the path the app receives but ignored for matching, as servlet
//! containers read paths (Tomcat, Jetty, Spring strip them), and a segment is a dot segment by
//! its name without parameters (`..;x` is `..` to Tomcat, so it is `..` here). So `//admin`,
//! `/public/../admin`, `/%61dmin`, `/admin;p=1/x` and `/public/..;/admin` all match as `/admin…`.
//!
//! What cannot be canonicalised without guessing how the app decodes is flagged
//! [`CanonicalPath::ambiguous`]: an encoded slash, backslash, semicolon or percent sign (`%2F`,
//! `%5C`, `%3B`, `%25`: a double-encoded path), a raw `\`, an encoded NUL or control byte. Whether that is refused is the caller's call (per application,
//! `spec.paths.escapedSlashes`); [`readings`] gives the path as each kind of server that decodes
//! them would see it, so a caller can check that every reading lands in the same place.
//!
//! Must not: allocate when the path is already canonical (the common case), or know about hosts,
//! applications or HTTP.

use std::borrow::Cow;

/// Why a path cannot be canonicalised at all (a `400` on the request path).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the path must start with '/'")]
    NotAbsolute,
    #[error("the path has a '%' not followed by two hex digits")]
    BadPercentEncoding,
    #[error("the path contains a control character or space")]
    InvalidCharacter,
}

/// A request path in canonical form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CanonicalPath<'a> {
    /// What the app receives: unreserved escapes decoded, dot segments and empty segments
    /// removed, `;parameters` kept.
    pub forward: Cow<'a, str>,
    /// What routing matches: `forward` without the `;parameters` of each segment.
    pub matching: Cow<'a, str>,
    /// The path holds `%2F`, `%5C`, `%3B`, `%25`, a raw `\` or an encoded control byte (`%00`–`%1F`, `%7F`):
    /// servers disagree on what such a path names.
    pub ambiguous: bool,
}

/// Canonicalises an origin-form path (no query). Borrows when nothing changes.
pub fn canonical_path(path: &str) -> Result<CanonicalPath<'_>, PathError> {
    if !path.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    let mut needs_decode = false;
    let mut ambiguous = false;
    let mut has_params = false;
    for &b in path.as_bytes() {
        match b {
            0..=b' ' | 0x7f => return Err(PathError::InvalidCharacter),
            b'%' => needs_decode = true,
            b'\\' => ambiguous = true,
            b';' => has_params = true,
            _ => {}
        }
    }
    let needs_segments = has_params || path.contains("//") || has_dot_segment(path);
    if !needs_decode && !needs_segments {
        return Ok(CanonicalPath { forward: Cow::Borrowed(path), matching: Cow::Borrowed(path), ambiguous });
    }
    let decoded = if needs_decode {
        let (decoded, escaped) = decode_unreserved(path)?;
        ambiguous |= escaped;
        decoded
    } else {
        path.to_owned()
    };
    let forward = rebuild_segments(&decoded, false);
    let matching = if forward.contains(';') { Cow::Owned(rebuild_segments(&forward, true)) } else { Cow::Borrowed("") };
    let forward: Cow<'_, str> = Cow::Owned(forward);
    let matching = match matching {
        Cow::Borrowed(_) => forward.clone(),
        owned => owned,
    };
    Ok(CanonicalPath { forward, matching, ambiguous })
}

/// Normalises a configured path prefix (`spec.domains`, `spec.forwardRoutes`): the matching form,
/// refusing what a prefix has no business holding (parameters, ambiguous escapes).
pub fn normalize_prefix(path: &str) -> Result<String, String> {
    let c = canonical_path(path).map_err(|e| e.to_string())?;
    if c.ambiguous {
        return Err("a path prefix must not contain %2F, %5C, '\\' or an encoded control character".into());
    }
    if path.contains(';') {
        return Err("a path prefix must not contain ';' (requests are matched without ;parameters)".into());
    }
    Ok(c.matching.into_owned())
}

/// Every way a server may read a path that holds escapes, in matching form (`None` for a reading
/// that is not a valid path): decoded zero to a few times — every escape, `%2F`, `%5C`, `%3B`
/// and `%25` included, as an app behind a server that decoded already decodes again (`%252F` is
/// `%2F` after one round and `/` after two) — and each of those with `\` kept as a byte and read
/// as `/` (IIS, Tomcat's `ALLOW_BACKSLASH`, some frameworks). Both backslash readings count:
/// `/files/%5C/..%2F` is `/files/` to a server that keeps the decoded `\`, and `/` to one that
/// takes it for a slash.
///
/// Start from the path the app receives, `;parameters` included: a server that decodes before
/// it strips parameters reads `/files/a;x%2F..%2F..` as `/`, one that strips first as `/files/a`.
pub fn readings(path: &str) -> Vec<Option<String>> {
    const ROUNDS: usize = 4;
    // The path, then each round's result while decoding still changes it.
    let decoded = std::iter::successors(Some(path.to_owned()), |p| Some(decode_round(p)).filter(|next| next != p));
    decoded
        .take(1 + ROUNDS)
        .flat_map(|p| {
            let slashes = p.contains('\\').then(|| p.replace('\\', "/"));
            [Some(p), slashes].into_iter().flatten()
        })
        .map(|p| canonical_path(&p).ok().map(|c| c.matching.into_owned()))
        .collect()
}

/// One round of [`readings`]: each valid `%XX` decoded; what a path cannot hold raw afterwards
/// (controls, space, non-ASCII bytes, a `%` that starts no escape) is escaped again, so the
/// result is a path and a literal `%` is a fixed point (`%25` stays). A decoded `\` stays raw,
/// for the caller to read both ways.
fn decode_round(path: &str) -> String {
    let b = path.as_bytes();
    let mut raw = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match (b[i], escape_at(b, i)) {
            (b'%', Some(v)) => {
                raw.push(v);
                i += 3;
                continue;
            }
            (c, _) => raw.push(c),
        }
        i += 1;
    }
    let mut out = String::with_capacity(raw.len());
    for (j, &c) in raw.iter().enumerate() {
        let lone_percent = c == b'%' && escape_at(&raw, j).is_none();
        if c <= b' ' || c >= 0x7f || lone_percent {
            push_escape(&mut out, c);
        } else {
            out.push(char::from(c));
        }
    }
    out
}

fn has_dot_segment(path: &str) -> bool {
    path.split('/').skip(1).any(|seg| seg == "." || seg == "..")
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// The byte the two hex digits after `bytes[i]` (a `%`) encode; `None` when they are not two hex
/// digits.
fn escape_at(bytes: &[u8], i: usize) -> Option<u8> {
    Some(bytes.get(i + 1).copied().and_then(hex_val)? * 16 + bytes.get(i + 2).copied().and_then(hex_val)?)
}

/// `%XX` for `byte`, upper-case hex (RFC 3986 §6.2.2.1).
fn push_escape(out: &mut String, byte: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('%');
    out.push(char::from(HEX[usize::from(byte >> 4)]));
    out.push(char::from(HEX[usize::from(byte & 0xf)]));
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes unreserved escapes and upper-cases the others; the flag says whether an escape is
/// ambiguous (`/`, `\`, a control byte).
fn decode_unreserved(path: &str) -> Result<(String, bool), PathError> {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut ambiguous = false;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let Some(v) = escape_at(bytes, i) else {
                return Err(PathError::BadPercentEncoding);
            };
            if is_unreserved(v) {
                out.push(v as char);
            } else {
                // `%3B` too: `;` delimits path parameters, and a server that decodes before it
                // strips them (Jetty, CVE-2021-34429; Spring's firewall refuses it) reads
                // `/%3B/admin` as `/admin`.
                // `%25` too: an app that decodes twice reads `%252e%252e` as `..` (Spring's
                // StrictHttpFirewall refuses an encoded percent for that reason).
                ambiguous |= matches!(v, b'/' | b'\\' | b';' | b'%' | 0..=0x1f | 0x7f);
                push_escape(&mut out, v);
            }
            i += 3;
        } else {
            // Multi-byte UTF-8 is copied char by char through the boundary.
            let ch_len = path[i..].chars().next().map_or(1, char::len_utf8);
            out.push_str(&path[i..i + ch_len]);
            i += ch_len;
        }
    }
    Ok((out, ambiguous))
}

/// RFC 3986 §5.2.4 on an absolute path, plus merged slashes; a segment is judged by its name
/// before any `;`. With `drop_params` the parameters are removed from the kept segments too.
/// The result always starts with '/'.
fn rebuild_segments(path: &str, drop_params: bool) -> String {
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let last = segments.len().saturating_sub(1);
    let mut trailing_slash = false;
    for (i, seg) in segments.iter().enumerate() {
        let name = seg.split(';').next().unwrap_or("");
        match name {
            // An empty segment (`//`, or `/;x/`) is merged away; at the end it is a trailing slash.
            "" | "." => trailing_slash = i == last,
            ".." => {
                out.pop();
                trailing_slash = i == last;
            }
            _ => {
                out.push(if drop_params { name } else { seg });
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

/// The rest of `path` (forwarding form, `;parameters` kept) after the segments of `prefix`
/// (matching form, as stored by [`normalize_prefix`]): what a route with `stripPrefix` sends
/// on. A segment's parameters belong to it (RFC 3986 §3.3), so `/api;v=1/items` under `/api`
/// is `/items`: the same segments [`prefix_matches`] matched on the parameter-free form.
/// `None` when the segments do not match.
pub fn strip_prefix_segments<'a>(prefix: &str, path: &'a str) -> Option<&'a str> {
    let mut rest = path;
    for want in prefix.trim_end_matches('/').split('/').skip(1) {
        let after = rest.strip_prefix('/')?;
        let end = after.find('/').unwrap_or(after.len());
        let name = after[..end].split(';').next().unwrap_or("");
        if name != want {
            return None;
        }
        rest = &after[end..];
    }
    Some(rest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn matching(p: &str) -> String {
        canonical_path(p).unwrap().matching.into_owned()
    }

    #[test]
    fn strips_prefix_segments_with_their_parameters() {
        assert_eq!(strip_prefix_segments("/api", "/api/items"), Some("/items"));
        assert_eq!(strip_prefix_segments("/api", "/api;v=1/items;x"), Some("/items;x"));
        assert_eq!(strip_prefix_segments("/api", "/api;v=1"), Some(""));
        assert_eq!(strip_prefix_segments("/api/v2", "/api;a/v2;b/x"), Some("/x"));
        assert_eq!(strip_prefix_segments("/api", "/apix/items"), None);
        assert_eq!(strip_prefix_segments("/api", "/x/api"), None);
        assert_eq!(strip_prefix_segments("", "/x"), Some("/x"));
    }

    #[test]
    fn canonicalises() {
        // (input, forwarded, matched)
        let cases = [
            ("/", "/", "/"),
            ("/a/b", "/a/b", "/a/b"),
            ("/public/../admin", "/admin", "/admin"),
            ("/public/./x", "/public/x", "/public/x"),
            ("/a/b/..", "/a/", "/a/"),
            ("/..", "/", "/"),
            ("/../../etc/passwd", "/etc/passwd", "/etc/passwd"),
            ("/%61dmin", "/admin", "/admin"),
            ("/public/%2e%2e/admin", "/admin", "/admin"),
            ("/caf%C3%A9", "/caf%C3%A9", "/caf%C3%A9"),
            ("/x/%7euser", "/x/~user", "/x/~user"),
            // Repeated slashes are merged: `//admin` is `/admin` to Python's http.server.
            ("//admin/x", "/admin/x", "/admin/x"),
            ("/a//b///", "/a/b/", "/a/b/"),
            // `;parameters`: kept for the app, ignored for matching (servlet containers).
            ("/admin;p=1/x", "/admin;p=1/x", "/admin/x"),
            ("/public/..;/admin", "/admin", "/admin"),
            ("/;x/admin", "/admin", "/admin"),
            ("/a;b=c", "/a;b=c", "/a"),
        ];
        for (input, forward, want) in cases {
            let c = canonical_path(input).unwrap();
            assert_eq!((c.forward.as_ref(), c.matching.as_ref()), (forward, want), "{input}");
            assert!(!c.ambiguous, "{input}");
        }
    }

    #[test]
    fn flags_ambiguous_escapes() {
        for p in [
            "/%3B/admin",
            "/admin%3bx",
            "/admin%2Fx",
            "/%2fadmin/x",
            "/public/..%2Fadmin/x",
            "/a%5Cb",
            "/a\\b",
            "/a%00",
            "/a%1f",
            "/a%7F",
        ] {
            assert!(canonical_path(p).unwrap().ambiguous, "{p}");
        }
        assert_eq!(canonical_path("/a%2fb").unwrap().forward, "/a%2Fb");
    }

    #[test]
    fn borrows_canonical_paths() {
        for p in ["/", "/data", "/a/b.c/d-e_f~g", "/v2/"] {
            let c = canonical_path(p).unwrap();
            assert!(matches!(c.forward, Cow::Borrowed(_)) && matches!(c.matching, Cow::Borrowed(_)), "{p}");
        }
    }

    /// [`readings`], an invalid one shown as `invalid`.
    fn read(path: &str) -> Vec<String> {
        readings(path).into_iter().map(|r| r.unwrap_or_else(|| "invalid".into())).collect()
    }

    #[test]
    fn readings_decode_twice_encoded_paths() {
        assert_eq!(read("/files/%252e%252e/admin"), ["/files/%252e%252e/admin", "/admin", "/admin"]);
        assert_eq!(read("/a%252Fb"), ["/a%252Fb", "/a%2Fb", "/a/b"]);
        assert_eq!(read("/x%25%32%46y").last().map(String::as_str), Some("/x/y"));
        // A literal percent sign stays one: the readings are stable, not refused.
        assert_eq!(read("/files/100%25"), ["/files/100%25"]);
        assert_eq!(read("/a%2Fb%20c"), ["/a%2Fb%20c", "/a/b%20c"]);
        assert!(canonical_path("/files/%252e%252e/admin").unwrap().ambiguous);
    }

    #[test]
    fn readings_take_a_backslash_both_as_a_byte_and_as_a_slash() {
        assert_eq!(read("/public/..%2Fadmin/x"), ["/public/..%2Fadmin/x", "/admin/x"]);
        assert_eq!(read("/admin%2fx"), ["/admin%2Fx", "/admin/x"]);
        assert_eq!(read("/a\\..\\admin"), ["/a\\..\\admin", "/admin"]);
        assert_eq!(read("/files/%5C/..%2F"), ["/files/%5C/..%2F", "/files/", "/"]);
        assert_eq!(read("/files/a;x%2F..%2F.."), ["/files/a", "/"]);
        assert_eq!(read("/files/report.pdf"), ["/files/report.pdf"]);
    }

    #[test]
    fn rejects_invalid() {
        assert_eq!(canonical_path("a/b"), Err(PathError::NotAbsolute));
        assert_eq!(canonical_path("/%zz"), Err(PathError::BadPercentEncoding));
        assert_eq!(canonical_path("/%4"), Err(PathError::BadPercentEncoding));
        assert_eq!(canonical_path("/a b"), Err(PathError::InvalidCharacter));
    }

    #[test]
    fn prefixes() {
        assert_eq!(normalize_prefix("/v2/../admin/").as_deref(), Ok("/admin/"));
        assert!(normalize_prefix("/a;b").is_err());
        assert!(normalize_prefix("/a%2Fb").is_err());
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
        fn canonical_forms_are_fixed_points(p in "/[a-z./;=%0-9A-F\\\\]{0,40}") {
            if let Ok(c) = canonical_path(&p) {
                let again = canonical_path(&c.forward).unwrap();
                prop_assert_eq!(again.forward.as_ref(), c.forward.as_ref());
                prop_assert_eq!(again.matching.as_ref(), c.matching.as_ref());
                prop_assert_eq!(matching(&c.matching), c.matching.as_ref());
                prop_assert!(!has_dot_segment(&c.matching) && !c.matching.contains("//") && !c.matching.contains(';'));
                prop_assert!(c.forward.starts_with('/') && c.matching.starts_with('/'));
            }
        }

        #[test]
        fn a_servlet_reading_of_the_forwarded_path_is_the_matched_path(p in "/[a-z./;=]{0,40}") {
            // A servlet container strips `;params` per segment, then resolves dot segments and
            // merges slashes: it must land where we matched.
            let c = canonical_path(&p).unwrap();
            let stripped: String = c.forward.split('/').map(|s| s.split(';').next().unwrap_or("")).collect::<Vec<_>>().join("/");
            prop_assert_eq!(matching(&stripped), c.matching.as_ref());
        }

        #[test]
        fn stripping_a_matched_prefix_strips_its_parameters_with_it(
            p in "/[a-z/;=]{0,30}",
            prefix in prop::sample::select(vec!["/a", "/a/b", "/ab", "/a;", "/b/a"]),
        ) {
            // A prefix is stored in matching form (no `;`); "/a;" stands for an unmatched one.
            let c = canonical_path(&p).unwrap();
            let stripped = strip_prefix_segments(prefix, &c.forward);
            prop_assert_eq!(stripped.is_some(), prefix_matches(prefix, &c.matching), "{} under {}", c.forward, prefix);
            if let Some(rest) = stripped {
                // What is sent on is the forwarded path minus the prefix's segments: put back
                // behind the prefix, it matches as the request did.
                prop_assert!(rest.is_empty() || rest.starts_with('/'));
                prop_assert_eq!(matching(&format!("{prefix}{rest}")), c.matching.as_ref());
            }
        }

        #[test]
        fn a_prefix_match_survives_no_traversal(seg in "[a-z]{1,8}", dots in prop::sample::select(vec!["..", "..;x", "%2e%2e", ".%2E"])) {
            let p = format!("/public/{dots}/{seg}");
            let n = matching(&p);
            prop_assert!(!prefix_matches("/public", &n) || seg == "public");
        }
    }
}
