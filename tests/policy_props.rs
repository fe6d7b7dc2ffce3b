//! Property tests: `checkConstraints` agrees with enforcement, keeps the
//! order of `getConstraints`, and the engine refuses exactly what the check
//! says fails — without spending a try.

use cardgate::error::Error;
use cardgate::policy::{Constraint, PinPolicy, PolicySet};
use cardgate::secret::Secret;
use cardgate::testing::Service;
use cardgate::vcard::VirtualCard;
use cardgate::vcard::config::CardConfig;
use cardgate::vcard::sim::SimBackend;
use proptest::prelude::*;
use std::sync::Arc;

fn constraint() -> impl Strategy<Value = Constraint> {
    let n = 0u32..10;
    prop_oneof![
        n.clone()
            .prop_map(|min_length| Constraint::MinLength { min_length }),
        (1u32..10).prop_map(|length| Constraint::ExactLength { length }),
        (0u32..8, 0u32..6).prop_map(|(a, b)| Constraint::MinMaxLength {
            min_length: a,
            max_length: (a + b).max(1),
        }),
        Just(Constraint::Numeric),
        n.clone().prop_map(|count| Constraint::MinDigits { count }),
        n.clone()
            .prop_map(|count| Constraint::MinUpperCase { count }),
        n.clone().prop_map(|count| Constraint::MinSpecial { count }),
        n.prop_map(|count| Constraint::MinLowerCase { count }),
        Just(Constraint::NewOldDifferent),
        (0u32..=100).prop_map(|threshold| Constraint::NewOldDissimilar { threshold }),
        (2u32..5).prop_map(|count| Constraint::MaxIdenticalSequence { count }),
        (2u32..5).prop_map(|count| Constraint::MaxIncDecSequence { count }),
    ]
}

/// PIN-like text: digits, letters of both cases, specials, non-ASCII.
const PIN: &str = "[0-9a-cA-C!é€ ]{0,10}";

fn policy(constraints: Vec<Constraint>) -> PinPolicy {
    PinPolicy {
        constraints,
        label: None,
        try_count_low: None,
        policy: None,
        source: None,
    }
}

/// The constraints as a TOML policy file for OpenPGP's user PIN.
fn toml_policy(constraints: &[Constraint]) -> String {
    let items: Vec<String> = constraints
        .iter()
        .map(|c| {
            let v = serde_json::to_value(c).unwrap();
            let fields: Vec<String> = v
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| format!("{k} = {v}"))
                .collect();
            format!("{{ {} }}", fields.join(", "))
        })
        .collect();
    format!(
        "[match]\nprofile = \"openpgp\"\n[pins.user]\nconstraints = [ {} ]\n",
        items.join(", ")
    )
}

proptest! {
    #[test]
    fn check_agrees_with_enforcement_and_keeps_order(
        list in prop::collection::vec(constraint(), 0..8),
        old in PIN,
        new in PIN,
    ) {
        let p = policy(list.clone());
        let (old, new) = (Secret::from(old.as_str()), Secret::from(new.as_str()));
        let results = p.check(&old, &new);
        prop_assert_eq!(results.len(), list.len());
        for (c, ok) in list.iter().zip(&results) {
            prop_assert_eq!(c.check(&old, &new), *ok, "{}", c);
        }
        let expected_failed: Vec<Constraint> = list
            .iter()
            .zip(&results)
            .filter(|(_, ok)| !**ok)
            .map(|(c, _)| c.clone())
            .collect();
        match p.enforce(&old, &new) {
            Ok(()) => prop_assert!(results.iter().all(|ok| *ok)),
            Err(Error::ConstraintViolation { failed }) => {
                prop_assert_eq!(failed, expected_failed);
            }
            Err(e) => prop_assert!(false, "unexpected error {e:?}"),
        }
        // Reversing the list reverses the answers.
        let mut rev = list.clone();
        rev.reverse();
        let mut rev_results = policy(rev).check(&old, &new);
        rev_results.reverse();
        prop_assert_eq!(rev_results, results);
    }

    #[test]
    fn empty_old_satisfies_the_old_new_constraints(new in PIN, threshold in 0u32..=100) {
        let new = Secret::from(new.as_str());
        let none = Secret::default();
        prop_assert!(Constraint::NewOldDifferent.check(&none, &new));
        let dissimilar = Constraint::NewOldDissimilar { threshold };
        prop_assert!(dissimilar.check(&none, &new));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn the_engine_refuses_exactly_what_the_check_fails(
        list in prop::collection::vec(constraint(), 0..5),
        new in PIN,
    ) {
        let mut set = PolicySet::builtin();
        set.insert_str("prop", &toml_policy(&list), 1).unwrap();
        let sim = SimBackend::new();
        sim.add_reader("R");
        sim.insert_card("R", VirtualCard::new(CardConfig::openpgp())).unwrap();
        let service = Service::with_policies(Arc::new(sim.clone()), Arc::new(set));
        let new2 = new.clone();
        let (constraints, results) = service
            .with_engine("R", move |e| {
                let c = e.constraints("user")?.to_vec();
                let r = e.check_constraints("user", &Secret::from("123456"), &Secret::from(new2.as_str()))?;
                Ok((c, r))
            })
            .unwrap();
        prop_assert_eq!(constraints.len(), results.len());
        let outcome = service.with_engine("R", move |e| {
            e.change("user", &Secret::from("123456"), &Secret::from(new.as_str()))
        });
        let all_ok = results.iter().all(|ok| *ok);
        match outcome {
            Err(Error::ConstraintViolation { failed }) => {
                prop_assert!(!all_ok);
                let expected: Vec<_> = constraints
                    .iter()
                    .zip(&results)
                    .filter(|(_, ok)| !**ok)
                    .map(|(c, _)| c.clone())
                    .collect();
                prop_assert_eq!(failed, expected);
            }
            Ok(()) => prop_assert!(all_ok),
            Err(e) => prop_assert!(false, "unexpected {e:?}"),
        }
        // The old PIN was right, or nothing was sent: no try is ever spent.
        prop_assert_eq!(sim.with_card("R", |c| c.user_pin_tries()), Some(3));
    }
}
