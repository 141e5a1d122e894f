//! Policy tables: every selector, the evaluation order, anonymous versus failed callers, and
//! properties (no admission without a matching include rule; nobody gets in except by Bypass;
//! the order logic agrees with a naive reference).

use std::sync::Arc;

use super::*;
use crate::decide::authn::{AuthnFailure, ServiceTokenFailure};
use proptest::prelude::*;
use serde_json::json;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn user(email: Option<&str>, claims: Value) -> Authn {
    let Value::Object(claims) = claims else { panic!("claims must be an object") };
    Authn::Authenticated(Principal::User(Arc::new(User {
        issuer: "https://idp.test".into(),
        email: email.map(str::to_owned),
        claims,
        expires_at: 2_000_000_000,
        headers: Default::default(),
    })))
}

fn service(name: &str) -> Authn {
    Authn::Authenticated(Principal::Service(Service { name: name.into(), client_id: format!("{name}.access") }))
}

fn failed() -> Authn {
    Authn::Failed(AuthnFailure::ServiceToken(ServiceTokenFailure::WrongSecret))
}

fn policy(action: PolicyAction, include: Vec<Rule>, require: Vec<Rule>, exclude: Vec<Rule>) -> Policy {
    Policy { name: format!("{action:?}"), action, include, exclude, require }
}

fn net(s: &str) -> Rule {
    Rule::IpRange(s.parse().unwrap())
}

// Behaviour: B-POLICY-4, B-POLICY-5, B-POLICY-7, B-JWT-7 (docs/behaviour.md).
#[test]
fn every_selector() {
    struct Case {
        desc: &'static str,
        rule: Rule,
        authn: Authn,
        ip: &'static str,
        want: bool,
    }
    let alice = || {
        user(Some("Alice@MySite.com"), json!({"groups": ["eng", "ops"], "role": "admin", "level": 3, "tags": ["a", 1]}))
    };
    let bob = || user(Some("bob@eu.mysite.com"), json!({"groups": "eng"}));
    let no_email = || user(None, json!({"groups": ["eng"]}));
    let cases = [
        Case {
            desc: "email equal ignoring case",
            rule: Rule::Email("alice@mysite.com".into()),
            authn: alice(),
            ip: "1.1.1.1",
            want: true,
        },
        Case {
            desc: "email other",
            rule: Rule::Email("bob@mysite.com".into()),
            authn: alice(),
            ip: "1.1.1.1",
            want: false,
        },
        Case {
            desc: "email without email claim",
            rule: Rule::Email("alice@mysite.com".into()),
            authn: no_email(),
            ip: "1.1.1.1",
            want: false,
        },
        Case {
            desc: "email never for a service",
            rule: Rule::Email("ci@mysite.com".into()),
            authn: service("ci"),
            ip: "1.1.1.1",
            want: false,
        },
        Case {
            desc: "emailDomain ignoring case",
            rule: Rule::EmailDomain("mysite.com".into()),
            authn: alice(),
            ip: "1.1.1.1",
            want: true,
        },
        Case {
            desc: "emailDomain no subdomains",
            rule: Rule::EmailDomain("mysite.com".into()),
            authn: bob(),
            ip: "1.1.1.1",
            want: false,
        },
        Case {
            desc: "emailDomain exact subdomain",
            rule: Rule::EmailDomain("eu.mysite.com".into()),
            authn: bob(),
            ip: "1.1.1.1",
            want: true,
        },
        Case {
            desc: "emailDomain after the last @",
            rule: Rule::EmailDomain("evil.test".into()),
            authn: user(Some("x@mysite.com@evil.test"), json!({})),
            ip: "1.1.1.1",
            want: true,
        },
        Case {
            desc: "emailDomain not a suffix",
            rule: Rule::EmailDomain("site.com".into()),
            authn: alice(),
            ip: "1.1.1.1",
            want: false,
        },
        Case {
            desc: "emailDomain without email",
            rule: Rule::EmailDomain("mysite.com".into()),
            authn: no_email(),
            ip: "1.1.1.1",
            want: false,
        },
        Case { desc: "group in array", rule: Rule::Group("ops".into()), authn: alice(), ip: "1.1.1.1", want: true },
        Case { desc: "group as string", rule: Rule::Group("eng".into()), authn: bob(), ip: "1.1.1.1", want: true },
        Case { desc: "group missing", rule: Rule::Group("sales".into()), authn: alice(), ip: "1.1.1.1", want: false },
        Case {
            desc: "group is case-sensitive",
            rule: Rule::Group("ENG".into()),
            authn: alice(),
            ip: "1.1.1.1",
            want: false,
        },
        Case {
            desc: "group without groups claim",
            rule: Rule::Group("admin".into()),
            authn: user(Some("a@b.c"), json!({"role": "admin"})),
            ip: "1.1.1.1",
            want: false,
        },
        Case {
            desc: "claim string",
            rule: Rule::Claim { name: "role".into(), value: "admin".into() },
            authn: alice(),
            ip: "1.1.1.1",
            want: true,
        },
        Case {
            desc: "claim string other",
            rule: Rule::Claim { name: "role".into(), value: "user".into() },
            authn: alice(),
            ip: "1.1.1.1",
            want: false,
        },
        Case {
            desc: "claim array",
            rule: Rule::Claim { name: "groups".into(), value: "eng".into() },
            authn: alice(),
            ip: "1.1.1.1",
            want: true,
        },
        Case {
            desc: "claim number is not a string",
            rule: Rule::Claim { name: "level".into(), value: "3".into() },
            authn: alice(),
            ip: "1.1.1.1",
            want: false,
        },
        Case {
            desc: "claim array non-string element",
            rule: Rule::Claim { name: "tags".into(), value: "1".into() },
            authn: alice(),
            ip: "1.1.1.1",
            want: false,
        },
        Case {
            desc: "claim absent",
            rule: Rule::Claim { name: "dept".into(), value: "x".into() },
            authn: alice(),
            ip: "1.1.1.1",
            want: false,
        },
        Case { desc: "everyone: user", rule: Rule::Everyone, authn: alice(), ip: "1.1.1.1", want: true },
        Case {
            desc: "everyone: user without email",
            rule: Rule::Everyone,
            authn: no_email(),
            ip: "1.1.1.1",
            want: true,
        },
        Case {
            desc: "everyone: not a service token",
            rule: Rule::Everyone,
            authn: service("ci"),
            ip: "1.1.1.1",
            want: false,
        },
        Case {
            desc: "everyone: never anonymous",
            rule: Rule::Everyone,
            authn: Authn::Anonymous,
            ip: "1.1.1.1",
            want: false,
        },
        Case { desc: "everyone: never failed", rule: Rule::Everyone, authn: failed(), ip: "1.1.1.1", want: false },
        Case {
            desc: "ipRange: anonymous inside",
            rule: net("10.0.0.0/8"),
            authn: Authn::Anonymous,
            ip: "10.2.3.4",
            want: true,
        },
        Case { desc: "ipRange: failed inside", rule: net("10.0.0.0/8"), authn: failed(), ip: "10.2.3.4", want: true },
        Case { desc: "ipRange: user outside", rule: net("10.0.0.0/8"), authn: alice(), ip: "11.0.0.1", want: false },
        Case {
            desc: "ipRange: service inside",
            rule: net("10.0.0.0/8"),
            authn: service("ci"),
            ip: "10.0.0.1",
            want: true,
        },
        Case {
            desc: "ipRange: mapped IPv6 peer",
            rule: net("10.0.0.0/8"),
            authn: Authn::Anonymous,
            ip: "::ffff:10.0.0.1",
            want: true,
        },
        Case {
            desc: "ipRange: IPv6",
            rule: net("2001:db8::/32"),
            authn: Authn::Anonymous,
            ip: "2001:db8::5",
            want: true,
        },
        Case {
            desc: "ipRange: IPv6 vs IPv4 net",
            rule: net("10.0.0.0/8"),
            authn: Authn::Anonymous,
            ip: "2001:db8::5",
            want: false,
        },
        Case {
            desc: "serviceToken: by name",
            rule: Rule::ServiceToken("ci".into()),
            authn: service("ci"),
            ip: "1.1.1.1",
            want: true,
        },
        Case {
            desc: "serviceToken: other name",
            rule: Rule::ServiceToken("ci".into()),
            authn: service("deploy"),
            ip: "1.1.1.1",
            want: false,
        },
        Case {
            desc: "serviceToken: not a user",
            rule: Rule::ServiceToken("ci".into()),
            authn: user(Some("ci"), json!({"name": "ci"})),
            ip: "1.1.1.1",
            want: false,
        },
        Case {
            desc: "serviceToken: never failed",
            rule: Rule::ServiceToken("ci".into()),
            authn: failed(),
            ip: "1.1.1.1",
            want: false,
        },
        Case {
            desc: "anyValidServiceToken: service",
            rule: Rule::AnyValidServiceToken,
            authn: service("deploy"),
            ip: "1.1.1.1",
            want: true,
        },
        Case {
            desc: "anyValidServiceToken: not a user",
            rule: Rule::AnyValidServiceToken,
            authn: alice(),
            ip: "1.1.1.1",
            want: false,
        },
        Case {
            desc: "anyValidServiceToken: not anonymous",
            rule: Rule::AnyValidServiceToken,
            authn: Authn::Anonymous,
            ip: "1.1.1.1",
            want: false,
        },
    ];
    for c in cases {
        assert_eq!(rule_matches(&c.rule, PolicyAction::Allow, &c.authn, ip(c.ip)), c.want, "{}", c.desc);
    }
}

// Behaviour: B-POLICY-1, B-POLICY-2 (docs/behaviour.md).
#[test]
fn evaluation_order() {
    use PolicyAction::*;
    struct Case {
        desc: &'static str,
        policies: Vec<Policy>,
        authn: Authn,
        ip: &'static str,
        want: Decision,
    }
    let alice = || user(Some("alice@mysite.com"), json!({"groups": ["eng"]}));
    let staff = || Rule::EmailDomain("mysite.com".into());
    let office = || net("10.0.0.0/8");
    let cases = [
        Case {
            desc: "no policies: authenticated denied",
            policies: vec![],
            authn: alice(),
            ip: "1.1.1.1",
            want: Decision::NoMatch,
        },
        Case {
            desc: "no policies: anonymous is 401",
            policies: vec![],
            authn: Authn::Anonymous,
            ip: "1.1.1.1",
            want: Decision::Unauthenticated,
        },
        Case {
            desc: "allow",
            policies: vec![policy(Allow, vec![staff()], vec![], vec![])],
            authn: alice(),
            ip: "1.1.1.1",
            want: Decision::Allow { policy: 0 },
        },
        Case {
            desc: "allow does not admit anonymous",
            policies: vec![policy(Allow, vec![office()], vec![], vec![])],
            authn: Authn::Anonymous,
            ip: "10.0.0.1",
            want: Decision::Unauthenticated,
        },
        Case {
            desc: "block before a later allow",
            policies: vec![
                policy(Block, vec![Rule::Email("alice@mysite.com".into())], vec![], vec![]),
                policy(Allow, vec![staff()], vec![], vec![]),
            ],
            authn: alice(),
            ip: "1.1.1.1",
            want: Decision::Block { policy: 0 },
        },
        Case {
            desc: "allow before a later block",
            policies: vec![
                policy(Allow, vec![staff()], vec![], vec![]),
                policy(Block, vec![Rule::Everyone], vec![], vec![]),
            ],
            authn: alice(),
            ip: "1.1.1.1",
            want: Decision::Allow { policy: 0 },
        },
        Case {
            desc: "bypass before block",
            policies: vec![
                policy(Block, vec![Rule::Everyone], vec![], vec![]),
                policy(Bypass, vec![office()], vec![], vec![]),
            ],
            authn: alice(),
            ip: "10.0.0.1",
            want: Decision::Bypass { policy: 1 },
        },
        Case {
            desc: "bypass for anonymous",
            policies: vec![policy(Bypass, vec![office()], vec![], vec![])],
            authn: Authn::Anonymous,
            ip: "10.0.0.1",
            want: Decision::Bypass { policy: 0 },
        },
        Case {
            desc: "bypass despite failed credentials",
            policies: vec![policy(Bypass, vec![office()], vec![], vec![])],
            authn: failed(),
            ip: "10.0.0.1",
            want: Decision::Bypass { policy: 0 },
        },
        Case {
            desc: "bypass not matching: anonymous 401",
            policies: vec![policy(Bypass, vec![office()], vec![], vec![])],
            authn: Authn::Anonymous,
            ip: "11.0.0.1",
            want: Decision::Unauthenticated,
        },
        Case {
            desc: "failed is 401 before block",
            policies: vec![policy(Block, vec![office()], vec![], vec![])],
            authn: failed(),
            ip: "10.0.0.1",
            want: Decision::Unauthenticated,
        },
        Case {
            desc: "service auth admits its token",
            policies: vec![policy(ServiceAuth, vec![Rule::ServiceToken("ci".into())], vec![], vec![])],
            authn: service("ci"),
            ip: "1.1.1.1",
            want: Decision::Allow { policy: 0 },
        },
        Case {
            desc: "service auth before block",
            policies: vec![
                policy(Block, vec![office()], vec![], vec![]),
                policy(ServiceAuth, vec![Rule::AnyValidServiceToken], vec![], vec![]),
            ],
            authn: service("ci"),
            ip: "10.0.0.1",
            want: Decision::Allow { policy: 1 },
        },
        Case {
            desc: "service auth never admits anonymous by ip",
            policies: vec![policy(ServiceAuth, vec![office()], vec![], vec![])],
            authn: Authn::Anonymous,
            ip: "10.0.0.1",
            want: Decision::Unauthenticated,
        },
        Case {
            desc: "service token not admitted by allow everyone",
            policies: vec![policy(Allow, vec![Rule::Everyone], vec![], vec![])],
            authn: service("ci"),
            ip: "1.1.1.1",
            want: Decision::NoMatch,
        },
        Case {
            desc: "service token of another name",
            policies: vec![policy(ServiceAuth, vec![Rule::ServiceToken("ci".into())], vec![], vec![])],
            authn: service("deploy"),
            ip: "1.1.1.1",
            want: Decision::NoMatch,
        },
        Case {
            desc: "require all: met",
            policies: vec![policy(Allow, vec![staff()], vec![office(), Rule::Group("eng".into())], vec![])],
            authn: alice(),
            ip: "10.0.0.1",
            want: Decision::Allow { policy: 0 },
        },
        Case {
            desc: "require all: one fails",
            policies: vec![policy(Allow, vec![staff()], vec![office(), Rule::Group("ops".into())], vec![])],
            authn: alice(),
            ip: "10.0.0.1",
            want: Decision::NoMatch,
        },
        Case {
            desc: "require fails: next policy decides",
            policies: vec![
                policy(Allow, vec![staff()], vec![office()], vec![]),
                policy(Block, vec![Rule::Everyone], vec![], vec![]),
            ],
            authn: alice(),
            ip: "11.0.0.1",
            want: Decision::Block { policy: 1 },
        },
        Case {
            desc: "include any",
            policies: vec![policy(Allow, vec![Rule::Email("x@y.z".into()), Rule::Group("eng".into())], vec![], vec![])],
            authn: alice(),
            ip: "1.1.1.1",
            want: Decision::Allow { policy: 0 },
        },
        Case {
            desc: "exclude wins",
            policies: vec![policy(Allow, vec![staff()], vec![], vec![Rule::Email("alice@mysite.com".into())])],
            authn: alice(),
            ip: "1.1.1.1",
            want: Decision::NoMatch,
        },
        Case {
            desc: "exclude on bypass by user",
            policies: vec![policy(Bypass, vec![office()], vec![], vec![Rule::Everyone])],
            authn: alice(),
            ip: "10.0.0.1",
            want: Decision::NoMatch,
        },
        Case {
            // In a Bypass policy `everyone` is every request: excluding it excludes all.
            desc: "exclude everyone on bypass excludes anonymous too",
            policies: vec![policy(Bypass, vec![office()], vec![], vec![Rule::Everyone])],
            authn: Authn::Anonymous,
            ip: "10.0.0.1",
            want: Decision::Unauthenticated,
        },
        Case {
            desc: "exclude by ip",
            policies: vec![policy(Allow, vec![Rule::Everyone], vec![], vec![office()])],
            authn: alice(),
            ip: "10.0.0.1",
            want: Decision::NoMatch,
        },
        Case {
            desc: "bypass on user rule for a user",
            policies: vec![policy(Bypass, vec![staff()], vec![], vec![])],
            authn: alice(),
            ip: "1.1.1.1",
            want: Decision::Bypass { policy: 0 },
        },
        Case {
            desc: "user without email: 403 not 401",
            policies: vec![policy(Allow, vec![staff()], vec![], vec![])],
            authn: user(None, json!({})),
            ip: "1.1.1.1",
            want: Decision::NoMatch,
        },
        Case {
            desc: "bypass everyone admits anonymous requests (a public path)",
            policies: vec![policy(Bypass, vec![Rule::Everyone], vec![], vec![])],
            authn: Authn::Anonymous,
            ip: "203.0.113.9",
            want: Decision::Bypass { policy: 0 },
        },
        Case {
            desc: "bypass everyone admits failed credentials too",
            policies: vec![policy(Bypass, vec![Rule::Everyone], vec![], vec![])],
            authn: failed(),
            ip: "203.0.113.9",
            want: Decision::Bypass { policy: 0 },
        },
        Case {
            desc: "allow everyone still needs an identity",
            policies: vec![policy(Allow, vec![Rule::Everyone], vec![], vec![])],
            authn: Authn::Anonymous,
            ip: "203.0.113.9",
            want: Decision::Unauthenticated,
        },
        Case {
            desc: "phases by action even if unordered",
            policies: vec![
                policy(Allow, vec![Rule::Everyone], vec![], vec![]),
                policy(Bypass, vec![office()], vec![], vec![]),
            ],
            authn: alice(),
            ip: "10.0.0.1",
            want: Decision::Bypass { policy: 1 },
        },
    ];
    for c in cases {
        assert_eq!(evaluate(&c.policies, &c.authn, ip(c.ip)), c.want, "{}", c.desc);
    }
}

#[test]
fn reasons_and_policy_index() {
    let all = [
        Decision::Bypass { policy: 0 },
        Decision::Allow { policy: 1 },
        Decision::Block { policy: 2 },
        Decision::NoMatch,
        Decision::Unauthenticated,
    ];
    let mut r: Vec<_> = all.iter().map(Decision::reason).collect();
    r.sort();
    r.dedup();
    assert_eq!(r.len(), all.len());
    assert_eq!(all.map(|d| d.policy()), [Some(0), Some(1), Some(2), None, None]);
}

// === properties ===

fn any_action() -> impl Strategy<Value = PolicyAction> {
    prop_oneof![
        Just(PolicyAction::Allow),
        Just(PolicyAction::Block),
        Just(PolicyAction::Bypass),
        Just(PolicyAction::ServiceAuth)
    ]
}

/// Rules over the same small vocabulary as [`any_subject`], so they often match.
fn any_rule() -> impl Strategy<Value = Rule> {
    prop_oneof![
        prop::sample::select(vec!["a@x.test", "b@x.test", "c@y.test"]).prop_map(|e| Rule::Email(e.into())),
        prop::sample::select(vec!["x.test", "y.test"]).prop_map(|d| Rule::EmailDomain(d.into())),
        prop::sample::select(vec!["g1", "g2"]).prop_map(|g| Rule::Group(g.into())),
        prop::sample::select(vec!["admin", "user"]).prop_map(|v| Rule::Claim { name: "role".into(), value: v.into() }),
        Just(Rule::Everyone),
        prop::sample::select(vec!["10.0.0.0/8", "10.1.0.0/16", "192.168.0.0/16", "::/0"]).prop_map(net),
        prop::sample::select(vec!["s1", "s2"]).prop_map(|s| Rule::ServiceToken(s.into())),
        Just(Rule::AnyValidServiceToken),
    ]
}

/// Rules that no subject of [`any_subject`] can match.
fn foreign_rule() -> impl Strategy<Value = Rule> {
    prop_oneof![
        Just(Rule::Email("z@z.test".into())),
        Just(Rule::EmailDomain("z.test".into())),
        Just(Rule::EmailDomain("test".into())),
        Just(Rule::Group("g9".into())),
        Just(Rule::Claim { name: "role".into(), value: "root".into() }),
        Just(Rule::Claim { name: "dept".into(), value: "g1".into() }),
        Just(net("172.16.0.0/12")),
        Just(Rule::ServiceToken("s9".into())),
    ]
}

fn any_policy(include: BoxedStrategy<Rule>) -> impl Strategy<Value = Policy> {
    (
        any_action(),
        prop::collection::vec(include, 1..3),
        prop::collection::vec(any_rule(), 0..2),
        prop::collection::vec(any_rule(), 0..2),
    )
        .prop_map(|(action, include, require, exclude)| policy(action, include, require, exclude))
}

fn any_subject() -> impl Strategy<Value = Authn> {
    let groups = prop_oneof![Just(json!(null)), Just(json!("g1")), Just(json!(["g1", "g2"])), Just(json!(["g2"])),];
    let users = (
        prop::option::of(prop::sample::select(vec!["a@x.test", "B@X.test", "c@y.test"])),
        groups,
        prop::sample::select(vec!["admin", "user"]),
    )
        .prop_map(|(email, groups, role)| user(email, json!({"groups": groups, "role": role})));
    prop_oneof![users, prop::sample::select(vec!["s1", "s2"]).prop_map(service), Just(Authn::Anonymous), Just(failed()),]
}

fn any_ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        (any::<u16>()).prop_map(|n| IpAddr::from([10, 1, (n >> 8) as u8, n as u8])),
        (any::<u8>()).prop_map(|n| IpAddr::from([10, 2, 0, n])),
        (any::<u8>()).prop_map(|n| IpAddr::from([192, 168, 0, n])),
        (any::<u8>()).prop_map(|n| IpAddr::from([203, 0, 113, n])),
        Just(ip("2001:db8::1")),
    ]
}

/// Whether one rule matches in a policy of `action`, through `evaluate` itself: a lone Bypass
/// policy admits any subject its rule matches, so it tests the rule alone — except `everyone`,
/// which in a Bypass policy is every request (api.md, "Selectors") and in any other action
/// every authenticated user, so it is tested through a lone Allow policy.
fn rule_matches(rule: &Rule, action: PolicyAction, authn: &Authn, ip: IpAddr) -> bool {
    match (rule, action) {
        (Rule::Everyone, PolicyAction::Bypass) => true,
        (Rule::Everyone, _) => {
            evaluate(&[policy(PolicyAction::Allow, vec![Rule::Everyone], vec![], vec![])], authn, ip)
                == Decision::Allow { policy: 0 }
        }
        _ => {
            evaluate(&[policy(PolicyAction::Bypass, vec![rule.clone()], vec![], vec![])], authn, ip)
                == Decision::Bypass { policy: 0 }
        }
    }
}

/// Cloudflare Access's order, written differently: collect matches, then choose.
fn naive_evaluate(policies: &[Policy], authn: &Authn, ip: IpAddr) -> Decision {
    let matched: Vec<(usize, PolicyAction)> = policies
        .iter()
        .enumerate()
        .filter(|(_, p)| {
            p.include.iter().any(|r| rule_matches(r, p.action, authn, ip))
                && p.require.iter().all(|r| rule_matches(r, p.action, authn, ip))
                && !p.exclude.iter().any(|r| rule_matches(r, p.action, authn, ip))
        })
        .map(|(i, p)| (i, p.action))
        .collect();
    let authenticated = matches!(authn, Authn::Authenticated(_));
    let first_phase1 = matched.iter().find(|(_, a)| match a {
        PolicyAction::Bypass => true,
        PolicyAction::ServiceAuth => authenticated,
        _ => false,
    });
    match first_phase1 {
        Some((i, PolicyAction::Bypass)) => return Decision::Bypass { policy: *i },
        Some((i, _)) => return Decision::Allow { policy: *i },
        None => {}
    }
    if !authenticated {
        return Decision::Unauthenticated;
    }
    match matched.iter().find(|(_, a)| matches!(a, PolicyAction::Allow | PolicyAction::Block)) {
        Some((i, PolicyAction::Allow)) => Decision::Allow { policy: *i },
        Some((i, _)) => Decision::Block { policy: *i },
        None => Decision::NoMatch,
    }
}

proptest! {
    #[test]
    fn no_admission_without_a_matching_include(
        policies in prop::collection::vec(any_policy(foreign_rule().boxed()), 0..6),
        authn in any_subject(),
        ip in any_ip(),
    ) {
        let d = evaluate(&policies, &authn, ip);
        prop_assert!(matches!(d, Decision::NoMatch | Decision::Unauthenticated), "{:?}", d);
    }

    #[test]
    fn nobody_gets_in_except_by_bypass(
        policies in prop::collection::vec(any_policy(any_rule().boxed()), 0..6),
        anonymous in any::<bool>(),
        ip in any_ip(),
    ) {
        let authn = if anonymous { Authn::Anonymous } else { failed() };
        match evaluate(&policies, &authn, ip) {
            Decision::Bypass { policy } => prop_assert_eq!(policies[policy].action, PolicyAction::Bypass),
            d => prop_assert_eq!(d, Decision::Unauthenticated),
        }
    }

    #[test]
    fn agrees_with_naive_order(
        policies in prop::collection::vec(any_policy(any_rule().boxed()), 0..6),
        authn in any_subject(),
        ip in any_ip(),
    ) {
        let d = evaluate(&policies, &authn, ip);
        prop_assert_eq!(d, naive_evaluate(&policies, &authn, ip));
        // The deciding policy's action agrees with the decision.
        match d {
            Decision::Bypass { policy } => prop_assert_eq!(policies[policy].action, PolicyAction::Bypass),
            Decision::Allow { policy } => prop_assert!(matches!(policies[policy].action, PolicyAction::Allow | PolicyAction::ServiceAuth)),
            Decision::Block { policy } => prop_assert_eq!(policies[policy].action, PolicyAction::Block),
            Decision::NoMatch | Decision::Unauthenticated => {}
        }
    }

    /// Watching every rule of every policy changes nothing: the exhaustive observer gets the
    /// decision of the request path, sees every policy once in evaluation order (phase 1 first),
    /// each rule once, and marks evaluated exactly the policies up to the deciding one.
    #[test]
    fn an_exhaustive_observer_sees_the_same_decision(
        policies in prop::collection::vec(any_policy(any_rule().boxed()), 0..6),
        authn in any_subject(),
        ip in any_ip(),
    ) {
        let mut all = All::default();
        let d = evaluate_with(&policies, &authn, ip, &mut all);
        prop_assert_eq!(d, evaluate(&policies, &authn, ip));
        prop_assert_eq!(all.steps.len(), policies.len());
        let rules: usize = policies.iter().map(|p| p.include.len() + p.require.len() + p.exclude.len()).sum();
        prop_assert_eq!(all.rules, rules);
        let phases: Vec<u8> = all.steps.iter().map(|s| s.phase).collect();
        prop_assert!(phases.windows(2).all(|w| w[0] <= w[1]), "{:?}", phases);
        let deciding = all.steps.iter().position(|s| Some(s.policy) == d.policy());
        for (i, s) in all.steps.iter().enumerate() {
            let reached = match deciding {
                Some(at) => i <= at,
                None => s.phase == 1 || !matches!(d, Decision::Unauthenticated),
            };
            prop_assert_eq!(s.evaluated, reached, "{:?} decided {:?}", s, d);
        }
    }
}

/// Sees every policy and counts every rule.
#[derive(Default)]
struct All {
    steps: Vec<crate::decide::observe::PolicyStep>,
    rules: usize,
}

impl crate::decide::observe::Observer for All {
    const EXHAUSTIVE: bool = true;

    fn rule(&mut self, _: crate::decide::observe::RuleKind, _: usize, _: bool) {
        self.rules += 1;
    }

    fn policy(&mut self, step: crate::decide::observe::PolicyStep) {
        self.steps.push(step);
    }
}

proptest! {
    /// The one-sided compare of email rules answers as `eq_ignore_ascii_case` for the lower-case
    /// rule values `compile` stores, whatever case (or bytes) the token's email has.
    #[test]
    fn eq_lower_agrees_with_eq_ignore_ascii_case(sent in "[a-zA-Z@.\u{e9}\u{c9}-]{0,12}", want in "[a-z@.\u{e9}-]{0,12}", same: bool) {
        let sent = if same { want.to_ascii_uppercase() } else { sent };
        prop_assert_eq!(eq_lower(sent.as_bytes(), &want), sent.eq_ignore_ascii_case(&want));
    }
}
