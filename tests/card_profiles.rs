//! Card profiles (data) against our virtual card's own models of the same
//! cards (code written from their public sources, not from the profiles):
//! YubiKey (PIV + OpenPGP on one token, GET METADATA), the Estonian ID
//! card (GET DATA tries, PIN2 in its own application, PUK unblocking), the
//! Belgian eID (format 2 blocks, no readable counter), a PKCS#15 card with
//! no profile at all, and an unknown card that must only ever be SELECTed.
//! Every count the engine reports is checked against the card's own.

#[path = "common/rig.rs"]
mod rig;

use cardgate::card::ProfileSet;
use cardgate::error::Error;
use cardgate::pin::{Engine, Entered, Entry, NoSite, PinOp, Provenance, SoPath};
use cardgate::policy::PolicySet;
use cardgate::testing::Service;
use cardgate::vcard::VirtualCard;
use cardgate::vcard::config::{CardConfig, Profile, Quirk};
use cardgate::vcard::sim::SimBackend;
use rig::{Rig, s};
use std::sync::Arc;

const READER: &str = "Sim Reader 0";

fn rig(profile: Profile) -> Rig {
    Rig::new(READER, CardConfig::for_profile(profile))
}

/// The card's own counter.
fn card(r: &Rig, name: &str) -> u8 {
    r.sim
        .with_card(r.reader, |c| c.tries(name))
        .unwrap()
        .unwrap_or_else(|| panic!("the card has no counter {name}"))
}

/// A login with a value a page sent.
fn page_login(e: &mut Engine, pin: &str, value: &str) -> Result<(), Error> {
    let entry = Entry::Typed(Entered::new(s(value), Provenance::Page));
    e.perform(pin, PinOp::Login(entry), &mut NoSite)
}

/// The built-in profiles and one user file holding `text`, loaded from a
/// directory as the user's config dir `cards/` would give it.
fn with_user_profile(file: &str, text: &str) -> ProfileSet {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(file), text).unwrap();
    let profiles = ProfileSet::load(&[dir.path().to_path_buf()]);
    assert!(profiles.errors.is_empty(), "{:?}", profiles.errors);
    profiles
}

/// A simulated reader holding `card`, recognised with `profiles`.
fn served(card: CardConfig, profiles: ProfileSet) -> (SimBackend, Service) {
    let sim = SimBackend::new();
    sim.add_reader(READER);
    sim.insert_card(READER, VirtualCard::new(card)).unwrap();
    let service = Service::with_policies(Arc::new(sim.clone()), Arc::new(PolicySet::builtin()))
        .with_profiles(Arc::new(profiles));
    (sim, service)
}

// ---- YubiKey: PIV and OpenPGP on one token -------------------------------

#[test]
fn yubikey_shows_four_pins_of_two_applications() {
    let r = rig(Profile::YubiKey);
    let token = r.run(|e| Ok(e.token().clone())).unwrap();
    assert_eq!(token.profile, "yubikey");
    let pins: Vec<(&str, &str)> = token
        .pins
        .iter()
        .map(|p| (p.id, token.application_of(p).id))
        .collect();
    assert_eq!(
        pins,
        [
            ("pin", "piv"),
            ("puk", "piv"),
            ("user", "openpgp"),
            ("admin", "openpgp")
        ]
    );
    let statuses = r.run(|e| e.statuses()).unwrap();
    let apps: Vec<&str> = statuses.iter().map(|s| s.application.as_str()).collect();
    assert_eq!(apps, ["piv", "piv", "openpgp", "openpgp"]);
    // GET METADATA gives the PUK's count too, which PIV alone cannot.
    assert_eq!(statuses[1].remaining_tries, Some(card(&r, "piv.puk")));
}

#[test]
fn yubikey_counts_equal_the_cards_after_failures_in_both_applications() {
    let r = rig(Profile::YubiKey);
    let e = r.run(|e| e.login("pin", &s("999999"), false)).unwrap_err();
    assert_eq!(
        e,
        Error::PinIncorrect {
            remaining_tries: Some(2)
        }
    );
    let e = r.run(|e| e.login("user", &s("999999"), false)).unwrap_err();
    assert_eq!(
        e,
        Error::PinIncorrect {
            remaining_tries: Some(2)
        }
    );
    for (pin, counter) in [
        ("pin", "piv.pin"),
        ("user", "openpgp.pw1"),
        ("admin", "openpgp.pw3"),
    ] {
        assert_eq!(r.tries(pin), Some(card(&r, counter)), "{pin}");
    }
    assert_eq!(card(&r, "piv.pin"), 2);
    r.run(|e| e.login("pin", &s("123456"), false)).unwrap();
    assert_eq!(card(&r, "piv.pin"), 3);
}

#[test]
fn yubikey_leaving_piv_for_openpgp_ends_the_piv_login() {
    let r = rig(Profile::YubiKey);
    r.run(|e| e.login("pin", &s("123456"), false)).unwrap();
    assert!(r.validated("pin"));
    // Reading the OpenPGP PIN selects the OpenPGP applet: the key ends
    // the PIV verification, and the engine says so.
    let _ = r.status("user");
    assert!(!r.validated("pin"));
    // The card agrees: a PIV operation needing the PIN is refused.
    r.run(|e| e.login("user", &s("123456"), false)).unwrap();
    assert!(r.validated("user"));
    assert!(!r.validated("pin"));
}

#[test]
fn yubikey_without_get_metadata_falls_back_to_the_piv_status_query() {
    let mut config = CardConfig::for_profile(Profile::YubiKey);
    config.firmware = Some([4, 3, 5]);
    let r = Rig::new(READER, config);
    assert_eq!(r.tries("pin"), Some(3));
    let _ = r.run(|e| e.login("pin", &s("999999"), false));
    assert_eq!(r.tries("pin"), Some(card(&r, "piv.pin")));
    // The PUK has no other source: unknown, never guessed.
    assert_eq!(r.tries("puk"), None);
}

// ---- Estonian ID card ------------------------------------------------------

#[test]
fn esteid_reads_tries_by_get_data_and_keeps_them_equal_to_the_cards() {
    let r = rig(Profile::EstEid);
    let token = r.run(|e| Ok(e.token().clone())).unwrap();
    assert_eq!(token.profile, "esteid");
    assert_eq!(
        token.pins.iter().map(|p| p.id).collect::<Vec<_>>(),
        ["pin1", "pin2", "puk"]
    );
    for (pin, wrong) in [("pin1", "0000"), ("pin2", "00000")] {
        let e = r.run(move |e| e.login(pin, &s(wrong), false)).unwrap_err();
        assert_eq!(
            e,
            Error::PinIncorrect {
                remaining_tries: Some(2)
            },
            "{pin}"
        );
        assert_eq!(r.tries(pin), Some(card(&r, pin)));
    }
    // Values are checked against the card's limits before any APDU.
    let e = r.run(|e| e.login("pin1", &s("12"), false)).unwrap_err();
    assert!(
        matches!(e, Error::PinLengthInvalid { min: 4, max: 12 }),
        "{e:?}"
    );
    assert_eq!(card(&r, "pin1"), 2);
}

#[test]
fn esteid_pin2_is_changed_and_unblocked_with_the_puk() {
    let r = rig(Profile::EstEid);
    r.run(|e| e.change("pin2", &s("12345"), &s("54321")))
        .unwrap();
    r.run(|e| e.login("pin2", &s("54321"), false)).unwrap();
    // Block PIN2 with three wrong values typed by the user.
    for _ in 0..3 {
        let _ = r.run(|e| e.login("pin2", &s("99999"), false));
    }
    assert_eq!(card(&r, "pin2"), 0);
    assert!(r.status("pin2").blocked);
    // The PUK (a global reference, verified in the main application)
    // unblocks it in the QSCD application.
    r.run(|e| e.login_so("pin2", &s("17258403"), SoPath::Default))
        .unwrap();
    r.run(|e| e.init("pin2", &s("24680"))).unwrap();
    assert_eq!(card(&r, "pin2"), 3);
    r.run(|e| e.login("pin2", &s("24680"), false)).unwrap();
}

#[test]
fn esteid_pin1_login_survives_reading_pin2() {
    let r = rig(Profile::EstEid);
    r.run(|e| e.login("pin1", &s("1234"), false)).unwrap();
    let _ = r.status("pin2");
    // PIN1 is a global reference: selecting the QSCD application keeps it.
    assert!(r.validated("pin1"));
}

// ---- Belgian eID ----------------------------------------------------------

#[test]
fn beid_sends_format_2_blocks_and_never_guesses_a_count() {
    let r = rig(Profile::Beid);
    let st = r.status("pin");
    assert_eq!(st.remaining_tries, None, "the card shows no counter");
    assert_eq!(card(&r, "pin"), 3);
    // A page's value is refused at an unknown count; nothing is sent.
    let e = r.run(|e| page_login(e, "pin", "0000")).unwrap_err();
    assert!(matches!(e, Error::LastTryProtected { .. }), "{e:?}");
    assert_eq!(card(&r, "pin"), 3);
    // The user's own entry goes on, in a format 2 block the card checks.
    r.run(|e| e.login("pin", &s("1234"), false)).unwrap();
    let e = r.run(|e| e.login("pin", &s("4321"), false)).unwrap_err();
    assert_eq!(
        e,
        Error::PinIncorrect {
            remaining_tries: Some(2)
        }
    );
    assert_eq!(card(&r, "pin"), 2);
    // No unblocking outside a municipality.
    let e = r.run(|e| e.init("pin", &s("1234"))).unwrap_err();
    assert!(matches!(e, Error::OperationNotSupported(_)), "{e:?}");
}

// ---- PKCS#15: no profile file ----------------------------------------------

#[test]
fn pkcs15_card_works_from_its_own_description() {
    let r = rig(Profile::Pkcs15);
    let token = r.run(|e| Ok(e.token().clone())).unwrap();
    assert_eq!(token.profile, "pkcs15");
    let pin = token.pin("pin").expect("the user PIN from the AODF");
    assert_eq!(pin.credential.reference, 0x81);
    assert_eq!(
        (pin.credential.format.min_len, pin.credential.format.max_len),
        (4, 8)
    );
    let puk = token.pin("puk").expect("the PUK from the AODF");
    assert_eq!(puk.credential.reference, 0x82);
    assert!(pin.so.is_some(), "the PUK unblocks the PIN (authId link)");
    // Status, verify, change and unblock, typed by the user.
    assert_eq!(r.tries("pin"), None);
    r.run(|e| e.login("pin", &s("123456"), false)).unwrap();
    r.run(|e| e.change("pin", &s("123456"), &s("2468")))
        .unwrap();
    for _ in 0..3 {
        let _ = r.run(|e| e.login("pin", &s("9999"), false));
    }
    assert_eq!(card(&r, "pin"), 0);
    r.run(|e| e.login_so("pin", &s("12345678"), SoPath::Default))
        .unwrap();
    r.run(|e| e.init("pin", &s("1357"))).unwrap();
    assert_eq!(card(&r, "pin"), 3);
    r.run(|e| e.login("pin", &s("1357"), false)).unwrap();
}

// ---- an unknown card --------------------------------------------------------

fn hostile() -> CardConfig {
    CardConfig::for_profile(Profile::Iso)
        .with_quirk(Quirk::EmptyVerifySpendsTry)
        .with_quirk(Quirk::WrongVerify6300)
}

#[test]
fn an_unknown_card_is_only_ever_selected() {
    let r = Rig::new(READER, hostile());
    for _ in 0..50 {
        let e = r.run(|e| e.status("pin")).unwrap_err();
        let Error::CardNotSupported { atr, applications } = e else {
            panic!("{e:?}");
        };
        assert_eq!(
            atr.len(),
            2 * cardgate::vcard::default_atr(Profile::Iso).len()
        );
        assert!(applications.is_empty());
        r.service
            .handle_event(&cardgate::transport::Event::CardInserted {
                reader: READER.into(),
                atr: Vec::new(),
            });
    }
    assert_eq!(card(&r, "pin"), 3);
    assert_eq!(card(&r, "puk"), 3);
    let presented = r.sim.with_card(READER, |c| c.presented("pin")).unwrap();
    assert!(presented.is_empty(), "a VERIFY reached the card");
}

#[test]
fn one_profile_file_makes_the_unknown_card_usable() {
    let atr = cardgate::card::hex(&cardgate::vcard::default_atr(Profile::Iso));
    let profiles = with_user_profile(
        "acme.toml",
        &format!(
            r#"
            name = "acme"
            atr = ["{atr}"]
            [[application]]
            id = "acme"
            base = "iso7816.iso"
            aid = "F0 63 61 72 64 67 61 74 65"
            "#
        ),
    );
    let (sim, service) = served(hostile(), profiles);
    type Op = Box<dyn FnOnce(&mut Engine) -> Result<(), Error> + Send>;
    let run = |f: Op| service.with_engine(READER, f);
    let tries = |name: &str| sim.with_card(READER, |c| c.tries(name)).unwrap().unwrap();
    // The template reads no counter: the hostile card's empty VERIFY is
    // never sent, and its 6300 gives no count.
    let st = service.with_engine(READER, |e| e.status("pin")).unwrap();
    assert_eq!(st.remaining_tries, None);
    assert_eq!(tries("pin"), 3);
    run(Box::new(|e| e.login("pin", &s("1234"), false))).unwrap();
    run(Box::new(|e| e.change("pin", &s("1234"), &s("5678")))).unwrap();
    let e = run(Box::new(|e| e.login("pin", &s("0000"), false))).unwrap_err();
    assert_eq!(
        e,
        Error::PinIncorrect {
            remaining_tries: None
        }
    );
    assert_eq!(tries("pin"), 2);
    run(Box::new(|e| {
        e.login_so("pin", &s("12345678"), SoPath::Default)
    }))
    .unwrap();
    run(Box::new(|e| e.init("pin", &s("4321")))).unwrap();
    assert_eq!(tries("pin"), 3);
    run(Box::new(|e| e.login("pin", &s("4321"), false))).unwrap();
}

#[test]
fn a_profile_adds_what_a_pkcs15_card_does_not_say() {
    let atr = cardgate::card::hex(&cardgate::vcard::default_atr(Profile::Pkcs15));
    // This card's documentation says an empty VERIFY spends nothing: the
    // profile says so for its user PIN, and renames it.
    let profiles = with_user_profile(
        "token.toml",
        &format!(
            r#"
            name = "our-token"
            atr = ["{atr}"]
            [[application]]
            id = "token"
            aid = "A0 00 00 00 63 50 4B 43 53 2D 31 35"
            pkcs15 = true
            [[application.pin]]
            id = "pin"
            label = "Token PIN"
            tries = [{{ source = "empty-verify" }}]
            "#
        ),
    );
    let (sim, service) = served(CardConfig::for_profile(Profile::Pkcs15), profiles);
    let token = service
        .with_engine(READER, |e| Ok(e.token().clone()))
        .unwrap();
    assert_eq!(token.profile, "our-token");
    let pin = token.pin("pin").unwrap();
    // From the card: reference, lengths, the PUK link; from the profile:
    // the label and how to read the tries.
    assert_eq!(pin.credential.reference, 0x81);
    assert_eq!(pin.credential.label, "Token PIN");
    assert!(pin.so.is_some());
    let st = service.with_engine(READER, |e| e.status("pin")).unwrap();
    assert_eq!(st.remaining_tries, Some(3));
    // With a count, a page's value may be tried; the count follows the card.
    let e = service
        .with_engine(READER, |e| page_login(e, "pin", "0000"))
        .unwrap_err();
    assert_eq!(
        e,
        Error::PinIncorrect {
            remaining_tries: Some(2)
        }
    );
    let tries = sim.with_card(READER, |c| c.tries("pin")).unwrap();
    assert_eq!(tries, Some(2));
}
