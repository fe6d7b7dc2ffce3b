//! PIN entry on a pinpad reader (PC/SC part 10), on the simulated backend:
//! the simulated reader unpacks our PIN_VERIFY / PIN_MODIFY structures,
//! takes what the scripted user types, builds the APDU as a real reader
//! does and hands it to the virtual card. PIV, OpenPGP and the Belgian
//! eID (ISO 9564-1 format 2 blocks), every reader status word, and the
//! tries the card counts.

#[path = "common/rig.rs"]
mod rig;

use cardgate::error::Error;
use cardgate::pin::{Engine, Entered, Entry, NoSite, PinOp, Provenance, SoPath};
use cardgate::vcard::VirtualCard;
use cardgate::vcard::config::{CardConfig, Profile};
use cardgate::vcard::sim::pinpad::{PinpadInput, SimPinpad};
use rig::{Rig, s};

/// The operations with every value typed on the pinpad.
trait OnThePinpad {
    fn login_pinpad(&mut self, pin: &str, so: bool) -> Result<(), Error>;
    fn login_so_pinpad(&mut self, pin: &str, path: SoPath) -> Result<(), Error>;
    fn change_pinpad(&mut self, pin: &str) -> Result<(), Error>;
    fn init_pinpad(&mut self, pin: &str) -> Result<(), Error>;
}

impl OnThePinpad for Engine {
    fn login_pinpad(&mut self, pin: &str, so: bool) -> Result<(), Error> {
        let op = if so {
            PinOp::SoLogin(SoPath::Default, Entry::Pinpad)
        } else {
            PinOp::Login(Entry::Pinpad)
        };
        self.perform(pin, op, &mut NoSite)
    }

    fn login_so_pinpad(&mut self, pin: &str, path: SoPath) -> Result<(), Error> {
        self.perform(pin, PinOp::SoLogin(path, Entry::Pinpad), &mut NoSite)
    }

    fn change_pinpad(&mut self, pin: &str) -> Result<(), Error> {
        let op = PinOp::Change {
            old: Entry::Pinpad,
            new: Entry::Pinpad,
        };
        self.perform(pin, op, &mut NoSite)
    }

    fn init_pinpad(&mut self, pin: &str) -> Result<(), Error> {
        self.perform(pin, PinOp::Init(Entry::Pinpad), &mut NoSite)
    }
}

const PAD: &str = "Pinpad Reader 0";
const PLAIN: &str = "Plain Reader 1";

fn rig_with(config: CardConfig, pinpad: SimPinpad) -> Rig {
    Rig::pinpad(PAD, config, pinpad)
}

fn rig(config: CardConfig) -> Rig {
    rig_with(config, SimPinpad::full())
}

fn typed(v: &str) -> PinpadInput {
    PinpadInput::digits(v)
}

/// The rig's operations with every value typed on the pinpad.
trait AtThePinpad {
    /// The user will do `inputs` at the keypad.
    fn user(&self, inputs: impl IntoIterator<Item = PinpadInput>);
    fn login(&self, pin: &'static str) -> Result<(), Error>;
    fn change(&self, pin: &'static str) -> Result<(), Error>;
    /// The user used every scripted input.
    fn all_typed(&self);
}

impl AtThePinpad for Rig {
    fn user(&self, inputs: impl IntoIterator<Item = PinpadInput>) {
        self.sim.pinpad_input(PAD, inputs).unwrap();
    }

    fn login(&self, pin: &'static str) -> Result<(), Error> {
        self.run(move |e| e.login_pinpad(pin, false))
    }

    fn change(&self, pin: &'static str) -> Result<(), Error> {
        self.run(move |e| e.change_pinpad(pin))
    }

    fn all_typed(&self) {
        assert_eq!(self.sim.pinpad_pending(PAD), 0, "inputs left unused");
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

// ---- detection ----------------------------------------------------------------

#[test]
fn a_pinpad_reader_is_detected_once_and_a_plain_one_is_not() {
    let r = rig(CardConfig::piv());
    r.sim.add_reader(PLAIN);
    r.sim
        .insert_card(PLAIN, VirtualCard::new(CardConfig::piv()))
        .unwrap();
    let pad = r
        .run(|e| {
            assert!(e.has_pinpad());
            assert!(e.has_pinpad());
            e.pinpad()
        })
        .unwrap();
    assert!(pad.can_verify() && pad.can_modify());
    assert_eq!(pad.properties.lcd_layout, Some(0x0210));
    assert_eq!(pad.properties.entry_validation, Some(0x02));
    assert_eq!(
        (pad.properties.min_pin_size, pad.properties.max_pin_size),
        (Some(4), Some(15))
    );
    // GET_FEATURE_REQUEST, GET_TLV_PROPERTIES, IFD_PIN_PROPERTIES: once.
    assert_eq!(r.sim.pinpad_requests(PAD).len(), 3);

    let plain = r
        .service
        .with_engine(PLAIN, |e| Ok((e.has_pinpad(), e.pinpad()?)))
        .unwrap();
    assert!(!plain.0);
    assert!(plain.1.features.is_empty());
    assert!(matches!(
        r.service
            .with_engine(PLAIN, |e| e.login_pinpad("pin", false)),
        Err(Error::OperationNotSupported(_))
    ));
    // Nothing was spent on the plain reader's card.
    assert_eq!(r.sim.with_card(PLAIN, |c| c.user_pin_tries()), Some(3));
}

#[test]
fn a_verify_only_reader_cannot_change_on_the_keypad() {
    let r = rig_with(CardConfig::piv(), SimPinpad::verify_only());
    assert!(r.run(|e| Ok(e.has_pinpad())).unwrap());
    assert!(matches!(
        r.change("pin"),
        Err(Error::OperationNotSupported(_))
    ));
    r.user([typed("123456")]);
    r.login("pin").unwrap();
    assert!(r.validated("pin"));
}

// ---- PIV --------------------------------------------------------------------

#[test]
fn piv_login_on_the_pinpad_never_shows_the_pin_to_the_host() {
    let r = rig(CardConfig::piv());
    r.user([typed("123456")]);
    r.login("pin").unwrap();
    r.all_typed();
    assert!(r.validated("pin"));
    let requests = r.sim.pinpad_requests(PAD);
    let verify = &requests.last().unwrap().1;
    // The structure carries the FF template, never the PIN.
    assert!(contains(verify, &[0x00, 0x20, 0x00, 0x80, 0x08, 0xFF]));
    for (_, bytes) in &requests {
        assert!(!contains(bytes, b"123456"));
    }
}

#[test]
fn piv_wrong_pins_on_the_pinpad_count_down_and_may_spend_the_last_try() {
    let r = rig(CardConfig::piv());
    r.user([typed("000000")]);
    assert_eq!(
        r.login("pin"),
        Err(Error::PinIncorrect {
            remaining_tries: Some(2)
        })
    );
    assert_eq!(r.card_tries(), 2);
    r.user([typed("0000000")]);
    assert_eq!(
        r.login("pin"),
        Err(Error::PinIncorrect {
            remaining_tries: Some(1)
        })
    );
    // One try left: a page-supplied value would be refused here, the
    // pinpad is not.
    let from_page = Entry::Typed(Entered::new(s("123456"), Provenance::Page));
    assert_eq!(
        r.run(move |e| e.perform("pin", PinOp::Login(from_page), &mut NoSite)),
        Err(Error::LastTryProtected {
            remaining_tries: Some(1)
        })
    );
    assert_eq!(r.card_tries(), 1);
    r.user([typed("123456")]);
    r.login("pin").unwrap();
    assert_eq!(r.tries("pin"), Some(3));
    // Down to the last try again, then spent on the pinpad.
    r.user([typed("111111"), typed("222222")]);
    assert!(r.login("pin").is_err());
    assert!(r.login("pin").is_err());
    r.user([typed("99999999")]);
    // A wrong value spent the last try: PIN_INCORRECT with none left.
    assert_eq!(
        r.login("pin"),
        Err(Error::PinIncorrect {
            remaining_tries: Some(0)
        })
    );
    assert_eq!(r.card_tries(), 0);
    // Blocked: the user is not even asked.
    r.user([typed("123456")]);
    assert_eq!(r.login("pin"), Err(Error::PinBlocked));
    assert_eq!(r.sim.pinpad_pending(PAD), 1);
}

#[test]
fn piv_reader_status_words_spend_nothing() {
    let r = rig(CardConfig::piv());
    let cases = [
        (PinpadInput::Timeout, Error::PinEntryTimeout),
        (PinpadInput::Cancel, Error::PinEntryCancelled),
        // 6403: shorter than 6 / longer than 8 digits (the card's limits;
        // the reader alone would take 4–15).
        (typed("1234"), Error::PinLengthInvalid { min: 6, max: 8 }),
        (
            typed("123456789"),
            Error::PinLengthInvalid { min: 6, max: 8 },
        ),
    ];
    for (input, expected) in cases {
        r.user([input]);
        assert_eq!(r.login("pin"), Err(expected.clone()));
        r.all_typed();
        assert_eq!(r.card_tries(), 3, "{expected:?}");
    }
    // Nobody typing at all is a timeout too.
    assert_eq!(r.login("pin"), Err(Error::PinEntryTimeout));
    assert_eq!(Error::PinEntryTimeout.code(), "PIN_ENTRY_TIMEOUT");
    assert_eq!(Error::PinEntryCancelled.code(), "PIN_ENTRY_CANCELLED");
    assert_eq!(r.tries("pin"), Some(3));
}

#[test]
fn piv_change_on_the_pinpad() {
    let r = rig(CardConfig::piv());
    // New PINs that differ: 6402, nothing changed.
    r.user([typed("123456"), typed("11223344"), typed("11223345")]);
    assert_eq!(r.change("pin"), Err(Error::PinMismatch));
    r.all_typed();
    // Cancel at the new PIN; time out at the confirmation.
    r.user([typed("123456"), PinpadInput::Cancel]);
    assert_eq!(r.change("pin"), Err(Error::PinEntryCancelled));
    r.user([typed("123456"), typed("11223344"), PinpadInput::Timeout]);
    assert_eq!(r.change("pin"), Err(Error::PinEntryTimeout));
    // A new PIN too short for the card: 6403.
    r.user([typed("123456"), typed("12345")]);
    assert_eq!(
        r.change("pin"),
        Err(Error::PinLengthInvalid { min: 6, max: 8 })
    );
    assert_eq!(r.card_tries(), 3);
    // A wrong current PIN counts.
    r.user([typed("654321"), typed("11223344"), typed("11223344")]);
    assert_eq!(
        r.change("pin"),
        Err(Error::PinIncorrect {
            remaining_tries: Some(2)
        })
    );
    // The right one changes it: both blocks FF-padded to 8 by the reader.
    r.user([typed("123456"), typed("11223344"), typed("11223344")]);
    r.change("pin").unwrap();
    r.all_typed();
    assert_eq!(r.tries("pin"), Some(3));
    r.run(|e| e.login("pin", &s("11223344"), false)).unwrap();
    assert_eq!(
        r.run(|e| e.login("pin", &s("123456"), false)),
        Err(Error::PinIncorrect {
            remaining_tries: Some(2)
        })
    );
}

#[test]
fn piv_unblock_with_the_puk_on_the_pinpad() {
    let r = rig(CardConfig::piv());
    for _ in 0..3 {
        let _ = r.run(|e| e.login("pin", &s("000000"), false));
    }
    assert_eq!(r.card_tries(), 0);
    // Without a SO login, init asks nothing.
    r.user([typed("12345678"), typed("24681357"), typed("24681357")]);
    assert_eq!(r.run(|e| e.init_pinpad("pin")), Err(Error::SoLoginRequired));
    assert_eq!(r.sim.pinpad_pending(PAD), 3);
    // The PUK travels with the new PIN: the SO login is deferred and asks
    // nothing yet; it shows as soValidated; logout forgets it.
    let before = r.sim.pinpad_requests(PAD).len();
    r.run(|e| e.login_pinpad("pin", true)).unwrap();
    assert_eq!(r.sim.pinpad_requests(PAD).len(), before, "no entry asked");
    assert!(r.run(|e| e.status("pin")).unwrap().so_validated);
    r.run(|e| e.logout("pin")).unwrap();
    assert!(!r.run(|e| e.status("pin")).unwrap().so_validated);
    assert_eq!(r.run(|e| e.init_pinpad("pin")), Err(Error::SoLoginRequired));
    assert_eq!(r.sim.pinpad_pending(PAD), 3);
    // With the SO login, init takes what the user typed: PUK, new PIN twice.
    r.run(|e| e.login_pinpad("pin", true)).unwrap();
    r.run(|e| e.init_pinpad("pin")).unwrap();
    r.all_typed();
    assert_eq!(r.card_tries(), 3);
    r.user([typed("24681357")]);
    r.login("pin").unwrap();
    // Block it again. A wrong PUK: its counter goes down (known from the
    // status word: PIV cannot read it otherwise).
    for _ in 0..3 {
        let _ = r.run(|e| e.login("pin", &s("000000"), false));
    }
    r.run(|e| e.login_pinpad("pin", true)).unwrap();
    r.user([typed("87654321"), typed("11335577"), typed("11335577")]);
    assert_eq!(
        r.run(|e| e.init_pinpad("pin")),
        Err(Error::SoPinIncorrect {
            remaining_tries: Some(2)
        })
    );
    assert_eq!(r.run(|e| e.init_pinpad("pin")), Err(Error::SoLoginRequired));
    // New PINs that differ: nothing sent.
    r.run(|e| e.login_pinpad("pin", true)).unwrap();
    r.user([typed("12345678"), typed("11335577"), typed("11335578")]);
    assert_eq!(r.run(|e| e.init_pinpad("pin")), Err(Error::PinMismatch));
    r.run(|e| e.login_pinpad("pin", true)).unwrap();
    r.user([typed("12345678"), typed("11335577"), typed("11335577")]);
    r.run(|e| e.init_pinpad("pin")).unwrap();
    r.all_typed();
    assert_eq!(r.card_tries(), 3);
    r.user([typed("11335577")]);
    r.login("pin").unwrap();
}

#[test]
fn a_reset_by_another_application_is_recovered_from() {
    let r = rig(CardConfig::piv());
    r.user([typed("123456")]);
    r.login("pin").unwrap();
    r.sim.reset_card(PAD).unwrap();
    r.user([typed("123456")]);
    // The structure is sent again after reconnecting and selecting PIV.
    r.login("pin").unwrap();
    r.all_typed();
    assert!(r.validated("pin"));
}

// ---- OpenPGP -----------------------------------------------------------------

#[test]
fn openpgp_login_and_wrong_pins_on_the_pinpad() {
    let r = rig(CardConfig::openpgp());
    r.user([typed("123456")]);
    r.login("user").unwrap();
    // Variable length: VERIFY 00 20 00 82 with Lc 00, the reader inserts
    // the 6 digits and sets Lc.
    let verify = r.sim.pinpad_requests(PAD).last().unwrap().1.clone();
    assert!(verify.ends_with(&[0x00, 0x20, 0x00, 0x82, 0x00]));
    assert!(r.validated("user"));

    r.user([typed("0000000000")]);
    assert_eq!(
        r.login("user"),
        Err(Error::PinIncorrect {
            remaining_tries: Some(2)
        })
    );
    assert_eq!(r.card_tries(), 2);
    assert_eq!(r.tries("user"), Some(2));
    // Longer than the reader's 15 digits: 6403 with the narrowed limits.
    r.user([typed("1234567890123456")]);
    assert_eq!(
        r.login("user"),
        Err(Error::PinLengthInvalid { min: 6, max: 15 })
    );
    r.user([PinpadInput::Cancel]);
    assert_eq!(r.login("user"), Err(Error::PinEntryCancelled));
    r.user([PinpadInput::Timeout]);
    assert_eq!(r.login("user"), Err(Error::PinEntryTimeout));
    assert_eq!(r.card_tries(), 2);
    r.all_typed();
}

#[test]
fn openpgp_change_on_the_pinpad_with_a_longer_pin() {
    let r = rig(CardConfig::openpgp());
    r.user([typed("123456"), typed("1357924680"), typed("1357924681")]);
    assert_eq!(r.change("user"), Err(Error::PinMismatch));
    // Old (6 digits) and new (10 digits) inserted one after the other.
    r.user([typed("123456"), typed("1357924680"), typed("1357924680")]);
    r.change("user").unwrap();
    r.all_typed();
    r.run(|e| e.login("user", &s("1357924680"), false)).unwrap();
    // A wrong current PIN is counted and reported.
    r.user([typed("123456"), typed("2468013579"), typed("2468013579")]);
    assert_eq!(
        r.change("user"),
        Err(Error::PinIncorrect {
            remaining_tries: Some(2)
        })
    );
}

#[test]
fn openpgp_admin_pin_and_unblock_on_the_pinpad() {
    let r = rig(CardConfig::openpgp());
    for _ in 0..3 {
        let _ = r.run(|e| e.login("user", &s("000000"), false));
    }
    assert_eq!(r.card_tries(), 0);
    assert_eq!(
        r.run(|e| e.init_pinpad("user")),
        Err(Error::SoLoginRequired)
    );
    // Wrong admin PIN on the keypad: PW3's counter goes down.
    r.user([typed("87654321")]);
    assert_eq!(
        r.run(|e| e.login_pinpad("user", true)),
        Err(Error::SoPinIncorrect {
            remaining_tries: Some(2)
        })
    );
    r.user([typed("12345678")]);
    r.run(|e| e.login_so_pinpad("user", SoPath::Default))
        .unwrap();
    assert!(r.run(|e| e.status("user")).unwrap().so_validated);
    // The new PIN twice: RESET RETRY COUNTER P1=02.
    r.user([typed("246813"), typed("246813")]);
    r.run(|e| e.init_pinpad("user")).unwrap();
    r.all_typed();
    assert_eq!(r.card_tries(), 3);
    r.user([typed("246813")]);
    r.login("user").unwrap();
}

#[test]
fn openpgp_unblock_with_the_reset_code_on_the_pinpad() {
    let r = rig(CardConfig {
        reset_code: Some(s("87654321")),
        ..CardConfig::openpgp()
    });
    for _ in 0..3 {
        let _ = r.run(|e| e.login("user", &s("000000"), false));
    }
    r.run(|e| e.login_so_pinpad("user", SoPath::ResetCode))
        .unwrap();
    r.user([typed("11111111"), typed("135790"), typed("135790")]);
    assert_eq!(
        r.run(|e| e.init_pinpad("user")),
        Err(Error::SoPinIncorrect {
            remaining_tries: Some(2)
        })
    );
    // Each attempt uses the SO login up.
    assert_eq!(
        r.run(|e| e.init_pinpad("user")),
        Err(Error::SoLoginRequired)
    );
    r.run(|e| e.login_so_pinpad("user", SoPath::ResetCode))
        .unwrap();
    r.user([typed("87654321"), typed("135790"), typed("135790")]);
    r.run(|e| e.init_pinpad("user")).unwrap();
    r.all_typed();
    r.run(|e| e.login("user", &s("135790"), false)).unwrap();
}

#[test]
fn openpgp_without_a_reset_code_is_refused_before_any_entry() {
    let r = rig(CardConfig::openpgp());
    assert_eq!(
        r.run(|e| e.login_so_pinpad("user", SoPath::ResetCode)),
        Err(Error::SoPinBlocked)
    );
    r.user([typed("87654321"), typed("135790"), typed("135790")]);
    assert_eq!(
        r.run(|e| e.init_pinpad("user")),
        Err(Error::SoLoginRequired)
    );
    assert_eq!(r.sim.pinpad_pending(PAD), 3);
}

// ---- Belgian eID (ISO 9564-1 format 2) ----------------------------------------

fn beid() -> CardConfig {
    CardConfig::for_profile(Profile::Beid)
}

#[test]
fn beid_login_on_the_pinpad_with_format_2_blocks() {
    let r = rig(beid());
    r.user([typed("1234")]);
    r.login("pin").unwrap();
    r.all_typed();
    assert!(r.validated("pin"));
    assert_eq!(r.card_tries(), 3);
    // The structure carries the empty format 2 block: 2, length 0, F
    // filling; the reader wrote the length nibble and the BCD digits.
    let requests = r.sim.pinpad_requests(PAD);
    let verify = &requests.last().unwrap().1;
    assert!(verify.ends_with(&[
        0x00, 0x20, 0x00, 0x01, 0x08, 0x20, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF
    ]));
    assert_eq!(&verify[2..5], &[0x41, 0x48, 0x04]);
    for (_, bytes) in &requests {
        assert!(!contains(bytes, &[0x24, 0x12, 0x34]));
        assert!(!contains(bytes, b"1234"));
    }
}

#[test]
fn beid_wrong_pin_on_the_pinpad_costs_one_try() {
    let r = rig(beid());
    r.user([typed("9999")]);
    assert_eq!(
        r.login("pin"),
        Err(Error::PinIncorrect {
            remaining_tries: Some(2)
        })
    );
    r.all_typed();
    assert_eq!(r.card_tries(), 2);
    // Too short for the card: the reader answers 6403, nothing is spent.
    r.user([typed("123")]);
    assert_eq!(
        r.login("pin"),
        Err(Error::PinLengthInvalid { min: 4, max: 12 })
    );
    assert_eq!(r.card_tries(), 2);
    // The right PIN of another length than the wrong one: the reader's
    // length nibble says how many digits count.
    r.user([typed("1234")]);
    r.login("pin").unwrap();
    assert_eq!(r.card_tries(), 3);
}

#[test]
fn beid_change_on_the_pinpad() {
    let r = rig(beid());
    r.user([typed("1234"), typed("24681357"), typed("24681358")]);
    assert_eq!(r.change("pin"), Err(Error::PinMismatch));
    // Two format 2 blocks, the new one at offset 8, each with its length.
    r.user([typed("1234"), typed("24681357"), typed("24681357")]);
    r.change("pin").unwrap();
    r.all_typed();
    assert_eq!(r.card_tries(), 3);
    let modify = r.sim.pinpad_requests(PAD).last().unwrap().1.clone();
    let mut apdu = vec![0x00, 0x24, 0x00, 0x01, 0x10];
    for _ in 0..2 {
        apdu.extend_from_slice(&[0x20, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]);
    }
    assert!(modify.ends_with(&apdu));
    assert_eq!(&modify[2..7], &[0x41, 0x48, 0x04, 0x00, 0x08]);
    r.run(|e| e.login("pin", &s("24681357"), false)).unwrap();
    // A wrong current PIN is counted by the card, once.
    r.user([typed("1234"), typed("123456"), typed("123456")]);
    assert_eq!(
        r.change("pin"),
        Err(Error::PinIncorrect {
            remaining_tries: Some(2)
        })
    );
    assert_eq!(r.card_tries(), 2);
    r.user([typed("24681357")]);
    r.login("pin").unwrap();
    assert_eq!(r.card_tries(), 3);
}
