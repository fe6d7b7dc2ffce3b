//! PIN policies on real pcscd + vpcd + our virtual card process: a change
//! that breaks the policy never reaches the card, so the card's remaining
//! tries stay as they were — through the engine and through the CLI.

use std::sync::Arc;

use cardgate::error::Error;
use cardgate::policy::{Constraint, PolicySet};
use cardgate::secret::Secret;
use cardgate::testing::Service;
use cardgate::transport::pcsc::PcscBackend;
use libtest_mimic::{Failed, Trial};

use crate::harness::{self, *};

/// Every test of this module, by name.
pub fn tests() -> Vec<Trial> {
    trials([
        (
            "policy_violating_change_spends_no_try",
            policy_violating_change_spends_no_try,
        ),
        (
            "policy_cli_change_refused_before_the_card",
            policy_cli_change_refused_before_the_card,
        ),
    ])
}

const STRICT_PIV: &str = r#"
[match]
profile = "piv"
[pins.pin]
constraints = [
  { type = "numeric" },
  { type = "minMaxLength", minLength = 6, maxLength = 8 },
  { type = "maxIdenticalSequence", count = 3 },
  { type = "maxIncDecSequence", count = 3 },
  { type = "newOldDifferent" },
]
"#;

const STRICT_OPENPGP: &str = r#"
[match]
profile = "openpgp"
[pins.user]
constraints = [
  { type = "minLength", minLength = 8 },
  { type = "minDigits", count = 1 },
  { type = "minSpecial", count = 1 },
]
"#;

/// The user PIN's remaining tries, read by a fresh connection (a new
/// service) so nothing the engine under test remembers can hide a spent try.
fn fresh_tries(reader: &'static str, pin: &'static str) -> Result<Option<u8>, Failed> {
    let service = Service::new(Arc::new(PcscBackend::new()));
    service
        .with_engine(reader, move |e| e.status(pin))
        .map(|s| s.remaining_tries)
        .map_err(|e| format!("status: {e}").into())
}

fn violation(r: Result<(), Error>, what: &str) -> Result<Vec<Constraint>, Failed> {
    match r {
        Err(Error::ConstraintViolation { failed }) => Ok(failed),
        other => Err(format!("{what}: expected CONSTRAINT_VIOLATION, got {other:?}").into()),
    }
}

fn policy_violating_change_spends_no_try() -> Result<(), Failed> {
    let _vc = card("piv", PORT_1, &[])?;
    let mut set = PolicySet::builtin();
    set.insert_str("strict-piv", STRICT_PIV, 1)
        .map_err(|e| e.to_string())?;
    let service = Service::with_policies(Arc::new(PcscBackend::new()), Arc::new(set));
    let change = |old: &'static str, new: &'static str| {
        service.with_engine(READER_1, move |e| {
            e.change("pin", &Secret::from(old), &Secret::from(new))
        })
    };
    eq(fresh_tries(READER_1, "pin")?, Some(3), "initial tries")?;
    // A wrong current PIN with a new PIN that breaks the policy: had
    // anything reached the card, a try would be gone.
    let failed = violation(change("999999", "111111"), "wrong old, bad new")?;
    eq(
        failed,
        vec![Constraint::MaxIdenticalSequence { count: 3 }],
        "failed constraints",
    )?;
    let failed = violation(change("123456", "123456"), "same PIN")?;
    eq(
        failed,
        vec![
            Constraint::MaxIncDecSequence { count: 3 },
            Constraint::NewOldDifferent,
        ],
        "failed constraints",
    )?;
    violation(change("999999", "12a4567"), "not numeric")?;
    eq(
        fresh_tries(READER_1, "pin")?,
        Some(3),
        "tries after refused changes",
    )?;
    // The same wrong current PIN with a good new one does reach the card.
    eq(
        change("999999", "802945"),
        Err(Error::PinIncorrect {
            remaining_tries: Some(2),
        }),
        "wrong old PIN, good new PIN",
    )?;
    eq(fresh_tries(READER_1, "pin")?, Some(2), "one try spent")?;
    change("123456", "802945").map_err(|e| format!("good change: {e}"))?;
    eq(fresh_tries(READER_1, "pin")?, Some(3), "counter reset")?;
    // checkConstraints never touches the card either.
    let results = service
        .with_engine(READER_1, |e| {
            e.check_constraints("pin", &Secret::from("802945"), &Secret::from("802945"))
        })
        .map_err(|e| e.to_string())?;
    eq(results, vec![true, true, true, true, false], "check")?;
    eq(fresh_tries(READER_1, "pin")?, Some(3), "tries at the end")
}

/// The CLI with the policies of `policy_dir`.
fn cli(args: &[&str], stdin: &str, policy_dir: &str) -> Result<(i32, String), Failed> {
    harness::cli(args, stdin, &[("CARDGATE_POLICY_PATH", policy_dir)])
}

fn user_tries(dir: &str) -> Result<Option<u64>, Failed> {
    let (code, out) = cli(
        &[
            "pin", "status", "--reader", READER_0, "--pin", "user", "--json",
        ],
        "",
        dir,
    )?;
    eq(code, 0, "status exit")?;
    Ok(json(&out)?["pins"][0]["remainingTries"].as_u64())
}

fn policy_cli_change_refused_before_the_card() -> Result<(), Failed> {
    let _vc = card("openpgp", PORT_0, &[])?;
    let tmp = tempfile::tempdir()?;
    std::fs::write(tmp.path().join("strict-openpgp.toml"), STRICT_OPENPGP)?;
    let dir = tmp.path().to_str().ok_or("temp path is not UTF-8")?;
    // getConstraints: the policy's list, then the card's limits (maximum
    // from the card's DO C4).
    let (code, out) = cli(
        &[
            "policy", "show", "--reader", READER_0, "--pin", "user", "--json",
        ],
        "",
        dir,
    )?;
    eq(code, 0, "policy show exit")?;
    let v = json(&out)?;
    let constraints = &v["pins"][0]["constraints"];
    eq(
        constraints[0]["type"].as_str(),
        Some("minLength"),
        "first constraint",
    )?;
    eq(
        constraints[3]["type"].as_str(),
        Some("minMaxLength"),
        "card limits appended",
    )?;
    eq(
        constraints[3]["maxLength"].as_u64(),
        Some(127),
        "maximum from DO C4",
    )?;
    eq(user_tries(dir)?, Some(3), "initial tries")?;
    // Wrong current PIN, new PIN without digit or special character.
    let change = [
        "pin",
        "change",
        "--reader",
        READER_0,
        "--pin",
        "user",
        "--pin-stdin",
        "--json",
    ];
    let (code, out) = cli(&change, "000000\nabcdefgh\n", dir)?;
    eq(code, 8, "policy violation exit")?;
    let v = json(&out)?;
    eq(
        v["error"]["code"].as_str(),
        Some("CONSTRAINT_VIOLATION"),
        "code",
    )?;
    let types: Vec<&str> = v["error"]["constraints"]
        .as_array()
        .ok_or("no constraints in the error")?
        .iter()
        .filter_map(|c| c["type"].as_str())
        .collect();
    eq(types, vec!["minDigits", "minSpecial"], "failed constraints")?;
    check(
        !out.contains("abcdefgh") && !out.contains("000000"),
        "no PIN in the output",
    )?;
    eq(user_tries(dir)?, Some(3), "no try spent")?;
    // policy test: pass/fail per constraint, nothing sent.
    let test = ["policy", "test", "--reader", READER_0, "--pin", "user"];
    let (code, _) = cli(&test, "000000\nabc1!defg\n", dir)?;
    eq(code, 0, "policy test of a good PIN")?;
    let (code, _) = cli(&test, "000000\nabc\n", dir)?;
    eq(code, 8, "policy test of a bad PIN")?;
    eq(user_tries(dir)?, Some(3), "policy test spent no try")?;
    // A compliant change goes through.
    let (code, out) = cli(&change, "123456\nabc1!defg\n", dir)?;
    eq(code, 0, &format!("compliant change: {out}"))?;
    eq(user_tries(dir)?, Some(3), "tries after the change")
}
