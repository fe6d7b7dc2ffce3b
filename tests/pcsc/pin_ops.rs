//! The PIN engine and the CLI on real pcscd + vpcd + our virtual card
//! process: every operation of the issue, end to end.

use std::sync::Arc;

use cardgate::error::Error;
use cardgate::pin::{PinStatus, SoPath};
use cardgate::secret::Secret;
use cardgate::testing::Service;
use cardgate::transport::Backend;
use cardgate::transport::pcsc::PcscBackend;
use libtest_mimic::{Failed, Trial};

use crate::harness::*;

/// Every test of this module, by name.
pub fn tests() -> Vec<Trial> {
    trials([
        (
            "piv_tries_count_down_and_right_pin_resets",
            piv_tries_count_down_and_right_pin_resets,
        ),
        (
            "piv_change_logout_and_unblock_with_puk",
            piv_change_logout_and_unblock_with_puk,
        ),
        (
            "openpgp_unblock_with_admin_pin_and_reset_code",
            openpgp_unblock_with_admin_pin_and_reset_code,
        ),
        (
            "card_killed_mid_session_then_reinserted",
            card_killed_mid_session_then_reinserted,
        ),
        ("cli_status_verify_exit_codes", cli_status_verify_exit_codes),
        (
            "cli_change_on_a_card_that_hides_the_count",
            cli_change_on_a_card_that_hides_the_count,
        ),
        ("cli_unblock_and_readers_json", cli_unblock_and_readers_json),
        ("cli_no_pcsc_service", cli_no_pcsc_service),
        (
            "cli_yubikey_four_pins_and_a_users_card_profile",
            cli_yubikey_four_pins_and_a_users_card_profile,
        ),
    ])
}

struct Rig {
    service: Service,
    reader: &'static str,
}

impl Rig {
    fn new(reader: &'static str) -> Self {
        Rig {
            service: Service::new(Arc::new(PcscBackend::new())),
            reader,
        }
    }

    fn status(&self, pin: &'static str) -> Result<PinStatus, Failed> {
        self.service
            .with_engine(self.reader, move |e| e.status(pin))
            .map_err(|e| format!("status: {e}").into())
    }

    fn login(&self, pin: &'static str, value: &'static str, so: bool) -> Result<(), Error> {
        self.service
            .with_engine(self.reader, move |e| e.login(pin, &Secret::from(value), so))
    }

    fn init(&self, pin: &'static str, value: &'static str) -> Result<(), Error> {
        self.service
            .with_engine(self.reader, move |e| e.init(pin, &Secret::from(value)))
    }
}

fn piv_tries_count_down_and_right_pin_resets() -> Result<(), Failed> {
    let _vc = card("piv", PORT_0, &[])?;
    let r = Rig::new(READER_0);
    let st = r.status("pin")?;
    eq(st.remaining_tries, Some(3), "initial tries")?;
    check(
        !st.validated && !st.blocked,
        "fresh card is neither verified nor blocked",
    )?;
    eq(
        r.login("pin", "000000", false),
        Err(Error::PinIncorrect {
            remaining_tries: Some(2),
        }),
        "1st wrong",
    )?;
    // The right PIN puts the counter back to its maximum.
    r.login("pin", "123456", false)
        .map_err(|e| format!("right PIN: {e}"))?;
    let st = r.status("pin")?;
    eq(st.remaining_tries, Some(3), "tries after right PIN")?;
    check(st.validated, "validated after right PIN")?;
    eq(
        r.login("pin", "000000", false),
        Err(Error::PinIncorrect {
            remaining_tries: Some(2),
        }),
        "wrong",
    )?;
    check(
        !r.status("pin")?.validated,
        "a wrong PIN ends the verified state",
    )?;
    eq(
        r.login("pin", "000000", false),
        Err(Error::PinIncorrect {
            remaining_tries: Some(1),
        }),
        "wrong",
    )?;
    check(r.status("pin")?.last_try, "lastTry")?;
    eq(
        r.login("pin", "000000", false),
        Err(Error::PinIncorrect {
            remaining_tries: Some(0),
        }),
        "third wrong",
    )?;
    let st = r.status("pin")?;
    check(
        st.blocked && st.remaining_tries == Some(0),
        format!("blocked status: {st:?}"),
    )?;
    eq(
        r.login("pin", "123456", false),
        Err(Error::PinBlocked),
        "right PIN on a blocked card",
    )
}

fn piv_change_logout_and_unblock_with_puk() -> Result<(), Failed> {
    let _vc = card("piv", PORT_1, &[])?;
    let r = Rig::new(READER_1);
    r.service
        .with_engine(READER_1, |e| {
            e.change("pin", &Secret::from("123456"), &Secret::from("24680135"))
        })
        .map_err(|e| format!("change: {e}"))?;
    eq(
        r.login("pin", "123456", false),
        Err(Error::PinIncorrect {
            remaining_tries: Some(2),
        }),
        "old PIN",
    )?;
    r.login("pin", "24680135", false)
        .map_err(|e| format!("new PIN: {e}"))?;
    check(r.status("pin")?.validated, "validated")?;
    r.service
        .with_engine(READER_1, |e| e.logout("pin"))
        .map_err(|e| format!("logout: {e}"))?;
    check(!r.status("pin")?.validated, "logout makes validated false")?;
    // Block, then unblock with the PUK.
    for _ in 0..3 {
        let _ = r.login("pin", "999999", false);
    }
    check(r.status("pin")?.blocked, "blocked")?;
    eq(
        r.init("pin", "112233"),
        Err(Error::SoLoginRequired),
        "init without SO login",
    )?;
    r.login("pin", "12345678", true)
        .map_err(|e| format!("SO login: {e}"))?;
    r.init("pin", "112233").map_err(|e| format!("init: {e}"))?;
    let st = r.status("pin")?;
    check(
        !st.blocked && st.remaining_tries == Some(3),
        format!("after unblock: {st:?}"),
    )?;
    r.login("pin", "112233", false)
        .map_err(|e| format!("login after unblock: {e}"))?;
    Ok(())
}

fn openpgp_unblock_with_admin_pin_and_reset_code() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("card.toml");
    std::fs::write(
        &config,
        "profile = \"openpgp\"\nreset_code = \"resetcode1\"\n",
    )?;
    let _vc = card("openpgp", PORT_0, &["--config", config.to_str().unwrap()])?;
    let r = Rig::new(READER_0);
    eq(r.status("user")?.remaining_tries, Some(3), "user tries")?;
    eq(r.status("admin")?.remaining_tries, Some(3), "admin tries")?;
    let block = |r: &Rig| -> Result<(), Failed> {
        eq(
            r.login("user", "000000", false),
            Err(Error::PinIncorrect {
                remaining_tries: Some(2),
            }),
            "wrong",
        )?;
        eq(
            r.login("user", "000000", false),
            Err(Error::PinIncorrect {
                remaining_tries: Some(1),
            }),
            "wrong",
        )?;
        eq(
            r.login("user", "000000", false),
            Err(Error::PinIncorrect {
                remaining_tries: Some(0),
            }),
            "wrong",
        )
    };
    block(&r)?;
    // With the admin PIN (PW3).
    r.login("user", "12345678", true)
        .map_err(|e| format!("PW3 login: {e}"))?;
    r.init("user", "newuser1")
        .map_err(|e| format!("init after PW3: {e}"))?;
    eq(
        r.status("user")?.remaining_tries,
        Some(3),
        "tries after PW3 unblock",
    )?;
    r.login("user", "newuser1", false)
        .map_err(|e| format!("login: {e}"))?;
    check(r.status("user")?.validated, "validated")?;
    r.service
        .with_engine(READER_0, |e| e.logout("user"))
        .map_err(|e| format!("logout: {e}"))?;
    check(
        !r.status("user")?.validated && !r.status("user")?.so_validated,
        "logout",
    )?;
    // With the reset code.
    block(&r)?;
    r.service
        .with_engine(READER_0, |e| {
            e.login_so("user", &Secret::from("resetcode1"), SoPath::ResetCode)?;
            e.init("user", &Secret::from("newuser2"))
        })
        .map_err(|e| format!("reset code unblock: {e}"))?;
    eq(
        r.status("user")?.remaining_tries,
        Some(3),
        "tries after RC unblock",
    )?;
    r.login("user", "newuser2", false)
        .map_err(|e| format!("login: {e}"))?;
    Ok(())
}

fn card_killed_mid_session_then_reinserted() -> Result<(), Failed> {
    let mut vc = card("piv", PORT_1, &[])?;
    let r = Rig::new(READER_1);
    r.login("pin", "123456", false)
        .map_err(|e| format!("login: {e}"))?;
    vc.kill();
    let err = r.service.with_engine(READER_1, |e| e.status("pin")).err();
    eq(
        err.as_ref().map(Error::code),
        Some("CARD_REMOVED"),
        "first operation after the kill",
    )?;
    // vpcd may refuse an immediate re-insertion on the same slot: retried.
    let _vc = reinsert_card("piv", PORT_1, &[])?;
    let st = r.status("pin")?;
    // A new card process: a new card, not verified, full tries.
    check(
        !st.validated && st.remaining_tries == Some(3),
        format!("after reinsertion: {st:?}"),
    )?;
    r.login("pin", "123456", false)
        .map_err(|e| format!("login after reinsertion: {e}"))?;
    Ok(())
}

/// `pin verify` of the card in slot 0, the PIN on stdin, JSON out.
const VERIFY: [&str; 6] = [
    "pin",
    "verify",
    "--reader",
    READER_0,
    "--pin-stdin",
    "--json",
];

fn cli_status_verify_exit_codes() -> Result<(), Failed> {
    let _vc = card("piv", PORT_0, &[])?;
    let (code, out) = cli(&["pin", "status", "--reader", READER_0, "--json"], "", &[])?;
    eq(code, 0, "status exit")?;
    let v = json(&out)?;
    eq(v["token"]["profile"].as_str(), Some("piv"), "profile")?;
    eq(
        v["pins"][0]["remainingTries"].as_u64(),
        Some(3),
        "remainingTries",
    )?;
    let verify = VERIFY;
    let (code, out) = cli(&verify, "000000\n", &[])?;
    eq(code, 3, "wrong PIN exit")?;
    let v = json(&out)?;
    eq(v["error"]["code"].as_str(), Some("PIN_INCORRECT"), "code")?;
    eq(
        v["error"]["remainingTries"].as_u64(),
        Some(2),
        "remainingTries",
    )?;
    check(!out.contains("000000"), "the PIN is not echoed")?;
    let (code, _) = cli(&verify, "12345\n", &[])?;
    eq(code, 8, "too short: refused before the card")?;
    let (code, _) = cli(&verify, "", &[])?;
    eq(code, 9, "no input")?;
    let (_, out) = cli(&["pin", "status", "--reader", READER_0, "--json"], "", &[])?;
    eq(
        json(&out)?["pins"][0]["remainingTries"].as_u64(),
        Some(2),
        "no try spent by refused input",
    )?;
    // A verification outlives the CLI process (the card is left as it is) …
    let (code, _) = cli(&verify, "123456\n", &[])?;
    eq(code, 0, "right PIN")?;
    let (_, out) = cli(&["pin", "status", "--reader", READER_0, "--json"], "", &[])?;
    eq(
        json(&out)?["pins"][0]["validated"].as_bool(),
        Some(true),
        "verified in the next process",
    )?;
    // … until logout.
    let (code, _) = cli(&["pin", "logout", "--reader", READER_0], "", &[])?;
    eq(code, 0, "logout")?;
    let (_, out) = cli(&["pin", "status", "--reader", READER_0, "--json"], "", &[])?;
    eq(
        json(&out)?["pins"][0]["validated"].as_bool(),
        Some(false),
        "after logout",
    )?;
    cli(&verify, "000000\n", &[])?;
    cli(&verify, "000000\n", &[])?;
    let (code, out) = cli(&verify, "000000\n", &[])?;
    eq(code, 4, "blocked by this wrong PIN: exit")?;
    let v = json(&out)?;
    eq(
        (
            v["error"]["code"].as_str(),
            v["error"]["remainingTries"].as_u64(),
        ),
        (Some("PIN_INCORRECT"), Some(0)),
        "the try that blocks",
    )?;
    let (code, out) = cli(&verify, "123456\n", &[])?;
    eq(code, 4, "blocked exit")?;
    eq(
        json(&out)?["error"]["code"].as_str(),
        Some("PIN_BLOCKED"),
        "code",
    )?;
    let (code, _) = cli(&["pin", "status", "--reader", "no such reader"], "", &[])?;
    eq(code, 5, "unknown reader exit")
}

/// A real PIV applet: CHANGE REFERENCE DATA with a wrong old PIN answers
/// 6300, spends a try and keeps an earlier verification, so the empty
/// VERIFY after it answers 9000. The CLI must not report the count it had
/// before (it printed "3 tries left" and "3/3, verified" with 2 on the card).
fn cli_change_on_a_card_that_hides_the_count() -> Result<(), Failed> {
    let _vc = card(
        "piv",
        PORT_0,
        &[
            "--quirk",
            "change_wrong_old_6300",
            "--quirk",
            "failed_change_keeps_verification",
        ],
    )?;
    let verify = VERIFY;
    let (code, _) = cli(&verify, "123456\n", &[])?;
    eq(code, 0, "right PIN")?;
    let change = [
        "pin",
        "change",
        "--reader",
        READER_0,
        "--pin-stdin",
        "--json",
    ];
    let (code, out) = cli(&change, "000000\n654321\n654321\n", &[])?;
    eq(code, 3, "wrong old PIN exit")?;
    let v = json(&out)?;
    eq(
        (
            v["error"]["code"].as_str(),
            v["error"]["remainingTries"].as_u64(),
        ),
        (Some("PIN_INCORRECT"), Some(2)),
        "the card's count after the failed change",
    )?;
    let (_, out) = cli(&["pin", "status", "--reader", READER_0, "--json"], "", &[])?;
    let pin = &json(&out)?["pins"][0];
    eq(
        (pin["remainingTries"].as_u64(), pin["validated"].as_bool()),
        (Some(2), Some(false)),
        "status after the failed change",
    )
}

fn cli_unblock_and_readers_json() -> Result<(), Failed> {
    let _vc = card("openpgp", PORT_1, &["--blocked"])?;
    let (code, out) = cli(&["readers", "--json"], "", &[])?;
    eq(code, 0, "readers exit")?;
    let readers = json(&out)?;
    let ours = readers
        .as_array()
        .and_then(|a| a.iter().find(|r| r["name"] == READER_1))
        .ok_or("our reader is listed")?;
    eq(ours["cardPresent"].as_bool(), Some(true), "card present")?;
    eq(
        ours["token"]["profile"].as_str(),
        Some("openpgp"),
        "profile",
    )?;
    check(
        ours["atr"].as_str().is_some_and(|a| a.starts_with("3B")),
        "ATR",
    )?;
    let (code, out) = cli(
        &["pin", "unblock", "-r", READER_1, "--pin-stdin", "--json"],
        "12345678\nfreshpin\n",
        &[],
    )?;
    eq(code, 0, format!("unblock: {out}").as_str())?;
    let (code, _) = cli(
        &["pin", "verify", "-r", READER_1, "--pin-stdin"],
        "freshpin\n",
        &[],
    )?;
    eq(code, 0, "verify with the new PIN")?;
    // Unblocking must not leave the admin PIN verified on the card: an
    // admin-only command (RESET RETRY COUNTER P1=02) is refused afterwards.
    let admin_only = cardgate::apdu::commands::reset_retry_counter_after_so(0x81, b"another1");
    let mut t = PcscBackend::new().connect(READER_1)?;
    let select = cardgate::apdu::commands::select_aid(&cardgate::apdu::commands::OPENPGP_AID);
    cardgate::transport::exchange(t.as_mut(), &select)?;
    let r = cardgate::transport::exchange(t.as_mut(), &admin_only)?;
    t.disconnect();
    eq(r.sw.to_u16(), 0x6982, "admin-only command after unblock")?;
    let (code, _) = cli(&["pin", "logout", "-r", READER_1], "", &[])?;
    eq(code, 0, "logout")
}

fn cli_no_pcsc_service() -> Result<(), Failed> {
    let env = [(
        "PCSCLITE_CSOCK_NAME",
        "/nonexistent/cardgate-test/pcscd.comm",
    )];
    let (code, out) = cli(&["pin", "status", "--json"], "", &env)?;
    eq(code, 6, "exit status")?;
    eq(
        json(&out)?["error"]["code"].as_str(),
        Some("NO_PCSC_SERVICE"),
        "code",
    )?;
    let (code, _) = cli(&["readers"], "", &env)?;
    eq(code, 6, "readers exit status")
}

/// A YubiKey (PIV and OpenPGP on one card) is one token with four PIN
/// objects on the command line; a card no profile knows is refused with its
/// ATR and sent no VERIFY, until one profile file in the user's config dir
/// describes it.
fn cli_yubikey_four_pins_and_a_users_card_profile() -> Result<(), Failed> {
    let _vc = card("yubikey", PORT_1, &[])?;
    let (code, out) = cli(&["pin", "status", "--reader", READER_1, "--json"], "", &[])?;
    eq(code, 0, "status exit")?;
    let status = json(&out)?;
    let pins: Vec<(String, String)> = status["pins"]
        .as_array()
        .ok_or("pins")?
        .iter()
        .map(|p| {
            (
                p["id"].as_str().unwrap_or("").to_string(),
                p["application"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let want: Vec<(String, String)> = [
        ("pin", "piv"),
        ("puk", "piv"),
        ("user", "openpgp"),
        ("admin", "openpgp"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    eq(pins, want, "the YubiKey's PIN objects")?;
    let (_, out) = cli(&["readers"], "", &[])?;
    check(
        out.contains("PIV card: pin, puk; OpenPGP card") && out.contains(": user, admin"),
        format!("the readers line groups PINs by application: {out}"),
    )?;
    drop(_vc);

    let _odd = card(
        "iso",
        PORT_1,
        &[
            "--quirk",
            "empty_verify_spends_try",
            "--quirk",
            "wrong_verify_6300",
        ],
    )?;
    let tmp = tempfile::tempdir()?;
    let home = tmp.path();
    let env = [
        ("HOME", home.to_str().unwrap_or("")),
        ("XDG_CONFIG_HOME", ""),
    ];
    let (code, out) = cli(&["pin", "status", "--reader", READER_1, "--json"], "", &env)?;
    check(code != 0, "an unknown card is refused")?;
    let err = json(&out)?;
    eq(
        err["error"]["code"].as_str(),
        Some("CARD_NOT_SUPPORTED"),
        "code",
    )?;
    let atr = err["error"]["atr"].as_str().ok_or("the ATR")?.to_string();
    // `cardgate readers` says so once, with the ATR once.
    let (_, out) = cli(&["readers"], "", &env)?;
    let line = out
        .lines()
        .skip_while(|l| *l != READER_1)
        .nth(1)
        .unwrap_or("")
        .to_string();
    check(line.contains("not supported"), format!("readers: {out}"))?;
    eq(
        line.matches(atr.as_str()).count(),
        1,
        "the ATR in the readers line",
    )?;
    let dir = home.join(".config/cardgate/cards");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(
        dir.join("acme.toml"),
        format!(
            "name = \"acme\"\natr = [\"{atr}\"]\n[[application]]\nid = \"acme\"\nbase = \"iso7816.iso\"\naid = \"F0 63 61 72 64 67 61 74 65\"\n"
        ),
    )?;
    let (code, out) = cli(
        &["pin", "verify", "-r", READER_1, "--pin-stdin", "--json"],
        "1234\n",
        &env,
    )?;
    eq(
        code,
        0,
        format!("verify with the user's profile: {out}").as_str(),
    )?;
    let (code, out) = cli(&["pin", "status", "--reader", READER_1, "--json"], "", &env)?;
    eq(code, 0, "status with the user's profile")?;
    eq(
        json(&out)?["token"]["profile"].as_str(),
        Some("acme"),
        "the profile",
    )?;
    Ok(())
}
