//! Policy files: parsing, refusal messages (file, line, problem), loading
//! from layered directories, same-name override and matching precedence.

use cardgate::card::Token;
use cardgate::policy::{
    Constraint, DirKind, PinPolicy, Policy, PolicyError, PolicySet, PolicySource, PolicySources,
    offline_token,
};
use std::path::Path;

const PIV_ATR: &[u8] = &[0x3B, 0x88, 0x80, 0x01, 0x50, 0x49, 0x56];

fn parse(text: &str) -> Result<Policy, PolicyError> {
    Policy::parse("test", "test.toml", text, PolicySource::Builtin, 1)
}

fn refused(text: &str) -> (Option<usize>, String) {
    let e = parse(text).expect_err("the policy should be refused");
    assert_eq!(e.file, "test.toml");
    assert!(
        e.to_string().starts_with("test.toml:"),
        "message names the file: {e}"
    );
    (e.line, e.message)
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

fn piv() -> Token {
    offline_token("piv").unwrap()
}

fn pin_of(set: &PolicySet, token: &Token, atr: &[u8], id: &str) -> PinPolicy {
    set.resolve(token, atr).pin(id).unwrap().clone()
}

#[test]
fn builtin_policies_parse_and_give_the_card_limits() {
    let set = PolicySet::builtin();
    let names: Vec<_> = set.policies().iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["piv", "openpgp"]);
    let pin = pin_of(&set, &piv(), PIV_ATR, "pin");
    assert_eq!(
        pin.constraints,
        [
            Constraint::Numeric,
            Constraint::MinMaxLength {
                min_length: 6,
                max_length: 8
            }
        ]
    );
    assert_eq!(pin.policy.as_deref(), Some("piv"));
    assert_eq!(pin.source.as_deref(), Some("builtin"));
    assert_eq!(
        pin_of(&set, &piv(), PIV_ATR, "puk").constraints,
        [Constraint::ExactLength { length: 8 }]
    );
    let pgp = offline_token("openpgp").unwrap();
    let user = pin_of(&set, &pgp, &[], "user");
    assert_eq!(
        user.constraints,
        [Constraint::MinMaxLength {
            min_length: 6,
            max_length: 127
        }]
    );
    let admin = pin_of(&set, &pgp, &[], "admin");
    assert_eq!(
        admin.constraints,
        [Constraint::MinMaxLength {
            min_length: 8,
            max_length: 127
        }]
    );
}

#[test]
fn openpgp_maximum_comes_from_do_c4() {
    let status = cardgate::card::openpgp::PwStatus::parse(&[1, 32, 32, 64, 3, 0, 3]).unwrap();
    let token = cardgate::card::openpgp::build_token(None, Some(status));
    let set = PolicySet::builtin();
    assert_eq!(
        pin_of(&set, &token, &[], "user").constraints,
        [Constraint::MinMaxLength {
            min_length: 6,
            max_length: 32
        }]
    );
    assert_eq!(
        pin_of(&set, &token, &[], "admin").constraints,
        [Constraint::MinMaxLength {
            min_length: 8,
            max_length: 64
        }]
    );
}

#[test]
fn card_limits_apply_without_any_policy() {
    let set = PolicySet::empty();
    let pin = pin_of(&set, &piv(), PIV_ATR, "pin");
    assert_eq!(
        pin.constraints,
        [
            Constraint::MinMaxLength {
                min_length: 6,
                max_length: 8
            },
            Constraint::Numeric
        ]
    );
    assert_eq!(pin.policy, None);
    // A policy that says nothing about length or digits still gets them.
    let mut set = PolicySet::empty();
    set.insert_str(
        "strict",
        r#"
[match]
profile = "piv"
[pins.pin]
label = "Card PIN"
tryCountLow = 1
constraints = [ { type = "maxIdenticalSequence", count = 3 } ]
"#,
        1,
    )
    .unwrap();
    let pin = pin_of(&set, &piv(), PIV_ATR, "pin");
    assert_eq!(
        pin.constraints,
        [
            Constraint::MaxIdenticalSequence { count: 3 },
            Constraint::MinMaxLength {
                min_length: 6,
                max_length: 8
            },
            Constraint::Numeric
        ]
    );
    assert_eq!(pin.label.as_deref(), Some("Card PIN"));
    assert_eq!(pin.try_count_low, Some(1));
    // A stricter length inside the card's range replaces the card's; a
    // looser one does not.
    let mut set = PolicySet::empty();
    set.insert_str(
        "len",
        r#"
[match]
profile = "piv"
[pins.pin]
constraints = [ { type = "exactLength", length = 7 }, { type = "numeric" } ]
[pins.puk]
constraints = [ { type = "minMaxLength", minLength = 4, maxLength = 10 } ]
"#,
        1,
    )
    .unwrap();
    assert_eq!(
        pin_of(&set, &piv(), PIV_ATR, "pin").constraints,
        [Constraint::ExactLength { length: 7 }, Constraint::Numeric]
    );
    assert_eq!(
        pin_of(&set, &piv(), PIV_ATR, "puk").constraints,
        [
            Constraint::MinMaxLength {
                min_length: 4,
                max_length: 10
            },
            Constraint::ExactLength { length: 8 }
        ]
    );
}

#[test]
fn every_constraint_type_parses_and_order_is_kept() {
    let p = parse(
        r#"
[match]
profile = "openpgp"

[pins.user]
constraints = [
  { type = "newOldDifferent" },
  { type = "minLength", minLength = 8 },
  { type = "exactLength", length = 9 },
  { type = "minMaxLength", minLength = "card", maxLength = "card" },
  { type = "numeric" },
  { type = "minDigits", count = 1 },
  { type = "minUpperCase", count = 2 },
  { type = "minSpecial", count = 3 },
  { type = "minLowerCase", count = 4 },
  { type = "newOldDissimilar", threshold = 50 },
  { type = "maxIdenticalSequence", count = 3 },
  { type = "maxIncDecSequence", count = 4 },
]
"#,
    )
    .unwrap();
    let mut set = PolicySet::empty();
    set.insert(p);
    let user = pin_of(&set, &offline_token("openpgp").unwrap(), &[], "user");
    let types: Vec<_> = user.constraints.iter().map(|c| c.type_name()).collect();
    assert_eq!(
        types,
        [
            "newOldDifferent",
            "minLength",
            "exactLength",
            "minMaxLength",
            "numeric",
            "minDigits",
            "minUpperCase",
            "minSpecial",
            "minLowerCase",
            "newOldDissimilar",
            "maxIdenticalSequence",
            "maxIncDecSequence"
        ]
    );
    assert_eq!(
        user.constraints[3],
        Constraint::MinMaxLength {
            min_length: 6,
            max_length: 127
        }
    );
    // The same constraints as [[array of tables]].
    parse(
        r#"
[match]
profile = "piv"
[[pins.pin.constraints]]
type = "numeric"
[[pins.pin.constraints]]
type = "minMaxLength"
minLength = 6
maxLength = 8
"#,
    )
    .unwrap();
}

#[test]
fn bad_files_are_refused_with_line_and_problem() {
    let head = "[match]\nprofile = \"piv\"\n[pins.pin]\nconstraints = [\n";
    let cases: &[(&str, usize, &str)] = &[
        (
            "  { type = \"minLenght\", minLength = 6 },\n]\n",
            5,
            "pins.pin, constraint 1: unknown variant `minLenght`",
        ),
        (
            "  { type = \"numeric\" },\n  { type = \"minLength\" },\n]\n",
            6,
            "pins.pin, constraint 2: missing field `minLength`",
        ),
        (
            "  { type = \"minMaxLength\", minLength = 8, maxLength = 6 },\n]\n",
            5,
            "minMaxLength: minLength 8 is greater than maxLength 6",
        ),
        ("  { minLength = 6 },\n]\n", 5, "missing field `type`"),
        (
            "  { type = \"numeric\", count = 2 },\n]\n",
            5,
            "unknown field `count`",
        ),
        (
            "  { type = \"minDigits\", cnt = 2 },\n]\n",
            5,
            "unknown field `cnt`",
        ),
        (
            "  { type = \"newOldDissimilar\", threshold = 150 },\n]\n",
            5,
            "threshold is a percentage",
        ),
        (
            "  { type = \"maxIdenticalSequence\", count = 1 },\n]\n",
            5,
            "count must be at least 2",
        ),
        (
            "  { type = \"minLength\", minLength = -1 },\n]\n",
            5,
            "negative",
        ),
        (
            "  { type = \"minLength\", minLength = \"many\" },\n]\n",
            5,
            "expected a length or \"card\"",
        ),
    ];
    for (tail, line, problem) in cases {
        let (l, m) = refused(&format!("{head}{tail}"));
        assert_eq!(l, Some(*line), "{m}");
        assert!(m.contains(problem), "{m:?} should mention {problem:?}");
    }
    let others: &[(&str, usize, &str)] = &[
        ("[match]\natr = \"3B((\"\n", 2, "bad atr regular expression"),
        (
            "[match]\nlabel = \"[a-\"\n",
            2,
            "bad label regular expression",
        ),
        ("[match]\naid = \"A0 00 0Z\"\n", 2, "not hexadecimal"),
        (
            "[match]\nprofile = \"smartcard-hsm\"\n",
            2,
            "unknown profile \"smartcard-hsm\"",
        ),
        ("[match]\n\n[pins.pin]\n", 1, "[match] is empty"),
        (
            "description = \"x\"\n[match]\nprofile = \"openpgp\"\n[pins.pin]\n",
            4,
            "unknown PIN id \"pin\" for profile openpgp (known: user, admin)",
        ),
        (
            "[match]\nprofile = \"piv\"\nreader = \"x\"\n",
            3,
            "unknown field `reader`",
        ),
        (
            "[match]\nprofile = \"piv\"\n[pins.pin]\ntryCountLow = 300\n",
            4,
            "",
        ),
        ("[match]\nprofile = \"piv\"\n[pins.pin\n", 3, ""),
    ];
    for (text, line, problem) in others {
        let (l, m) = refused(text);
        assert_eq!(l, Some(*line), "{m}");
        assert!(m.contains(problem), "{m:?} should mention {problem:?}");
    }
    let e = parse("[pins.pin]\n").unwrap_err();
    assert!(e.message.contains("no [match] table"), "{e}");
}

#[test]
fn one_bad_file_does_not_stop_the_good_ones() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "a-bad.toml",
        "[match]\nprofile = \"piv\"\n[pins.pin]\nconstraints = [ { type = \"bogus\" } ]\n",
    );
    write(
        dir.path(),
        "b-good.toml",
        "[match]\nprofile = \"piv\"\n[pins.pin]\nconstraints = [ { type = \"minLength\", minLength = 7 } ]\n",
    );
    write(dir.path(), "notes.txt", "not a policy");
    let sources = PolicySources::builtin_only().with_dir(DirKind::Custom, dir.path());
    let (set, errors) = PolicySet::load(&sources);
    assert_eq!(errors.len(), 1);
    assert!(errors[0].file.ends_with("a-bad.toml"));
    assert_eq!(errors[0].line, Some(4));
    assert!(errors[0].message.contains("unknown variant `bogus`"));
    let pin = pin_of(&set, &piv(), PIV_ATR, "pin");
    assert_eq!(pin.policy.as_deref(), Some("b-good"));
    assert_eq!(pin.constraints[0], Constraint::MinLength { min_length: 7 });
    // A directory that does not exist is no error.
    let (_, errors) = PolicySet::load(
        &PolicySources::builtin_only().with_dir(DirKind::System, dir.path().join("nope")),
    );
    assert!(errors.is_empty());
}

#[test]
fn same_name_in_a_later_layer_replaces_the_file() {
    let system = tempfile::tempdir().unwrap();
    let user = tempfile::tempdir().unwrap();
    // The system directory replaces the built-in piv policy …
    write(
        system.path(),
        "piv.toml",
        "[match]\nprofile = \"piv\"\n[pins.pin]\nconstraints = [ { type = \"numeric\" }, { type = \"exactLength\", length = 8 } ]\n",
    );
    let sources = PolicySources::builtin_only().with_dir(DirKind::System, system.path());
    let (set, errors) = PolicySet::load(&sources);
    assert!(errors.is_empty());
    assert_eq!(set.policies().len(), 2);
    let pin = pin_of(&set, &piv(), PIV_ATR, "pin");
    assert_eq!(
        pin.constraints,
        [Constraint::Numeric, Constraint::ExactLength { length: 8 }]
    );
    assert!(pin.source.unwrap().ends_with("piv.toml"));
    // … and the replaced file's other PIN objects are gone with it: the
    // PUK falls back to the card's limits.
    assert_eq!(pin_of(&set, &piv(), PIV_ATR, "puk").policy, None);
    // The user directory replaces the system one.
    write(
        user.path(),
        "piv.toml",
        "[match]\nprofile = \"piv\"\n[pins.pin]\nconstraints = [ { type = \"newOldDifferent\" } ]\n",
    );
    let (set, _) = PolicySet::load(&sources.with_dir(DirKind::User, user.path()));
    assert_eq!(
        pin_of(&set, &piv(), PIV_ATR, "pin").constraints[0],
        Constraint::NewOldDifferent
    );
}

#[test]
fn most_specific_match_wins_then_later_layer_then_name() {
    let mut set = PolicySet::builtin();
    let rule = |c: &str| format!("[pins.pin]\nconstraints = [ {{ type = \"{c}\" }} ]\n");
    // Same specificity as the built-in piv (profile only), later layer: wins.
    set.insert_str(
        "company",
        &format!("[match]\nprofile = \"piv\"\n{}", rule("newOldDifferent")),
        1,
    )
    .unwrap();
    assert_eq!(
        pin_of(&set, &piv(), PIV_ATR, "pin").policy.as_deref(),
        Some("company")
    );
    // More specific (profile + ATR), even from an earlier layer: wins for
    // cards with that ATR only.
    set.insert_str(
        "special-atr",
        &format!(
            "[match]\nprofile = \"piv\"\natr = \"^3b888001\"\n{}",
            rule("numeric")
        ),
        0,
    )
    .unwrap();
    assert_eq!(
        pin_of(&set, &piv(), PIV_ATR, "pin").policy.as_deref(),
        Some("special-atr")
    );
    assert_eq!(
        pin_of(&set, &piv(), &[0x3B, 0x00], "pin").policy.as_deref(),
        Some("company")
    );
    // AID prefix and label regex.
    set.insert_str(
        "by-aid-and-label",
        &format!(
            "[match]\naid = \"A000000308\"\nlabel = \"^PIV\"\natr = \"^3B88\"\n{}",
            rule("numeric")
        ),
        0,
    )
    .unwrap();
    assert_eq!(
        pin_of(&set, &piv(), PIV_ATR, "pin").policy.as_deref(),
        Some("by-aid-and-label")
    );
    set.insert_str(
        "wrong-aid",
        &format!(
            "[match]\naid = \"D276000124\"\nlabel = \"^PIV\"\natr = \"^3B88\"\nprofile = \"piv\"\n{}",
            rule("numeric")
        ),
        5,
    )
    .unwrap();
    assert_eq!(
        pin_of(&set, &piv(), PIV_ATR, "pin").policy.as_deref(),
        Some("by-aid-and-label")
    );
    // A policy for another profile never applies.
    let pgp = offline_token("openpgp").unwrap();
    assert_eq!(
        pin_of(&set, &pgp, PIV_ATR, "user").policy.as_deref(),
        Some("openpgp")
    );
    // Equal specificity and layer: the name sorting last.
    let mut set = PolicySet::empty();
    for name in ["b", "c", "a"] {
        set.insert_str(
            name,
            &format!("[match]\nprofile = \"piv\"\n{}", rule("numeric")),
            1,
        )
        .unwrap();
    }
    assert_eq!(
        pin_of(&set, &piv(), PIV_ATR, "pin").policy.as_deref(),
        Some("c")
    );
}

#[test]
fn a_policy_without_the_pin_leaves_it_to_the_next_match() {
    let mut set = PolicySet::builtin();
    set.insert_str(
        "puk-only",
        "[match]\nprofile = \"piv\"\natr = \"^3B\"\n[pins.puk]\nconstraints = [ { type = \"numeric\" } ]\n",
        1,
    )
    .unwrap();
    let card = set.resolve(&piv(), PIV_ATR);
    assert_eq!(card.pin("puk").unwrap().policy.as_deref(), Some("puk-only"));
    assert_eq!(card.pin("pin").unwrap().policy.as_deref(), Some("piv"));
}
