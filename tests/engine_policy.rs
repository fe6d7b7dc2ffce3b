//! PIN policies in the engine, on the in-process simulated backend:
//! getConstraints / checkConstraints, and `change` / `init` refusing a
//! value that breaks the policy before any APDU, with no try spent.

#[path = "common/rig.rs"]
mod rig;

use cardgate::error::Error;
use cardgate::pin::SoPath;
use cardgate::policy::{Constraint, PolicySet};
use cardgate::testing::Service;
use cardgate::vcard::VirtualCard;
use cardgate::vcard::config::CardConfig;
use cardgate::vcard::sim::SimBackend;
use rig::{Rig, s};
use std::sync::Arc;

const READER: &str = "Sim Reader 0";

/// A company policy stricter than the built-in ones, for both profiles.
const STRICT: &str = r#"
[match]
profile = "piv"
[pins.pin]
label = "Badge PIN"
tryCountLow = 1
constraints = [
  { type = "numeric" },
  { type = "minMaxLength", minLength = 6, maxLength = 8 },
  { type = "maxIdenticalSequence", count = 3 },
  { type = "maxIncDecSequence", count = 3 },
  { type = "newOldDifferent" },
]
"#;

const STRICT_PGP: &str = r#"
[match]
profile = "openpgp"
[pins.user]
constraints = [
  { type = "minLength", minLength = 8 },
  { type = "minDigits", count = 1 },
  { type = "minUpperCase", count = 1 },
  { type = "minLowerCase", count = 1 },
  { type = "minSpecial", count = 1 },
  { type = "newOldDissimilar", threshold = 50 },
]
"#;

fn rig(config: CardConfig, policies: PolicySet) -> Rig {
    Rig::with_policies(READER, config, policies)
}

fn strict() -> PolicySet {
    let mut set = PolicySet::builtin();
    set.insert_str("strict", STRICT, 1).unwrap();
    set.insert_str("strict-pgp", STRICT_PGP, 1).unwrap();
    set
}

/// The error's failed constraints, of a change or init the policy refused.
fn violation(r: Result<(), Error>) -> Vec<Constraint> {
    match r {
        Err(Error::ConstraintViolation { failed }) => failed,
        other => panic!("expected CONSTRAINT_VIOLATION, got {other:?}"),
    }
}

#[test]
fn get_constraints_returns_the_effective_list() {
    let r = rig(CardConfig::piv(), strict());
    let list = r.run(|e| Ok(e.constraints("pin")?.to_vec())).unwrap();
    assert_eq!(
        list,
        [
            Constraint::Numeric,
            Constraint::MinMaxLength {
                min_length: 6,
                max_length: 8
            },
            Constraint::MaxIdenticalSequence { count: 3 },
            Constraint::MaxIncDecSequence { count: 3 },
            Constraint::NewOldDifferent,
        ]
    );
    // Built-in only: the card's limits.
    let r = rig(CardConfig::piv(), PolicySet::builtin());
    let list = r.run(|e| Ok(e.constraints("pin")?.to_vec())).unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(
        r.run(|e| e.constraints("nope").map(<[_]>::to_vec))
            .unwrap_err(),
        Error::PinNotFound("nope".into())
    );
    // `Service::new` uses the built-in policies only.
    let sim = SimBackend::new();
    sim.add_reader(READER);
    sim.insert_card(READER, VirtualCard::new(CardConfig::openpgp()))
        .unwrap();
    let service = Service::new(Arc::new(sim));
    let user = service
        .with_engine(READER, |e| Ok(e.pin_policy("user")?.clone()))
        .unwrap();
    assert_eq!(user.policy.as_deref(), Some("openpgp"));
}

#[test]
fn check_constraints_is_one_bool_per_constraint_and_sends_nothing() {
    let r = rig(CardConfig::piv(), strict());
    let check = |old: &'static str, new: &'static str| {
        r.run(move |e| e.check_constraints("pin", &s(old), &s(new)))
            .unwrap()
    };
    assert_eq!(check("123456", "123456"), [true, true, true, false, false]);
    assert_eq!(check("123456", "802945"), [true, true, true, true, true]);
    assert_eq!(check("", "1111a"), [false, false, false, true, true]);
    // Many checks, even of the current PIN, leave the counter alone.
    for _ in 0..20 {
        check("000000", "000000");
    }
    assert_eq!(r.card_tries(), 3);
}

#[test]
fn a_violating_change_is_refused_before_any_apdu() {
    let r = rig(CardConfig::piv(), strict());
    // Wrong old PIN *and* a bad new one: if anything reached the card, a
    // try would be spent.
    let failed = violation(r.run(|e| e.change("pin", &s("999999"), &s("111234"))));
    assert_eq!(
        failed,
        [
            Constraint::MaxIdenticalSequence { count: 3 },
            Constraint::MaxIncDecSequence { count: 3 }
        ]
    );
    assert_eq!(r.card_tries(), 3);
    let failed = violation(r.run(|e| e.change("pin", &s("123456"), &s("123456"))));
    assert_eq!(
        failed,
        [
            Constraint::MaxIncDecSequence { count: 3 },
            Constraint::NewOldDifferent
        ]
    );
    let failed = violation(r.run(|e| e.change("pin", &s("123456"), &s("12a"))));
    assert_eq!(failed.len(), 2, "{failed:?}");
    assert_eq!(r.card_tries(), 3);
    // The error data lists the failed constraints, never the PIN.
    let e = r
        .run(|e| e.change("pin", &s("123456"), &s("9999999")))
        .unwrap_err();
    let json = e.to_json().to_string();
    assert!(json.contains(r#""code":"CONSTRAINT_VIOLATION""#), "{json}");
    assert!(
        json.contains(r#""constraints":[{"count":3,"type":"maxIdenticalSequence"}]"#),
        "{json}"
    );
    assert!(!json.contains("9999999") && !json.contains("123456"));
    assert!(!format!("{e} {e:?}").contains("9999999"));
    // A value that passes goes through.
    r.run(|e| e.change("pin", &s("123456"), &s("802945")))
        .unwrap();
    r.run(|e| e.login("pin", &s("802945"), false)).unwrap();
    assert_eq!(r.card_tries(), 3);
}

#[test]
fn a_violating_init_is_refused_and_keeps_the_puk() {
    let r = rig(
        CardConfig {
            start_blocked: true,
            ..CardConfig::piv()
        },
        strict(),
    );
    r.run(|e| e.login("pin", &s("12345678"), true)).unwrap();
    // newOldDifferent holds in init (old unknown); the sequence does not.
    let failed = violation(r.run(|e| e.init("pin", &s("123456"))));
    assert_eq!(failed, [Constraint::MaxIncDecSequence { count: 3 }]);
    assert_eq!(r.card_tries(), 0, "still blocked, nothing sent");
    // The PUK is still held: init with a good value works without a new SO login.
    r.run(|e| e.init("pin", &s("802945"))).unwrap();
    assert_eq!(r.card_tries(), 3);
}

#[test]
fn openpgp_change_and_reset_code_init_are_checked() {
    let config = CardConfig {
        reset_code: Some(s("87654321")),
        ..CardConfig::openpgp()
    };
    let r = rig(config, strict());
    let failed = violation(r.run(|e| e.change("user", &s("123456"), &s("1234567"))));
    let types: Vec<_> = failed.iter().map(Constraint::type_name).collect();
    assert_eq!(
        types,
        [
            "minLength",
            "minUpperCase",
            "minLowerCase",
            "minSpecial",
            "newOldDissimilar"
        ]
    );
    assert_eq!(r.card_tries(), 3);
    // Too similar: 123456 → 123456Aa! is distance 3 of 9 (33 %).
    let failed = violation(r.run(|e| e.change("user", &s("123456"), &s("123456Aa!"))));
    assert_eq!(failed, [Constraint::NewOldDissimilar { threshold: 50 }]);
    r.run(|e| e.change("user", &s("123456"), &s("Tr0ub4dor&3")))
        .unwrap();
    let e = r
        .run(|e| {
            e.login_so("user", &s("87654321"), SoPath::ResetCode)?;
            e.init("user", &s("weak"))
        })
        .unwrap_err();
    assert_eq!(e.code(), "CONSTRAINT_VIOLATION");
    assert_eq!(r.card_tries(), 3);
    // The admin PIN (no policy beyond the built-in) keeps the card limits.
    assert_eq!(
        r.run(|e| e.change("admin", &s("12345678"), &s("1234567")))
            .unwrap_err()
            .code(),
        "CONSTRAINT_VIOLATION"
    );
}

#[test]
fn status_uses_the_policy_label_and_try_count_low_threshold() {
    let r = rig(CardConfig::piv(), strict());
    let st = r.run(|e| e.status("pin")).unwrap();
    assert_eq!(st.label, "Badge PIN");
    assert!(!st.try_count_low);
    assert!(r.run(|e| e.login("pin", &s("000000"), false)).is_err());
    // 2 of 3 left: below the maximum, but above the threshold of 1.
    let st = r.run(|e| e.status("pin")).unwrap();
    assert_eq!(st.remaining_tries, Some(2));
    assert!(!st.try_count_low);
    assert!(r.run(|e| e.login("pin", &s("000000"), false)).is_err());
    assert!(r.run(|e| e.status("pin")).unwrap().try_count_low);
    // Without the threshold, one wrong try is enough.
    let r = rig(CardConfig::piv(), PolicySet::builtin());
    assert!(r.run(|e| e.login("pin", &s("000000"), false)).is_err());
    let st = r.run(|e| e.status("pin")).unwrap();
    assert!(st.try_count_low);
    assert_eq!(st.label, "PIN");
}

#[test]
fn login_is_not_held_to_the_policy() {
    // A PIN set before the policy existed must still open the card.
    let r = rig(CardConfig::piv(), strict());
    r.run(|e| e.login("pin", &s("123456"), false)).unwrap();
}

#[test]
fn policies_can_be_swapped_on_an_open_engine() {
    let r = rig(CardConfig::piv(), PolicySet::builtin());
    r.run(|e| {
        e.set_policies(&strict());
        Ok(())
    })
    .unwrap();
    assert_eq!(r.run(|e| Ok(e.constraints("pin")?.len())).unwrap(), 5);
}
