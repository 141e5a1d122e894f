//! `spec.policies` → policies in Cloudflare Access's evaluation order, with validated rules.

use ipnet::IpNet;

use super::error::Diagnostics;
use crate::snapshot::{Policy, Rule};
use crate::v1alpha1::{PolicyAction, PolicySpec, RuleSpec};

/// Validates every policy and orders them: Bypass and ServiceAuth first, then Allow and
/// Block, each group keeping the written order (Cloudflare Access's precedence).
pub fn compile_policies(specs: &[PolicySpec], d: &mut Diagnostics) -> Vec<Policy> {
    let mut seen = std::collections::BTreeSet::new();
    let mut compiled: Vec<Policy> = Vec::with_capacity(specs.len());
    for (i, p) in specs.iter().enumerate() {
        let path = format!("spec.policies[{i}]");
        if p.name.trim().is_empty() {
            d.error(format!("{path}.name"), None, "every policy needs a name (it labels logs and metrics)");
        } else if !seen.insert(p.name.as_str()) {
            d.error(format!("{path}.name"), Some(&p.name), "duplicate policy name; names must be unique");
        }
        if p.include.is_empty() {
            d.error(
                format!("{path}.include"),
                None,
                "a policy needs at least one include rule (use `everyone: {}` to match every identity)",
            );
        }
        let include = compile_rules(&p.include, &format!("{path}.include"), d);
        let exclude = compile_rules(&p.exclude, &format!("{path}.exclude"), d);
        let require = compile_rules(&p.require, &format!("{path}.require"), d);
        compiled.push(Policy { name: p.name.clone(), action: p.action, include, exclude, require });
    }
    // Stable sort keeps the written order inside each group.
    compiled.sort_by_key(|p| match p.action {
        PolicyAction::Bypass | PolicyAction::ServiceAuth => 0,
        PolicyAction::Allow | PolicyAction::Block => 1,
    });
    compiled
}

fn compile_rules(specs: &[RuleSpec], path: &str, d: &mut Diagnostics) -> Vec<Rule> {
    specs.iter().enumerate().filter_map(|(i, r)| compile_rule(r, &format!("{path}[{i}]"), d)).collect()
}

fn compile_rule(r: &RuleSpec, path: &str, d: &mut Diagnostics) -> Option<Rule> {
    let mut set: Vec<(&str, Option<Rule>)> = Vec::new();
    if let Some(email) = &r.email {
        let e = email.trim().to_ascii_lowercase();
        let ok = e.split_once('@').is_some_and(|(l, dom)| !l.is_empty() && !dom.is_empty() && !dom.contains('@'));
        if !ok {
            d.error(format!("{path}.email"), Some(email), "not an email address (user@domain)");
        }
        set.push(("email", ok.then_some(Rule::Email(e))));
    }
    if let Some(domain) = &r.email_domain {
        let dom = domain.trim().trim_start_matches('@').to_ascii_lowercase();
        let ok = !dom.is_empty() && !dom.contains('@') && !dom.contains('/') && !dom.contains(' ');
        if !ok {
            d.error(format!("{path}.emailDomain"), Some(domain), "not a domain (write mysite.com, without @)");
        }
        set.push(("emailDomain", ok.then_some(Rule::EmailDomain(dom))));
    }
    if let Some(group) = &r.group {
        if group.is_empty() {
            d.error(format!("{path}.group"), None, "group must not be empty");
        }
        set.push(("group", (!group.is_empty()).then(|| Rule::Group(group.clone()))));
    }
    if r.everyone.is_some() {
        set.push(("everyone", Some(Rule::Everyone)));
    }
    if let Some(cidr) = &r.ip_range {
        let parsed = parse_cidr(cidr.trim());
        if parsed.is_none() {
            d.error(
                format!("{path}.ipRange"),
                Some(cidr),
                "not a CIDR (write 10.0.0.0/8, 2001:db8::/32, or a single address)",
            );
        }
        set.push(("ipRange", parsed.map(Rule::IpRange)));
    }
    if let Some(t) = &r.service_token {
        if t.name.is_empty() {
            d.error(format!("{path}.serviceToken.name"), None, "must name an AccessServiceToken");
        }
        set.push(("serviceToken", (!t.name.is_empty()).then(|| Rule::ServiceToken(t.name.clone()))));
    }
    if r.any_valid_service_token.is_some() {
        set.push(("anyValidServiceToken", Some(Rule::AnyValidServiceToken)));
    }
    if let Some(c) = &r.claim {
        if c.name.is_empty() {
            d.error(format!("{path}.claim.name"), None, "must name a JWT claim");
        }
        set.push(("claim", (!c.name.is_empty()).then(|| Rule::Claim { name: c.name.clone(), value: c.value.clone() })));
    }
    match set.len() {
        0 => {
            d.error(
                path.to_owned(),
                None,
                "empty rule: set one of email, emailDomain, group, everyone, ipRange, serviceToken, anyValidServiceToken, claim",
            );
            None
        }
        1 => set.pop().and_then(|(_, rule)| rule),
        _ => {
            let names: Vec<&str> = set.iter().map(|(n, _)| *n).collect();
            d.error(
                path.to_owned(),
                None,
                format!("one selector per rule, found {}; split them into separate rules", names.join(", ")),
            );
            None
        }
    }
}

/// A CIDR, or a bare address meaning a single host. Host bits must be zero, so that
/// `10.1.2.3/8` (almost always a typo) is an error rather than silently `10.0.0.0/8`.
fn parse_cidr(s: &str) -> Option<IpNet> {
    if let Ok(net) = s.parse::<IpNet>() {
        return (net.trunc() == net).then_some(net);
    }
    s.parse::<std::net::IpAddr>().ok().map(IpNet::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1alpha1::{ClaimRule, Empty, TokenRef};

    fn policy(name: &str, action: PolicyAction, include: Vec<RuleSpec>) -> PolicySpec {
        PolicySpec { name: name.into(), action, include, exclude: vec![], require: vec![] }
    }

    fn everyone() -> RuleSpec {
        RuleSpec { everyone: Some(Empty {}), ..Default::default() }
    }

    #[test]
    fn orders_bypass_and_service_auth_first_keeping_written_order() {
        let specs = vec![
            policy("a", PolicyAction::Allow, vec![everyone()]),
            policy("b", PolicyAction::ServiceAuth, vec![everyone()]),
            policy("c", PolicyAction::Block, vec![everyone()]),
            policy("d", PolicyAction::Bypass, vec![everyone()]),
        ];
        let mut d = Diagnostics::new("AccessApplication", "ns/app");
        let names: Vec<String> = compile_policies(&specs, &mut d).into_iter().map(|p| p.name).collect();
        assert_eq!(names, ["b", "d", "a", "c"]);
        assert!(!d.has_errors());
    }

    #[test]
    fn rejects_bad_rules_naming_the_field() {
        let cases: Vec<(RuleSpec, &str)> = vec![
            (RuleSpec::default(), "spec.policies[0].include[0]"),
            (
                RuleSpec { ip_range: Some("10.0.0.0/33".into()), ..Default::default() },
                "spec.policies[0].include[0].ipRange",
            ),
            (
                RuleSpec { ip_range: Some("10.1.2.3/8".into()), ..Default::default() },
                "spec.policies[0].include[0].ipRange",
            ),
            (RuleSpec { ip_range: Some("banana".into()), ..Default::default() }, "spec.policies[0].include[0].ipRange"),
            (RuleSpec { email: Some("nobody".into()), ..Default::default() }, "spec.policies[0].include[0].email"),
            (
                RuleSpec { email: Some("a@b.c".into()), everyone: Some(Empty {}), ..Default::default() },
                "spec.policies[0].include[0]",
            ),
            (
                RuleSpec { claim: Some(ClaimRule { name: "".into(), value: "x".into() }), ..Default::default() },
                "spec.policies[0].include[0].claim.name",
            ),
            (
                RuleSpec { service_token: Some(TokenRef { name: "".into() }), ..Default::default() },
                "spec.policies[0].include[0].serviceToken.name",
            ),
        ];
        for (rule, field) in cases {
            let mut d = Diagnostics::new("AccessApplication", "ns/app");
            compile_policies(&[policy("p", PolicyAction::Allow, vec![rule.clone()])], &mut d);
            assert!(d.errors().iter().any(|e| e.field == field), "{rule:?}: {:?}", d.errors());
        }
    }

    #[test]
    fn policy_without_include_and_duplicate_names_are_errors() {
        let mut d = Diagnostics::new("AccessApplication", "ns/app");
        compile_policies(
            &[policy("p", PolicyAction::Allow, vec![]), policy("p", PolicyAction::Allow, vec![everyone()])],
            &mut d,
        );
        let fields: Vec<&str> = d.errors().iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["spec.policies[0].include", "spec.policies[1].name"]);
    }

    #[test]
    fn normalises_selectors() {
        let mut d = Diagnostics::new("AccessApplication", "ns/app");
        let rules = vec![
            RuleSpec { email: Some(" Boss@MySite.com ".into()), ..Default::default() },
            RuleSpec { email_domain: Some("@MySite.COM".into()), ..Default::default() },
            RuleSpec { ip_range: Some("192.168.1.7".into()), ..Default::default() },
        ];
        let p = compile_policies(&[policy("p", PolicyAction::Allow, rules)], &mut d);
        assert!(!d.has_errors(), "{:?}", d.errors());
        assert_eq!(
            p[0].include,
            vec![
                Rule::Email("boss@mysite.com".into()),
                Rule::EmailDomain("mysite.com".into()),
                Rule::IpRange("192.168.1.7/32".parse().unwrap()),
            ]
        );
    }
}
