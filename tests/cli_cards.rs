//! `cardgate card list|show|check` as a process, without a card: the
//! built-in profiles, files from CARDGATE_CARDS_PATH and the user's config
//! dir `cards/`, a user file replacing a built-in one, and refused files
//! with the field named.

#[path = "common/home.rs"]
mod home;

use home::Home;
use serde_json::Value;
use std::process::Output;

/// The binary in `home`, with CARDGATE_CARDS_PATH set or removed.
fn cardgate(home: &Home, cards_path: Option<&str>, args: &[&str]) -> Output {
    let mut c = home.cardgate();
    match cards_path {
        Some(p) => c.env("CARDGATE_CARDS_PATH", p),
        None => c.env_remove("CARDGATE_CARDS_PATH"),
    };
    c.args(args).output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}{}", text(&out.stdout), text(&out.stderr)))
}

/// A card profile building on the ISO 7816-4 template.
const ACME: &str = r#"
name = "acme"
label = "ACME card"
atr = ["3B 02 14 50", { value = "3B 8F 80 01", mask = "FF F0 FF FF" }]

[[application]]
id = "acme"
base = "iso7816.iso"
aid = "F0 01 02 03 04"

[[application.pin]]
id = "pin"
reference = 0x01
tries = [{ source = "query", apdu = "00 CA 01 01 00", tags = ["9B"], max-tags = ["9A"] }]
status-words = { "63C0" = "blocked" }
"#;

/// The PIV profile, replaced: the PIN's counter is not read.
const MY_PIV: &str = r#"
name = "piv"
description = "PIV without the empty VERIFY"

[[application]]
id = "piv"
aid = "A0 00 00 03 08"

[[application.pin]]
id = "pin"
reference = 0x80
min-length = 6
max-length = 8
stored-length = 8
pad = 0xFF
"#;

#[test]
fn list_shows_the_builtin_profiles_in_matching_order() {
    let home = Home::new();
    let out = cardgate(&home, Some(""), &["card", "list", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v = json(&out);
    let names: Vec<&str> = v["profiles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    // Profiles naming ATRs first, then those recognised by AID.
    assert_eq!(
        names,
        ["yubikey", "esteid", "beid", "piv", "openpgp", "iso7816"]
    );
    let yk = &v["profiles"][0];
    assert_eq!(yk["source"], "built-in");
    assert_eq!(yk["atrPatterns"], 3);
    assert_eq!(yk["template"], false);
    assert_eq!(yk["applications"][0]["id"], "piv");
    assert_eq!(
        yk["applications"][0]["pins"],
        serde_json::json!(["pin", "puk"])
    );
    assert_eq!(
        yk["applications"][1]["pins"],
        serde_json::json!(["user", "admin"])
    );
    assert_eq!(v["profiles"][5]["template"], true);
    assert_eq!(v["errors"], serde_json::json!([]));
    // The human form.
    let out = cardgate(&home, Some(""), &["card", "list"]);
    let stdout = text(&out.stdout);
    assert!(stdout.contains("esteid     1 ATR"), "{stdout}");
    assert!(stdout.contains("iso7816    template"), "{stdout}");
    assert!(stdout.contains("openpgp    by AID"), "{stdout}");
}

#[test]
fn cards_path_profiles_and_refused_files_are_listed() {
    let home = Home::new();
    let dir = home.path("cards");
    home.write(&dir.join("acme.toml"), ACME);
    home.write(
        &dir.join("zz-bad.toml"),
        "name = \"bad\"\n[[application]]\nid = \"x\"\naid = \"F0 01 02 03 04\"\n[[application.pin]]\nid = \"pin\"\nreference = 1\nmin-length = 9\nmax-length = 4\n",
    );
    home.write(&dir.join("notes.txt"), "not a profile");
    let path = dir.to_str().unwrap();
    let out = cardgate(&home, Some(path), &["card", "list", "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let v = json(&out);
    assert_eq!(v["directories"][0]["path"], path);
    assert_eq!(v["directories"][0]["exists"], true);
    // A file's ATR profile comes before the built-in ones.
    let acme = &v["profiles"][0];
    assert_eq!(acme["name"], "acme");
    assert!(acme["source"].as_str().unwrap().ends_with("acme.toml"));
    assert_eq!(acme["atrPatterns"], 2);
    assert_eq!(
        acme["applications"][0]["pins"],
        serde_json::json!(["pin", "puk"])
    );
    let errors = v["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1);
    assert!(errors[0]["file"].as_str().unwrap().ends_with("zz-bad.toml"));
    assert!(
        errors[0]["message"]
            .as_str()
            .unwrap()
            .contains("min-length 9"),
        "{}",
        errors[0]
    );
    // The human form warns on stderr.
    let out = cardgate(&home, Some(path), &["card", "list"]);
    assert!(text(&out.stderr).contains("warning: card profile refused"));
    assert!(text(&out.stderr).contains("zz-bad.toml"));
}

#[test]
fn show_resolves_a_profile_in_full() {
    let home = Home::new();
    home.write(&home.path("config/cardgate/cards/acme.toml"), ACME);
    // The user's config dir `cards/` is read when CARDGATE_CARDS_PATH is unset.
    let out = cardgate(&home, None, &["card", "show", "acme", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v = json(&out);
    assert_eq!(v["name"], "acme");
    assert_eq!(v["atr"][0]["value"], "3B021450");
    assert!(v["atr"][0].get("mask").is_none());
    assert_eq!(v["atr"][1]["mask"], "FFF0FFFF");
    let app = &v["applications"][0];
    assert_eq!(app["aid"], "F001020304");
    let pin = &app["pins"][0];
    assert_eq!(pin["id"], "pin");
    assert_eq!(pin["reference"], "01");
    assert_eq!(pin["specific"], false);
    // From the template (`base`).
    assert_eq!(pin["encoding"], "ascii");
    assert_eq!(pin["pad"], "FF");
    assert_eq!(pin["storedLength"], 8);
    assert_eq!(pin["minLength"], 4);
    assert_eq!(pin["chars"], "digits");
    assert_eq!(pin["unblock"]["method"], "code-and-new");
    assert_eq!(pin["unblock"]["by"], "puk");
    assert_eq!(pin["unblock"]["reference"], "82");
    // Its own.
    assert_eq!(pin["tries"][0]["source"], "query");
    assert_eq!(pin["tries"][0]["apdu"], "00CA010100");
    assert_eq!(pin["tries"][0]["tags"], serde_json::json!(["9B"]));
    assert_eq!(pin["tries"][0]["maxTags"], serde_json::json!(["9A"]));
    assert_eq!(pin["statusWords"]["63C0"], "blocked");
    assert_eq!(pin["logout"], "verify-ff");
    assert_eq!(app["pins"][1]["tries"], serde_json::json!([]));

    // A built-in profile, human form: EstEID's PIN2 in its own application.
    let out = cardgate(&home, None, &["card", "show", "esteid"]);
    assert_eq!(out.status.code(), Some(0));
    let stdout = text(&out.stdout);
    for needle in [
        "esteid — Estonian ID card (built-in)",
        "PIN pin2 (PIN2), role signature",
        "reference 85 (specific), after SELECT 51 53 43 44",
        "value: 5-12 digits, ascii, padded with FF to 12 bytes",
        "tries: query 00 CB 3F FF 0A 4D 08 70 06 BF 81 05 02 A0 80 00: tries at 70/BF8105/A0/9B byte 0",
        "unblock: puk (PUK, reference 02): VERIFY of the code, then RESET RETRY COUNTER P1=02",
    ] {
        assert!(stdout.contains(needle), "{needle}\n{stdout}");
    }
    // The Belgian eID: format 2 blocks, no tries, logout by reset.
    let v = json(&cardgate(&home, None, &["card", "show", "beid", "--json"]));
    let pin = &v["applications"][0]["pins"][0];
    assert_eq!(pin["encoding"], "format2");
    assert_eq!(pin["tries"], serde_json::json!([]));
    assert_eq!(pin["logout"], "reset");

    // An unknown name is a usage error.
    let out = cardgate(&home, None, &["card", "show", "nope", "--json"]);
    assert_eq!(out.status.code(), Some(2));
    let v = json(&out);
    assert_eq!(v["ok"], false);
    assert_eq!(v["error"]["code"], "PROFILE_NOT_FOUND");
}

#[test]
fn a_user_file_replaces_the_builtin_profile_of_its_name() {
    let home = Home::new();
    home.write(&home.path("config/cardgate/cards/piv.toml"), MY_PIV);
    let v = json(&cardgate(&home, None, &["card", "show", "piv", "--json"]));
    assert_eq!(v["description"], "PIV without the empty VERIFY");
    assert!(v["source"].as_str().unwrap().ends_with("cards/piv.toml"));
    let pins = v["applications"][0]["pins"].as_array().unwrap();
    assert_eq!(pins.len(), 1);
    assert_eq!(pins[0]["tries"], serde_json::json!([]));
    let v = json(&cardgate(&home, None, &["card", "list", "--json"]));
    let piv: Vec<&Value> = v["profiles"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["name"] == "piv")
        .collect();
    assert_eq!(piv.len(), 1);
    assert!(piv[0]["source"].as_str().unwrap().ends_with("piv.toml"));
}

#[test]
fn check_names_the_field_or_prints_the_profile() {
    let home = Home::new();
    let good = home.path("acme.toml");
    home.write(&good, ACME);
    let out = cardgate(&home, Some(""), &["card", "check", good.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("acme.toml: ok"), "{stdout}");
    assert!(stdout.contains("acme — ACME card"), "{stdout}");
    assert!(stdout.contains("PIN pin (PIN), role user"), "{stdout}");
    let out = cardgate(
        &home,
        Some(""),
        &["card", "check", good.to_str().unwrap(), "--json"],
    );
    let v = json(&out);
    assert_eq!(v["ok"], true);
    assert_eq!(v["profile"]["name"], "acme");

    // Replacing a built-in profile, and an empty VERIFY, are pointed out.
    let piv = home.path("piv.toml");
    home.write(
        &piv,
        &format!("{MY_PIV}tries = [{{ source = \"empty-verify\" }}]\n"),
    );
    let v = json(&cardgate(
        &home,
        Some(""),
        &["card", "check", piv.to_str().unwrap(), "--json"],
    ));
    assert_eq!(v["ok"], true);
    let warnings = v["warnings"].to_string();
    assert!(
        warnings.contains("replaces the built-in profile `piv`"),
        "{warnings}"
    );
    assert!(warnings.contains("empty VERIFY"), "{warnings}");

    for (name, body, field) in [
        (
            "unknown-field.toml",
            ACME.replace("reference = 0x01", "reference = 0x01\nrefrence = 2"),
            "refrence",
        ),
        (
            "bad-encoding.toml",
            ACME.replace(
                "reference = 0x01",
                "reference = 0x01\nencoding = \"ebcdic\"",
            ),
            "ebcdic",
        ),
        (
            "verify-query.toml",
            ACME.replace("00 CA 01 01 00", "00 20 00 01"),
            "tries: apdu: instruction 20 is not a reading instruction",
        ),
        (
            "bad-base.toml",
            ACME.replace("iso7816.iso", "iso7816.nope"),
            "base `iso7816.nope`",
        ),
        (
            "short-aid.toml",
            ACME.replace("F0 01 02 03 04", "F0 01"),
            "aid: an AID is 5 to 16 bytes",
        ),
        (
            "bad-sw.toml",
            ACME.replace("\"63C0\" = \"blocked\"", "\"9000\" = \"blocked\""),
            "status-words: 9000 always means success",
        ),
        (
            "bad-unblock.toml",
            ACME.replace(
                "reference = 0x01",
                "reference = 0x01\nunblocked-by = \"so\"",
            ),
            "unblocked-by `so`",
        ),
    ] {
        let path = home.path(name);
        home.write(&path, &body);
        let out = cardgate(&home, Some(""), &["card", "check", path.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1), "{name}");
        let err = text(&out.stderr);
        assert!(err.contains(name), "{name}: {err}");
        assert!(err.contains(field), "{name}: {field} not in {err}");
        let out = cardgate(
            &home,
            Some(""),
            &["card", "check", path.to_str().unwrap(), "--json"],
        );
        assert_eq!(out.status.code(), Some(1));
        let v = json(&out);
        assert_eq!(v["ok"], false);
        assert!(
            v["error"]["message"].as_str().unwrap().contains(field),
            "{name}: {v}"
        );
    }
    // A file that is not there.
    let out = cardgate(&home, Some(""), &["card", "check", "/nonexistent.toml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("cannot read"));
}

#[test]
fn builtin_profile_files_check_clean() {
    let home = Home::new();
    let root = env!("CARGO_MANIFEST_DIR");
    for name in ["piv", "openpgp", "yubikey", "esteid", "beid", "iso7816"] {
        let path = format!("{root}/crates/cardgate-card/src/card/profiles/{name}.toml");
        let out = cardgate(&home, Some(""), &["card", "check", &path]);
        assert_eq!(out.status.code(), Some(0), "{name}: {}", text(&out.stderr));
    }
}

#[test]
fn the_card_dirs_key_of_the_config_file_names_the_directories() {
    let home = Home::new();
    let dir = home.path("site-cards");
    home.write(&dir.join("acme.toml"), ACME);
    home.write(
        &home.user_config(),
        &format!("card_dirs = [\"{}\"]\n", dir.display()),
    );
    let out = cardgate(&home, None, &["card", "list", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v = json(&out);
    assert_eq!(v["directories"][0]["path"], dir.to_str().unwrap());
    assert_eq!(v["profiles"][0]["name"], "acme");
    // `config show` tells where the key came from.
    let out = cardgate(&home, None, &["config", "show", "--json"]);
    let shown = text(&out.stdout);
    assert!(shown.contains("card_dirs"), "{shown}");
    assert!(shown.contains("site-cards"), "{shown}");
}
