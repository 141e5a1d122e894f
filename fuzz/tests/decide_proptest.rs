//! The decide target's invariants under proptest, so CI exercises the request → decision path
//! with fresh hostile input on every run besides replaying the corpus (the coverage-guided
//! libFuzzer run of `fuzz/run.sh` goes deeper).

use portcullis_fuzz::decide::run;
use proptest::prelude::*;

fn request() -> impl Strategy<Value = Vec<u8>> {
    let method = prop::sample::select(vec!["GET", "OPTIONS", "POST", "DELETE", "get", "X"]);
    let target = prop::sample::select(vec![
        "/",
        "/public/../admin",
        "/api/items?x=1",
        "http://api.mysite.com/x",
        "https://evil.test/",
        "/%2e%2e/%zz",
        "*",
    ]);
    let name = prop::sample::select(vec![
        "host",
        "origin",
        "access-control-request-method",
        "access-control-request-headers",
        "access-control-request-private-network",
        "cookie",
        "authorization",
        "cf-access-jwt-assertion",
        "cf-access-client-id",
        "cf-access-client-secret",
        "x-forwarded-for",
    ]);
    let value = prop_oneof![
        prop::sample::select(vec![
            "api.mysite.com",
            "a.b.apps.mysite.com",
            "open.mysite.com",
            "https://example.com",
            "https://x.y.example.org",
            "https://example.com.evil.com",
            "null",
            "*",
            "GET",
            "PUT",
            "office, X-Evil,,",
            "true",
            "Bearer x.y.z",
            "CF_Authorization=eyJhbGciOiJub25lIn0.e30.",
            "ci.access",
            "fuzz-secret",
        ])
        .prop_map(str::to_owned),
        "[ -~]{0,40}",
    ];
    (method, target, prop::collection::vec((name, value), 0..8)).prop_map(|(m, t, hs)| {
        let mut out = format!("{m}\n{t}\n");
        for (n, v) in hs {
            out.push_str(&format!("{n}: {v}\n"));
        }
        out.into_bytes()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, .. ProptestConfig::default() })]

    #[test]
    fn structured_requests_never_panic_or_break_an_invariant(data in request()) {
        run(&data);
    }

    #[test]
    fn random_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..512)) {
        run(&data);
    }
}
