//! What `explain` said against what the running sidecar did: one comparison for the property
//! test and the goldens. Must not decide anything: it reads the explanation's `decision` JSON
//! and the answer the client got.

use crate::client::Answer;
use crate::upstream::Upstream;

/// Headers no comparison looks at: the transport's own and the per-request id.
pub fn comparable(name: &str) -> bool {
    !matches!(name, "date" | "content-length" | "x-request-id" | "transfer-encoding" | "connection")
}

/// The identity headers an app can receive from the sidecar.
const IDENTITY: [&str; 3] = ["cf-access-jwt-assertion", "cf-access-authenticated-user-email", "cf-access-client-id"];

/// Whether the sidecar did what `decision` (an explanation's `decision` object) says for the
/// request that got `got`, `up` having counted `before` requests before it: the status, every
/// comparable header and the JSON body of an answer it makes itself; for a sign-in step without
/// a status, an answer of its own; for a forwarded request, the app called once with exactly
/// the identity headers named, and the answer carrying the headers said to be added. The first
/// difference, in words, as the error.
pub fn check_prediction(
    decision: &serde_json::Value,
    got: &Answer,
    up: &Upstream,
    before: usize,
) -> Result<(), String> {
    let live: Vec<(String, String)> = got
        .headers
        .iter()
        .filter(|(n, _)| comparable(n.as_str()))
        .map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap_or("?").to_owned()))
        .collect();
    let said: Vec<(String, String)> =
        serde_json::from_value(decision["response_headers"].clone()).map_err(|e| format!("response_headers: {e}"))?;
    let said: Vec<_> = said.into_iter().filter(|(n, _)| comparable(n)).collect();
    let differ = |what: &str, want: &dyn std::fmt::Debug, got: &dyn std::fmt::Debug| {
        Err(format!("{what}: explain says {want:?}, the sidecar {got:?}"))
    };
    match decision["status"].as_u64() {
        Some(status) if u64::from(got.status) != status => differ("status", &status, &got.status),
        Some(_) if up.count() != before => Err("explain says answered by the sidecar; the app was called".into()),
        Some(_) if live != said => differ("headers", &said, &live),
        Some(_) => {
            let mut live_body = if got.body.is_empty() { serde_json::Value::Null } else { got.json() };
            let mut body = decision["body"].clone();
            for b in [&mut live_body, &mut body] {
                if let Some(o) = b.as_object_mut() {
                    o.remove("request_id");
                }
            }
            if live_body == body {
                Ok(())
            } else {
                differ("body", &body, &live_body)
            }
        }
        // A sign-in step that needs the provider: the sidecar answers it itself.
        None if decision["outcome"] == "sign_in" => {
            if up.count() == before {
                Ok(())
            } else {
                Err("explain says a sign-in step; the app was called".into())
            }
        }
        None if up.count() != before + 1 => differ("forwarded (app calls)", &1, &(up.count() - before)),
        None => {
            if let Some(p) = said.iter().find(|p| !live.contains(p)) {
                return differ("an added header", p, &live);
            }
            // A forward route's upstream gets the route's own service token as
            // `cf-access-client-id`: a credential, not an identity header.
            let to_app = decision["forwarded_to"] == "app";
            let seen = up.last().headers;
            let sent: Vec<&str> = IDENTITY
                .iter()
                .copied()
                .filter(|n| (to_app || *n != "cf-access-client-id") && seen.contains_key(*n))
                .collect();
            let named: Vec<String> = serde_json::from_value(decision["identity_headers"].clone())
                .map_err(|e| format!("identity_headers: {e}"))?;
            if sent == named {
                Ok(())
            } else {
                differ("identity headers", &named, &sent)
            }
        }
    }
}
