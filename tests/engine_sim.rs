//! The PIN engine on the in-process simulated backend (no pcscd): every
//! operation, both profiles, every quirk of the virtual card.

#[path = "common/rig.rs"]
mod rig;

use cardgate::error::Error;
use cardgate::pin::SoPath;
use cardgate::testing::Service;
use cardgate::vcard::VirtualCard;
use cardgate::vcard::config::{CardConfig, Quirk};
use cardgate::vcard::sim::SimBackend;
use rig::{FromThePage, Rig, s};
use std::sync::Arc;

const READER: &str = "Sim Reader 0";

fn rig(config: CardConfig) -> Rig {
    Rig::new(READER, config)
}

// ---- PIV ------------------------------------------------------------------

#[test]
fn piv_status_reads_tries_without_spending_them() {
    let r = rig(CardConfig::piv());
    let token = r.run(|e| Ok(e.token().clone())).unwrap();
    assert_eq!(token.profile, "piv");
    assert_eq!(
        token.pins.iter().map(|p| p.id).collect::<Vec<_>>(),
        ["pin", "puk"]
    );
    for _ in 0..5 {
        let st = r.status("pin");
        assert_eq!(st.remaining_tries, Some(3));
        assert_eq!(st.max_tries, 3);
        assert!(
            st.initialized && !st.blocked && !st.validated && !st.try_count_low && !st.last_try
        );
    }
    // The PUK cannot be queried on PIV: unknown, not guessed.
    assert_eq!(r.status("puk").remaining_tries, None);
}

#[test]
fn piv_wrong_pins_count_down_to_blocked() {
    let r = rig(CardConfig::piv());
    assert_eq!(
        r.login("pin", "000000"),
        Err(Error::PinIncorrect {
            remaining_tries: Some(2)
        })
    );
    let st = r.status("pin");
    assert!(st.try_count_low && !st.last_try);
    assert_eq!(
        r.login("pin", "000000"),
        Err(Error::PinIncorrect {
            remaining_tries: Some(1)
        })
    );
    assert!(r.status("pin").last_try);
    // This wrong value spent the last try: PIN_INCORRECT, none left.
    assert_eq!(
        r.login("pin", "000000"),
        Err(Error::PinIncorrect {
            remaining_tries: Some(0)
        })
    );
    let st = r.status("pin");
    assert!(st.blocked && !st.validated);
    assert_eq!(st.remaining_tries, Some(0));
    // The right PIN does not open a blocked card.
    assert_eq!(r.login("pin", "123456"), Err(Error::PinBlocked));
}

#[test]
fn piv_right_pin_resets_the_counter_and_validates() {
    let r = rig(CardConfig::piv());
    assert!(r.login("pin", "999999").is_err());
    assert_eq!(r.tries("pin"), Some(2));
    r.login("pin", "123456").unwrap();
    let st = r.status("pin");
    assert!(st.validated);
    assert_eq!(st.remaining_tries, Some(3));
    assert!(!st.try_count_low);
}

#[test]
fn piv_values_outside_the_card_limits_never_reach_the_card() {
    let r = rig(CardConfig::piv());
    assert_eq!(
        r.login("pin", "12345"),
        Err(Error::PinLengthInvalid { min: 6, max: 8 })
    );
    assert_eq!(
        r.login("pin", "123456789"),
        Err(Error::PinLengthInvalid { min: 6, max: 8 })
    );
    assert_eq!(r.login("pin", "12a456"), Err(Error::PinFormatInvalid));
    assert_eq!(
        r.login("pin", ""),
        Err(Error::PinLengthInvalid { min: 6, max: 8 })
    );
    let bad_new = r
        .run(|e| e.change("pin", &s("123456"), &s("12")))
        .unwrap_err();
    // A new value is checked against the PIN policy, which holds the
    // card's limits (see tests/engine_policy.rs).
    assert_eq!(bad_new.code(), "CONSTRAINT_VIOLATION");
    // The old value is checked against the card's limits.
    let bad_old = r
        .run(|e| e.change("pin", &s("12"), &s("123456")))
        .unwrap_err();
    assert_eq!(bad_old, Error::PinLengthInvalid { min: 6, max: 8 });
    assert_eq!(r.tries("pin"), Some(3));
}

#[test]
fn piv_change_pin_and_puk() {
    let r = rig(CardConfig::piv());
    r.run(|e| e.change("pin", &s("123456"), &s("24681357")))
        .unwrap();
    assert_eq!(
        r.login("pin", "123456"),
        Err(Error::PinIncorrect {
            remaining_tries: Some(2)
        })
    );
    r.login("pin", "24681357").unwrap();
    assert_eq!(r.tries("pin"), Some(3));
    // Wrong old value spends a try and says how many are left.
    let e = r
        .run(|e| e.change("pin", &s("111111"), &s("222222")))
        .unwrap_err();
    assert_eq!(
        e,
        Error::PinIncorrect {
            remaining_tries: Some(2)
        }
    );
    // The PUK can be changed too; its counter is learned from failures only.
    r.run(|e| e.change("puk", &s("12345678"), &s("87654321")))
        .unwrap();
    let e = r
        .run(|e| e.change("puk", &s("12345678"), &s("11111111")))
        .unwrap_err();
    assert_eq!(
        e,
        Error::PinIncorrect {
            remaining_tries: Some(2)
        }
    );
    assert_eq!(r.tries("puk"), Some(2));
}

#[test]
fn piv_unblock_with_puk() {
    let r = rig(CardConfig {
        start_blocked: true,
        ..CardConfig::piv()
    });
    assert!(r.status("pin").blocked);
    assert_eq!(
        r.run(|e| e.init("pin", &s("654321"))),
        Err(Error::SoLoginRequired)
    );
    r.run(|e| e.login("pin", &s("12345678"), true)).unwrap();
    assert!(r.status("pin").so_validated);
    r.run(|e| e.init("pin", &s("654321"))).unwrap();
    let st = r.status("pin");
    assert!(!st.blocked && !st.validated && !st.so_validated);
    assert_eq!(st.remaining_tries, Some(3));
    r.login("pin", "654321").unwrap();
    // The PUK was used up by init: another init needs a new SO login.
    assert_eq!(
        r.run(|e| e.init("pin", &s("111111"))),
        Err(Error::SoLoginRequired)
    );
}

#[test]
fn piv_wrong_puk_is_reported_as_the_so_credential() {
    let r = rig(CardConfig::piv());
    // SP 800-73-4 has no VERIFY for the PUK: the SO login checks it by
    // CHANGE REFERENCE DATA of the PUK to itself, so a wrong one fails at
    // login, not later at init.
    let e = r.run(|e| e.login("pin", &s("00000000"), true)).unwrap_err();
    assert_eq!(
        e,
        Error::SoPinIncorrect {
            remaining_tries: Some(2)
        }
    );
    assert!(!r.status("pin").so_validated);
    assert_eq!(
        r.run(|e| e.init("pin", &s("654321"))),
        Err(Error::SoLoginRequired)
    );
    // The user PIN is untouched; the right PUK resets the PUK's counter.
    assert_eq!(r.tries("pin"), Some(3));
    r.login("pin", "123456").unwrap();
    r.run(|e| e.login("pin", &s("12345678"), true)).unwrap();
    assert!(r.status("pin").so_validated);
    assert_eq!(r.tries("puk"), Some(3));
}

#[test]
fn piv_puk_must_have_eight_bytes_and_is_not_verifiable_alone() {
    let r = rig(CardConfig::piv());
    let e = r.run(|e| e.login("pin", &s("1234"), true)).unwrap_err();
    assert_eq!(e, Error::PinLengthInvalid { min: 8, max: 8 });
    let e = r.login("puk", "12345678").unwrap_err();
    assert_eq!(e.code(), "OPERATION_NOT_SUPPORTED");
}

#[test]
fn piv_held_puk_expires() {
    let r = rig(CardConfig::piv());
    let e = r
        .run(|e| {
            e.set_held_code_lifetime(std::time::Duration::ZERO);
            e.login("pin", &s("12345678"), true)?;
            e.init("pin", &s("654321"))
        })
        .unwrap_err();
    assert_eq!(e, Error::SoLoginRequired);
}

#[test]
fn piv_logout_ends_the_verified_state_and_the_held_puk() {
    let r = rig(CardConfig::piv());
    r.login("pin", "123456").unwrap();
    r.run(|e| e.login("pin", &s("12345678"), true)).unwrap();
    assert!(r.status("pin").validated);
    r.run(|e| e.logout("pin")).unwrap();
    let st = r.status("pin");
    assert!(!st.validated && !st.so_validated);
    assert_eq!(
        r.run(|e| e.init("pin", &s("654321"))),
        Err(Error::SoLoginRequired)
    );
}

#[test]
fn piv_removed_card_then_reinserted() {
    let r = rig(CardConfig::piv());
    r.login("pin", "123456").unwrap();
    let card = r.sim.remove_card(READER).unwrap();
    assert_eq!(r.run(|e| e.status("pin")).unwrap_err(), Error::CardRemoved);
    assert_eq!(r.run(|e| e.status("pin")).unwrap_err(), Error::CardAbsent);
    r.sim.insert_card(READER, card).unwrap();
    // A power cycle: not verified any more, counters intact.
    let st = r.status("pin");
    assert!(!st.validated);
    assert_eq!(st.remaining_tries, Some(3));
    r.login("pin", "123456").unwrap();
}

#[test]
fn piv_reset_by_another_application_is_recovered_transparently() {
    let r = rig(CardConfig::piv());
    r.login("pin", "123456").unwrap();
    r.sim.reset_card(READER).unwrap();
    let st = r.status("pin");
    assert!(!st.validated);
    assert_eq!(st.remaining_tries, Some(3));
    r.login("pin", "123456").unwrap();
    assert!(r.status("pin").validated);
}

#[test]
fn piv_quirk_63c0_when_blocked() {
    let r = rig(CardConfig::piv().with_quirk(Quirk::BlockedSw63c0));
    for _ in 0..2 {
        assert!(matches!(
            r.login("pin", "000000"),
            Err(Error::PinIncorrect { .. })
        ));
    }
    assert_eq!(
        r.login("pin", "000000"),
        Err(Error::PinIncorrect {
            remaining_tries: Some(0)
        })
    );
    assert!(r.status("pin").blocked);
    // Blocked: refused before anything is sent.
    assert_eq!(r.login("pin", "123456"), Err(Error::PinBlocked));
}

#[test]
fn piv_quirk_6300_on_change_rereads_the_counter() {
    let r = rig(CardConfig::piv().with_quirk(Quirk::ChangeWrongOld6300));
    let e = r
        .run(|e| e.change("pin", &s("000000"), &s("222222")))
        .unwrap_err();
    assert_eq!(
        e,
        Error::PinIncorrect {
            remaining_tries: Some(2)
        }
    );
}

#[test]
fn piv_quirk_status_query_spending_tries_is_detected() {
    let r = rig(CardConfig::piv().with_quirk(Quirk::EmptyVerifySpendsTry));
    for _ in 0..6 {
        r.status("pin");
    }
    // Two queries are needed to notice; after that the card is not asked again.
    let left = r.sim.with_card(READER, |c| c.user_pin_tries()).unwrap();
    assert_eq!(left, 1);
    r.login("pin", "123456").unwrap();
    assert_eq!(r.sim.with_card(READER, |c| c.user_pin_tries()).unwrap(), 3);
    for _ in 0..4 {
        r.status("pin");
    }
    assert_eq!(r.sim.with_card(READER, |c| c.user_pin_tries()).unwrap(), 3);
}

#[test]
fn piv_not_initialized_pin() {
    let r = rig(CardConfig {
        pin_not_initialized: true,
        ..CardConfig::piv()
    });
    assert!(!r.status("pin").initialized);
    assert_eq!(r.login("pin", "123456"), Err(Error::PinNotInitialized));
    r.run(|e| {
        e.login("pin", &s("12345678"), true)?;
        e.init("pin", &s("777777"))
    })
    .unwrap();
    assert!(r.status("pin").initialized);
    r.login("pin", "777777").unwrap();
}

#[test]
fn piv_pin_to_be_changed() {
    let r = rig(CardConfig {
        pin_must_change: true,
        ..CardConfig::piv()
    });
    assert_eq!(r.login("pin", "123456"), Err(Error::PinToBeChanged));
    let st = r.status("pin");
    assert!(st.to_be_changed);
    assert_eq!(st.remaining_tries, Some(3));
    r.run(|e| e.change("pin", &s("123456"), &s("135790")))
        .unwrap();
    assert!(!r.status("pin").to_be_changed);
    r.login("pin", "135790").unwrap();
}

#[test]
fn unknown_pin_id_is_an_error() {
    let r = rig(CardConfig::piv());
    assert_eq!(
        r.run(|e| e.status("nope")).unwrap_err(),
        Error::PinNotFound("nope".into())
    );
}

// ---- OpenPGP --------------------------------------------------------------

#[test]
fn openpgp_status_from_pw_status_bytes() {
    let r = rig(CardConfig::openpgp());
    let token = r.run(|e| Ok(e.token().clone())).unwrap();
    assert_eq!(token.profile, "openpgp");
    assert_eq!(
        token.pins.iter().map(|p| p.id).collect::<Vec<_>>(),
        ["user", "admin"]
    );
    assert!(token.serial().is_some());
    let user = r.status("user");
    assert_eq!(user.remaining_tries, Some(3));
    assert_eq!((user.min_length, user.max_length), (6, 127));
    assert_eq!(r.status("admin").remaining_tries, Some(3));
    assert_eq!(r.status("admin").min_length, 8);
}

#[test]
fn openpgp_wrong_user_pin_counts_down_then_unblock_with_admin_pin() {
    let r = rig(CardConfig::openpgp());
    assert_eq!(
        r.login("user", "000000"),
        Err(Error::PinIncorrect {
            remaining_tries: Some(2)
        })
    );
    assert_eq!(
        r.login("user", "000000"),
        Err(Error::PinIncorrect {
            remaining_tries: Some(1)
        })
    );
    assert_eq!(
        r.login("user", "000000"),
        Err(Error::PinIncorrect {
            remaining_tries: Some(0)
        })
    );
    assert!(r.status("user").blocked);
    assert_eq!(
        r.run(|e| e.init("user", &s("abcdef"))),
        Err(Error::SoLoginRequired)
    );
    r.run(|e| e.login("user", &s("12345678"), true)).unwrap();
    assert!(r.status("user").so_validated);
    r.run(|e| e.init("user", &s("abcdef"))).unwrap();
    assert_eq!(r.tries("user"), Some(3));
    r.login("user", "abcdef").unwrap();
    assert!(r.status("user").validated);
}

#[test]
fn openpgp_wrong_admin_pin() {
    let r = rig(CardConfig::openpgp());
    let e = r
        .run(|e| e.login("user", &s("00000000"), true))
        .unwrap_err();
    assert_eq!(
        e,
        Error::SoPinIncorrect {
            remaining_tries: Some(2)
        }
    );
    assert_eq!(r.tries("admin"), Some(2));
    assert_eq!(
        r.run(|e| e.init("user", &s("abcdef"))),
        Err(Error::SoLoginRequired)
    );
}

#[test]
fn openpgp_unblock_with_reset_code() {
    let config = CardConfig {
        reset_code: Some(s("87654321")),
        start_blocked: true,
        ..CardConfig::openpgp()
    };
    let r = rig(config);
    r.run(|e| {
        e.login_so("user", &s("87654321"), SoPath::ResetCode)?;
        e.init("user", &s("newpin1"))
    })
    .unwrap();
    assert_eq!(r.tries("user"), Some(3));
    r.login("user", "newpin1").unwrap();
}

#[test]
fn openpgp_wrong_or_unset_reset_code() {
    let config = CardConfig {
        reset_code: Some(s("87654321")),
        ..CardConfig::openpgp()
    };
    let r = rig(config);
    let e = r
        .run(|e| {
            e.login_so("user", &s("00000000"), SoPath::ResetCode)?;
            e.init("user", &s("newpin1"))
        })
        .unwrap_err();
    assert_eq!(
        e,
        Error::SoPinIncorrect {
            remaining_tries: Some(2)
        }
    );
    // Without a reset code set on the card, the code is "blocked" (0 tries).
    let r = rig(CardConfig::openpgp());
    let e = r
        .run(|e| {
            e.login_so("user", &s("87654321"), SoPath::ResetCode)?;
            e.init("user", &s("newpin1"))
        })
        .unwrap_err();
    assert_eq!(e, Error::SoPinBlocked);
    assert_eq!(r.tries("user"), Some(3));
}

#[test]
fn openpgp_login_logout_and_change() {
    let r = rig(CardConfig::openpgp());
    r.login("user", "123456").unwrap();
    assert!(r.status("user").validated);
    r.run(|e| e.logout("user")).unwrap();
    assert!(!r.status("user").validated);
    r.run(|e| e.change("user", &s("123456"), &s("pässwörd")))
        .unwrap();
    r.login("user", "pässwörd").unwrap();
    r.run(|e| e.change("admin", &s("12345678"), &s("adminadmin")))
        .unwrap();
    r.login("admin", "adminadmin").unwrap();
    assert_eq!(
        r.login("user", "12345"),
        Err(Error::PinLengthInvalid { min: 6, max: 127 })
    );
}

#[test]
fn openpgp_status_never_uses_empty_verify() {
    let r = rig(CardConfig::openpgp().with_quirk(Quirk::EmptyVerifySpendsTry));
    for _ in 0..10 {
        assert_eq!(r.tries("user"), Some(3));
    }
}

#[test]
fn openpgp_quirks_63c0_and_6300() {
    let r = rig(CardConfig::openpgp()
        .with_quirk(Quirk::BlockedSw63c0)
        .with_quirk(Quirk::ChangeWrongOld6300));
    let e = r
        .run(|e| e.change("user", &s("000000"), &s("222222")))
        .unwrap_err();
    assert_eq!(
        e,
        Error::PinIncorrect {
            remaining_tries: Some(2)
        }
    );
    assert!(r.login("user", "000000").is_err());
    assert_eq!(
        r.login("user", "000000"),
        Err(Error::PinIncorrect {
            remaining_tries: Some(0)
        })
    );
    assert_eq!(r.login("user", "123456"), Err(Error::PinBlocked));
}

#[test]
fn admin_pin_has_no_security_officer() {
    let r = rig(CardConfig::openpgp());
    assert_eq!(
        r.run(|e| e.login("admin", &s("12345678"), true))
            .unwrap_err()
            .code(),
        "OPERATION_NOT_SUPPORTED"
    );
    assert_eq!(
        r.run(|e| e.init("admin", &s("12345678")))
            .unwrap_err()
            .code(),
        "OPERATION_NOT_SUPPORTED"
    );
}

// ---- reader workers -------------------------------------------------------

#[test]
fn readers_are_resolved_by_name_or_unique_part() {
    let sim = SimBackend::new();
    sim.add_reader("Alpha Reader 00");
    sim.add_reader("Alpha Reader 01");
    sim.add_reader("Beta Pinpad");
    let service = Service::new(Arc::new(sim.clone()));
    assert_eq!(
        service.resolve_reader(Some("Beta Pinpad")).unwrap(),
        "Beta Pinpad"
    );
    assert_eq!(service.resolve_reader(Some("beta")).unwrap(), "Beta Pinpad");
    assert_eq!(
        service.resolve_reader(Some("01")).unwrap(),
        "Alpha Reader 01"
    );
    assert_eq!(
        service.resolve_reader(Some("alpha")),
        Err(Error::ReaderNotFound("alpha".into()))
    );
    assert_eq!(
        service.resolve_reader(Some("gamma")),
        Err(Error::ReaderNotFound("gamma".into()))
    );
    // No name: the first reader holding a card.
    assert_eq!(service.resolve_reader(None), Err(Error::CardAbsent));
    sim.insert_card("Alpha Reader 01", VirtualCard::new(CardConfig::openpgp()))
        .unwrap();
    assert_eq!(service.resolve_reader(None).unwrap(), "Alpha Reader 01");
    let empty = Service::new(Arc::new(SimBackend::new()));
    assert_eq!(
        empty.resolve_reader(None).unwrap_err().code(),
        "READER_NOT_FOUND"
    );
}

#[test]
fn the_worker_wipes_a_held_puk_when_its_time_is_up() {
    let r = rig(CardConfig::piv());
    r.run(|e| {
        e.set_held_code_lifetime(std::time::Duration::from_millis(100));
        e.login("pin", &s("12345678"), true)
    })
    .unwrap();
    assert!(r.status("pin").so_validated);
    std::thread::sleep(std::time::Duration::from_millis(400));
    // Nobody called init: the worker's own timer dropped the code.
    assert!(!r.status("pin").so_validated);
}

#[test]
fn operations_on_one_reader_run_in_order_on_its_worker() {
    let r = Arc::new(rig(CardConfig::piv()));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let r = r.clone();
            std::thread::spawn(move || {
                for _ in 0..10 {
                    r.login("pin", "123456").unwrap();
                    assert_eq!(r.tries("pin"), Some(3));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn dropping_the_connection_leaves_the_card_verified() {
    let r = rig(CardConfig::piv());
    r.login("pin", "123456").unwrap();
    r.service
        .handle_event(&cardgate::transport::Event::CardRemoved {
            reader: READER.into(),
        });
    // The card never left the simulated reader, so it is still verified on
    // the card itself (verified states survive a disconnect), and the new
    // connection reads that back.
    assert!(r.status("pin").validated);
}

#[test]
fn a_count_the_card_hides_after_a_failed_change_is_learned_not_assumed() {
    // A real PIV applet: CHANGE REFERENCE DATA with a wrong old PIN answers
    // 6300 (no counter), spends a try, and keeps an earlier verification,
    // so the empty VERIFY after it answers 9000.
    let r = rig(CardConfig::piv()
        .with_quirk(Quirk::ChangeWrongOld6300)
        .with_quirk(Quirk::FailedChangeKeepsVerification));
    r.login("pin", "123456").unwrap();
    assert_eq!(r.status("pin").remaining_tries, Some(3));
    let e = r
        .run(|e| e.change("pin", &s("000000"), &s("111111")))
        .unwrap_err();
    let card = r.sim.with_card(READER, |c| c.user_pin_tries()).unwrap();
    assert_eq!(card, 2);
    assert_eq!(
        e,
        Error::PinIncorrect {
            remaining_tries: Some(card)
        }
    );
    let st = r.status("pin");
    assert_eq!(st.remaining_tries, Some(card));
    assert!(!st.validated);
    // Without a way to learn it (a PIV PUK has no status query), the
    // count is not reported at all.
    let e = r.run(|e| e.login("pin", &s("00000000"), true)).unwrap_err();
    assert_eq!(
        e,
        Error::SoPinIncorrect {
            remaining_tries: None
        }
    );
    assert_eq!(r.tries("puk"), None);
}

#[test]
fn a_blocked_answer_to_a_code_whose_count_was_never_told_claims_no_try() {
    let r = rig(CardConfig::piv());
    for left in [2, 1, 0] {
        assert_eq!(
            r.run(|e| e.login("pin", &s("00000000"), true)),
            Err(Error::SoPinIncorrect {
                remaining_tries: Some(left)
            })
        );
    }
    // A new session has never seen the PUK's count (PIV cannot read it):
    // the card's 6983 may mean "blocked already", so no try is claimed.
    let fresh = Service::new(Arc::new(r.sim.clone()));
    let e = fresh
        .with_engine(READER, |e| e.login("pin", &s("12345678"), true))
        .unwrap_err();
    assert_eq!(e, Error::SoPinBlocked);
    assert_eq!(
        fresh
            .with_engine(READER, |e| e.status("puk"))
            .unwrap()
            .remaining_tries,
        Some(0)
    );
}
