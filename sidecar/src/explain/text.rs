//! The text form of an [`Explanation`]: the same facts as the JSON, one step per paragraph, for
//! people. Must not compute anything the JSON does not hold.

use std::fmt::Write as _;

use super::{CorsReport, CredentialReport, DecisionReport, Explanation, PolicyReport, RouteReport};

type Out = std::fmt::Result;

/// Renders `e` for a terminal.
pub fn render_text(e: &Explanation) -> String {
    let mut s = String::new();
    let _ = render(&mut s, e);
    s
}

fn render(s: &mut String, e: &Explanation) -> Out {
    writeln!(s, "request: {} {} from {}", e.request.method, e.request.url, e.request.peer)?;
    route(s, &e.route)?;
    if let Some(c) = &e.cors {
        cors(s, c)?;
    }
    if let Some(c) = &e.credential {
        credential(s, c)?;
    }
    policies(s, &e.policies)?;
    decision(s, &e.decision)
}

fn route(s: &mut String, r: &RouteReport) -> Out {
    writeln!(s, "\nroute: {}", r.result)?;
    if let (Some(host), Some(path)) = (&r.host, &r.path) {
        writeln!(s, "  host {host}, normalised path {path}")?;
    }
    if let (Some(host), Some(path)) = (&r.forwarded_host, &r.forwarded_path) {
        writeln!(s, "  if forwarded, the app receives Host {host} and path {path}")?;
    }
    if let Some(note) = &r.path_note {
        writeln!(s, "  note: {note}")?;
    }
    if let Some(app) = &r.application {
        writeln!(
            s,
            "  application {app} (mode {}), domain {}",
            r.mode.unwrap_or("enforce"),
            r.domain.as_deref().unwrap_or("?")
        )?;
    }
    for c in &r.candidates {
        let covers = if c.path_matches { "covers the path" } else { "does not cover the path" };
        writeln!(s, "  candidate {} of {}: {covers}", c.domain, c.application)?;
    }
    if let Some(miss) = &r.nearest_miss {
        writeln!(s, "  nearest miss: {miss}")?;
    }
    if let Some(h) = &r.authentication_host {
        writeln!(
            s,
            "  authentication host {} of {} (the provider client and key of {}): sign-in endpoints only",
            h.authority,
            h.applications.join(", "),
            h.provider_of
        )?;
    }
    Ok(())
}

fn cors(s: &mut String, c: &CorsReport) -> Out {
    {
        let owner = match c.owner {
            "disabled" => "no cors section",
            "app" => "the app owns CORS",
            _ => "the sidecar owns CORS",
        };
        writeln!(s, "\ncors: {} ({owner}): {}", c.classification, c.outcome)?;
        if let Some(o) = &c.origin {
            writeln!(s, "  origin {o}")?;
        }
        writeln!(s, "  {}", c.detail)?;
    }
    Ok(())
}

fn credential(s: &mut String, c: &CredentialReport) -> Out {
    {
        match c.source {
            Some(src) => writeln!(
                s,
                "\ncredential: {} from {src}: {}{}",
                c.kind,
                c.result,
                c.reason.map(|r| format!(" ({r})")).unwrap_or_default()
            )?,
            None => writeln!(s, "\ncredential: none presented")?,
        }
        let fields = [
            ("issuer", &c.issuer),
            ("algorithm", &c.algorithm),
            ("key id", &c.key_id),
            ("email", &c.email),
            ("client id", &c.client_id),
            ("service token", &c.service_token),
        ];
        for (name, value) in fields {
            if let Some(v) = value {
                writeln!(s, "  {name}: {v}")?;
            }
        }
        if !c.checks.is_empty() {
            let list: Vec<String> = c.checks.iter().map(|k| format!("{} {}", k.check, k.result)).collect();
            writeln!(s, "  checks: {}", list.join(", "))?;
        }
        if let Some(n) = c.note {
            writeln!(s, "  note: {n}")?;
        }
    }
    Ok(())
}

fn policies(s: &mut String, policies: &[PolicyReport]) -> Out {
    if !policies.is_empty() {
        writeln!(s, "\npolicies (evaluation order):")?;
        for p in policies {
            let state = match (p.evaluated, p.matched, p.decided) {
                (_, _, true) => "matched, decides",
                (false, _, _) => "not evaluated",
                (true, true, false) => "matched",
                (true, false, false) => "no match",
            };
            writeln!(s, "  [phase {}] {} {}: {state}", p.phase, p.action, p.name)?;
            for rule in &p.rules {
                let m = if rule.matched { "matches" } else { "does not match" };
                writeln!(s, "    {} {}: {m}", rule.kind, rule.selector)?;
            }
        }
    }
    Ok(())
}

fn decision(s: &mut String, d: &DecisionReport) -> Out {
    write!(s, "\ndecision: {} ({})", d.outcome, d.reason)?;
    if let Some(p) = &d.policy {
        write!(s, " by policy {p}")?;
    }
    writeln!(s)?;
    match (d.status, &d.forwarded_to) {
        (Some(status), _) => writeln!(s, "  status {status}")?,
        (None, Some(to)) => writeln!(s, "  forwarded to {to}; the status is the upstream's")?,
        (None, None) => {}
    }
    if let Some(w) = &d.enforce_would {
        writeln!(s, "  audit mode: Enforce would answer {} ({})", w.status, w.reason)?;
    }
    if !d.identity_headers.is_empty() {
        writeln!(s, "  identity headers to the app: {}", d.identity_headers.join(", "))?;
    }
    writeln!(s, "  response headers:")?;
    for (n, v) in &d.response_headers {
        writeln!(s, "    {n}: {v}")?;
    }
    if let Some(body) = &d.body {
        writeln!(s, "  body: {body}")?;
    }
    Ok(())
}
