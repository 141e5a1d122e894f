//! Table tests of the rotation and expiry decision.

use super::*;

const H: i64 = 3600;

fn t(secs: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + secs).unwrap()
}

fn settings(duration_h: Option<i64>, grace_h: i64) -> Settings {
    Settings { duration: duration_h.map(SignedDuration::from_hours), grace: SignedDuration::from_hours(grace_h) }
}

fn stored(issued_at: Timestamp, rotated_for: Option<&str>, previous_until: Option<Timestamp>) -> Credentials {
    Credentials {
        client_id: "id.access".into(),
        client_secret: ClientSecret::new("current".into()),
        previous: previous_until.map(|valid_until| Previous { secret: ClientSecret::new("old".into()), valid_until }),
        issued_at,
        rotated_for: rotated_for.map(str::to_owned),
    }
}

#[test]
fn decisions() {
    struct Case {
        desc: &'static str,
        settings: Settings,
        annotation: Option<&'static str>,
        stored: Option<Credentials>,
        now: Timestamp,
        want_step: Step,
        want_expires: Option<Timestamp>,
        want_previous_until: Option<Timestamp>,
        want_deadline: Option<Timestamp>,
    }
    let year = Some(8760);
    let cases = [
        Case {
            desc: "nothing stored: issue, expiry from now, rotation 24h ahead",
            settings: settings(year, 24),
            annotation: None,
            stored: None,
            now: t(0),
            want_step: Step::Issue,
            want_expires: Some(t(8760 * H)),
            want_previous_until: None,
            want_deadline: Some(t(8736 * H)),
        },
        Case {
            desc: "no duration: no expiry, nothing due",
            settings: settings(None, 0),
            annotation: None,
            stored: Some(stored(t(0), None, None)),
            now: t(100 * 8760 * H),
            want_step: Step::Keep,
            want_expires: None,
            want_previous_until: None,
            want_deadline: None,
        },
        Case {
            desc: "fresh credentials are kept",
            settings: settings(year, 24),
            annotation: None,
            stored: Some(stored(t(0), None, None)),
            now: t(H),
            want_step: Step::Keep,
            want_expires: Some(t(8760 * H)),
            want_previous_until: None,
            want_deadline: Some(t(8736 * H)),
        },
        Case {
            desc: "annotation already handled: keep",
            settings: settings(year, 24),
            annotation: Some("1"),
            stored: Some(stored(t(0), Some("1"), None)),
            now: t(H),
            want_step: Step::Keep,
            want_expires: Some(t(8760 * H)),
            want_previous_until: None,
            want_deadline: Some(t(8736 * H)),
        },
        Case {
            desc: "new annotation value: rotate, previous valid for the grace",
            settings: settings(year, 24),
            annotation: Some("2"),
            stored: Some(stored(t(0), Some("1"), None)),
            now: t(10 * H),
            want_step: Step::Rotate(Cause::Annotation),
            want_expires: Some(t(10 * H + 8760 * H)),
            want_previous_until: Some(t(34 * H)),
            want_deadline: Some(t(34 * H)),
        },
        Case {
            desc: "annotation rotation without grace: no previous",
            settings: settings(year, 0),
            annotation: Some("2"),
            stored: Some(stored(t(0), None, None)),
            now: t(10 * H),
            want_step: Step::Rotate(Cause::Annotation),
            want_expires: Some(t(10 * H + 8760 * H)),
            want_previous_until: None,
            want_deadline: Some(t(10 * H + 8736 * H)),
        },
        Case {
            desc: "within 24h of a year-long expiry: rotate, previous kept until its own expiry",
            settings: settings(year, 1),
            annotation: None,
            stored: Some(stored(t(0), None, None)),
            now: t(8740 * H),
            want_step: Step::Rotate(Cause::Expiry),
            want_expires: Some(t(8740 * H + 8760 * H)),
            want_previous_until: Some(t(8760 * H)),
            want_deadline: Some(t(8760 * H)),
        },
        Case {
            desc: "short token: lead is a tenth of the duration (10h → 1h)",
            settings: settings(Some(10), 0),
            annotation: None,
            stored: Some(stored(t(0), None, None)),
            now: t(9 * H),
            want_step: Step::Rotate(Cause::Expiry),
            want_expires: Some(t(19 * H)),
            want_previous_until: Some(t(10 * H)),
            want_deadline: Some(t(10 * H)),
        },
        Case {
            desc: "just before the lead: keep, deadline at the lead",
            settings: settings(Some(10), 0),
            annotation: None,
            stored: Some(stored(t(0), None, None)),
            now: t(9 * H - 1),
            want_step: Step::Keep,
            want_expires: Some(t(10 * H)),
            want_previous_until: None,
            want_deadline: Some(t(9 * H)),
        },
        Case {
            desc: "already expired (operator was away), no grace: rotate, nothing previous",
            settings: settings(Some(10), 0),
            annotation: None,
            stored: Some(stored(t(0), None, None)),
            now: t(50 * H),
            want_step: Step::Rotate(Cause::Expiry),
            want_expires: Some(t(60 * H)),
            want_previous_until: None,
            want_deadline: Some(t(59 * H)),
        },
        Case {
            desc: "previous still in its grace: keep it, deadline at its end",
            settings: settings(year, 24),
            annotation: None,
            stored: Some(stored(t(0), None, Some(t(24 * H)))),
            now: t(H),
            want_step: Step::Keep,
            want_expires: Some(t(8760 * H)),
            want_previous_until: Some(t(24 * H)),
            want_deadline: Some(t(24 * H)),
        },
        Case {
            desc: "grace over: drop the previous secret",
            settings: settings(year, 24),
            annotation: None,
            stored: Some(stored(t(0), None, Some(t(24 * H)))),
            now: t(24 * H),
            want_step: Step::DropPrevious,
            want_expires: Some(t(8760 * H)),
            want_previous_until: None,
            want_deadline: Some(t(8736 * H)),
        },
    ];
    for c in cases {
        let p = plan(&c.settings, c.annotation, c.stored.as_ref(), c.now);
        assert_eq!(p.step, c.want_step, "{}", c.desc);
        assert_eq!(p.expires_at, c.want_expires, "{}: expires_at", c.desc);
        assert_eq!(p.previous_valid_until, c.want_previous_until, "{}: previous", c.desc);
        assert_eq!(p.next_deadline, c.want_deadline, "{}: deadline", c.desc);
    }
}

#[test]
fn rotation_lead_is_a_tenth_capped_at_a_day() {
    assert_eq!(rotation_lead(SignedDuration::from_hours(10)), SignedDuration::from_hours(1));
    assert_eq!(rotation_lead(SignedDuration::from_hours(8760)), SignedDuration::from_hours(24));
}

fn never<T>() -> Result<T, &'static str> {
    Err("no randomness may be drawn for this step")
}

#[test]
fn apply_keeps_the_client_id_and_moves_the_secret_to_previous_on_rotation() {
    let s = stored(t(0), None, None);
    let p = plan(&settings(Some(8760), 24), Some("x"), Some(&s), t(H));
    let next = apply(&p, Some(&s), never, || Ok::<_, &str>(ClientSecret::new("new".into()))).unwrap();
    assert_eq!(next.client_id, "id.access");
    assert_eq!(next.client_secret.expose(), "new");
    assert_eq!(next.previous, Some(Previous { secret: ClientSecret::new("current".into()), valid_until: t(25 * H) }));
    assert_eq!(next.rotated_for.as_deref(), Some("x"));
    assert_eq!(next.issued_at, t(H));
}

#[test]
fn apply_draws_no_randomness_when_keeping_and_drops_an_expired_previous() {
    let s = stored(t(0), Some("a"), Some(t(5)));
    let p = plan(&settings(None, 24), Some("a"), Some(&s), t(10));
    assert_eq!(p.step, Step::DropPrevious);
    let next = apply(&p, Some(&s), never, never).unwrap();
    assert_eq!(next.previous, None);
    assert_eq!(next.client_secret, s.client_secret);
    assert_eq!(next.annotations().get(ROTATED_FOR_ANNOTATION).map(String::as_str), Some("a"));

    let keep = plan(&settings(None, 24), Some("a"), Some(&next), t(11));
    assert_eq!(apply(&keep, Some(&next), never, never).unwrap(), next);
}

#[test]
fn secret_round_trip_reads_what_it_wrote() {
    let c = stored(t(0), Some("r1"), Some(t(24 * H)));
    let secret = Secret {
        data: Some(c.data()),
        metadata: kube::api::ObjectMeta { annotations: Some(c.annotations()), ..Default::default() },
        ..Default::default()
    };
    assert_eq!(Credentials::from_secret(&secret), Some(c));
    let keys: Vec<_> = secret.data.as_ref().unwrap().keys().cloned().collect();
    assert_eq!(keys, ["client-id", "client-secret", "previous-client-secret", "previous-client-secret-valid-until"]);
}

#[test]
fn a_secret_without_both_keys_holds_no_credentials() {
    let only_id = Secret {
        data: Some(BTreeMap::from([("client-id".to_owned(), ByteString(b"x.access".to_vec()))])),
        ..Default::default()
    };
    assert_eq!(Credentials::from_secret(&only_id), None);
    assert_eq!(Credentials::from_secret(&Secret::default()), None);
}

#[test]
fn invalid_specs_name_the_field() {
    let spec = |duration: Option<&str>, grace: Option<&str>, name: &str| AccessServiceTokenSpec {
        duration: duration.map(str::to_owned),
        rotation_grace_period: grace.map(str::to_owned),
        secret_name: name.to_owned(),
    };
    let e = settings_of(&spec(Some("1y"), None, "s"));
    assert_eq!(e.reason(), "InvalidDuration");
    assert!(e.to_string().starts_with("spec.duration \"1y\" is invalid: unknown unit"), "{e}");
    let e = settings_of(&spec(Some("0s"), None, "s"));
    assert_eq!(e.reason(), "InvalidDuration");
    let e = settings_of(&spec(None, Some("soon"), "s"));
    assert_eq!(e.reason(), "InvalidRotationGracePeriod");
    assert!(e.to_string().contains("spec.rotationGracePeriod"), "{e}");
    assert_eq!(settings_of(&spec(None, None, "")).reason(), "InvalidSecretName");
    assert_eq!(
        super::settings(&spec(Some("8760h"), Some("24h"), "s")),
        Ok(Settings { duration: Some(SignedDuration::from_hours(8760)), grace: SignedDuration::from_hours(24) })
    );
}

fn settings_of(spec: &AccessServiceTokenSpec) -> InvalidSpec {
    super::settings(spec).unwrap_err()
}
