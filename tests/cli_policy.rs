//! `cardgate policy …` as a process, without a card: offline profiles,
//! policy directories from CARDGATE_POLICY_PATH, exit statuses.

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn cardgate(args: &[&str], policy_path: &str, stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cardgate"))
        .args(args)
        .env("CARDGATE_POLICY_PATH", policy_path)
        .env_remove("CARDGATE_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn test_command_prints_each_constraint_and_never_the_pin() {
    let out = cardgate(
        &["policy", "test", "--profile", "piv"],
        "",
        "123456\n12a45\n",
    );
    assert_eq!(out.status.code(), Some(8));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("FAIL   1. numeric"), "{stdout}");
    assert!(stdout.contains("FAIL   2. minMaxLength(minLength=6, maxLength=8)"));
    assert!(!stdout.contains("12a45") && !stdout.contains("123456"));
    let out = cardgate(
        &["policy", "test", "--profile", "piv", "--json"],
        "",
        "\n654321\n",
    );
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["results"], serde_json::json!([true, true]));
    assert_eq!(v["constraints"][0]["type"], "numeric");
    assert_eq!(v["ok"], true);
}

#[test]
fn user_directory_policies_and_bad_files() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("piv.toml"),
        "[match]\nprofile = \"piv\"\n[pins.pin]\nconstraints = [ { type = \"newOldDifferent\" }, { type = \"numeric\" } ]\n",
    )
    .unwrap();
    let bad = dir.path().join("zz-bad.toml");
    std::fs::write(
        &bad,
        "[match]\nprofile = \"piv\"\n[pins.pin]\nconstraints = [\n { type = \"minMaxLength\", minLength = 9, maxLength = 4 },\n]\n",
    )
    .unwrap();
    let path = dir.path().to_str().unwrap();
    // The good file applies although the bad one is refused.
    let out = cardgate(
        &[
            "policy",
            "show",
            "--profile",
            "piv",
            "--pin",
            "pin",
            "--json",
        ],
        path,
        "",
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let types: Vec<_> = v["pins"][0]["constraints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["type"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(types, ["newOldDifferent", "numeric", "minMaxLength"]);
    assert!(text(&out.stderr).contains("zz-bad.toml:5"));
    // `policy list` shows both.
    let out = cardgate(&["policy", "list", "--json"], path, "");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["errors"][0]["line"], 5);
    assert_eq!(v["policies"][0]["name"], "piv");
    // `policy check` fails on the bad file, with file, line and problem.
    let out = cardgate(&["policy", "check", bad.to_str().unwrap()], path, "");
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("zz-bad.toml:5: pins.pin, constraint 1: minMaxLength: minLength 9 is greater than maxLength 4"),
        "{err}"
    );
    let out = cardgate(
        &[
            "policy",
            "check",
            dir.path().join("piv.toml").to_str().unwrap(),
        ],
        path,
        "",
    );
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn builtin_policy_files_check_clean() {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = cardgate(
        &[
            "policy",
            "check",
            &format!("{root}/policies/piv.toml"),
            &format!("{root}/policies/openpgp.toml"),
        ],
        "",
        "",
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}
