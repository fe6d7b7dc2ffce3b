//! Card recognition and session behaviour with a scripted transport.

use cardgate::card::{CardSession, WELL_KNOWN_AIDS};
use cardgate::error::Error;
use cardgate::transport::{Transport, TransportError};
use std::sync::{Arc, Mutex};

/// Answers each command with the reply of the first rule whose prefix matches.
struct Scripted {
    rules: Vec<(Vec<u8>, Vec<u8>)>,
    log: SentLog,
    fail_next: Arc<Mutex<Option<TransportError>>>,
    reconnects: Arc<Mutex<Vec<bool>>>,
}

impl Transport for Scripted {
    fn transmit(&mut self, apdu: &[u8]) -> Result<Vec<u8>, TransportError> {
        if let Some(e) = self.fail_next.lock().unwrap().take() {
            return Err(e);
        }
        self.log.lock().unwrap().push(apdu.to_vec());
        Ok(self
            .rules
            .iter()
            .find(|(p, _)| apdu.starts_with(p))
            .map(|(_, r)| r.clone())
            .unwrap_or(vec![0x6D, 0x00]))
    }
    fn control(&mut self, _: u32, _: &[u8]) -> Result<Vec<u8>, TransportError> {
        Err(TransportError::Unsupported)
    }
    fn reconnect(&mut self, reset: bool) -> Result<(), TransportError> {
        self.reconnects.lock().unwrap().push(reset);
        Ok(())
    }
    fn atr(&self) -> &[u8] {
        &[0x3B, 0x02, 0x14, 0x50]
    }
}

type SentLog = Arc<Mutex<Vec<Vec<u8>>>>;

fn scripted(rules: &[(&[u8], &[u8])]) -> (Box<Scripted>, SentLog) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let t = Scripted {
        rules: rules
            .iter()
            .map(|(a, b)| (a.to_vec(), b.to_vec()))
            .collect(),
        log: log.clone(),
        fail_next: Arc::default(),
        reconnects: Arc::default(),
    };
    (Box::new(t), log)
}

#[test]
fn unknown_card_is_unsupported_with_its_atr() {
    let (t, log) = scripted(&[(&[0x00, 0xA4], &[0x6A, 0x82])]);
    let err = CardSession::open(t).err().unwrap();
    assert_eq!(
        err,
        Error::CardNotSupported {
            atr: "3B021450".into(),
            applications: vec![],
        }
    );
    // Only SELECTs were sent: the profiles' applications, then the
    // well-known ones for the error; never a VERIFY.
    let log = log.lock().unwrap();
    assert!(log.len() > WELL_KNOWN_AIDS.len());
    assert!(log.iter().all(|c| c[1] == 0xA4), "{log:02X?}");
}

#[test]
fn piv_is_recognised_by_select() {
    let (t, _) = scripted(&[(
        &[0x00, 0xA4, 0x04, 0x00, 0x05, 0xA0],
        &[0x61, 0x02, 0x4F, 0x00, 0x90, 0x00],
    )]);
    let s = CardSession::open(t).ok().unwrap();
    assert_eq!(s.token.profile, "piv");
}

#[test]
fn openpgp_long_pw_status_through_get_response() {
    // SELECT PIV fails, SELECT OpenPGP works, the AID and C4 come in pieces (61xx).
    let (t, log) = scripted(&[
        (&[0x00, 0xA4, 0x04, 0x00, 0x05], &[0x6A, 0x82]),
        (&[0x00, 0xA4, 0x04, 0x00, 0x06], &[0x90, 0x00]),
        (
            &[0x00, 0xCA, 0x00, 0x4F],
            &[
                0xD2, 0x76, 0x00, 0x01, 0x24, 0x01, 0x03, 0x04, 0xFF, 0xFE, 0x61, 0x06,
            ],
        ),
        (
            &[0x00, 0xC0, 0x00, 0x00, 0x06],
            &[0x00, 0x00, 0x12, 0x34, 0x00, 0x00, 0x90, 0x00],
        ),
        // Most specific first: the re-sent command carries Le.
        (
            &[0x00, 0xCA, 0x00, 0xC4, 0x07],
            &[0x01, 0x20, 0x20, 0x40, 0x03, 0x00, 0x03, 0x90, 0x00],
        ),
        (&[0x00, 0xCA, 0x00, 0xC4], &[0x6C, 0x07]),
    ]);
    let s = CardSession::open(t).ok().unwrap();
    assert_eq!(s.token.profile, "openpgp");
    assert_eq!(s.token.serial(), Some("FFFE00001234"));
    let user = s.token.pin("user").unwrap();
    assert_eq!(user.credential.format.max_len, 0x20);
    assert_eq!(
        s.token.pin("admin").unwrap().credential.format.max_len,
        0x40
    );
    assert!(
        log.lock()
            .unwrap()
            .iter()
            .any(|c| c == &[0x00, 0xCA, 0x00, 0xC4, 0x07])
    );
}

#[test]
fn reset_by_someone_else_reselects_and_resends_once() {
    let (t, log) = scripted(&[
        (&[0x00, 0xA4, 0x04, 0x00, 0x05], &[0x90, 0x00]),
        (&[0x00, 0x20], &[0x63, 0xC3]),
    ]);
    let (fail, reconnects) = (t.fail_next.clone(), t.reconnects.clone());
    let mut s = CardSession::open(t).ok().unwrap();
    log.lock().unwrap().clear();
    *fail.lock().unwrap() = Some(TransportError::CardReset);
    let r = s
        .send(&cardgate::apdu::commands::verify_status(0x80))
        .unwrap();
    assert_eq!(r.sw.to_u16(), 0x63C3);
    // Reconnected without resetting, selected PIV again, then the command.
    assert_eq!(*reconnects.lock().unwrap(), vec![false]);
    let sent = log.lock().unwrap().clone();
    assert_eq!(sent.len(), 2);
    assert_eq!(&sent[0][..2], &[0x00, 0xA4]);
    assert_eq!(sent[1], vec![0x00, 0x20, 0x00, 0x80]);
    assert!(s.take_reset());
    assert!(!s.take_reset());
}

#[test]
fn removed_card_is_reported() {
    let (t, _) = scripted(&[(&[0x00, 0xA4, 0x04, 0x00, 0x05], &[0x90, 0x00])]);
    let fail = t.fail_next.clone();
    let mut s = CardSession::open(t).ok().unwrap();
    *fail.lock().unwrap() = Some(TransportError::CardRemoved);
    let e = s
        .send(&cardgate::apdu::commands::verify_status(0x80))
        .unwrap_err();
    assert_eq!(e, Error::CardRemoved);
}

#[test]
fn a_profiles_same_as_old_status_word_is_a_constraint_not_a_spent_try() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("acme.toml"),
        r#"
        name = "acme"
        atr = ["3B 02 14 50"]
        [[application]]
        id = "acme"
        base = "iso7816.iso"
        aid = "F0 01 02 03 04"
        [[application.pin]]
        id = "pin"
        status-words = { "6985" = "new-same-as-old" }
        "#,
    )
    .unwrap();
    let profiles = cardgate::card::ProfileSet::load(&[dir.path().to_path_buf()]);
    assert!(profiles.errors.is_empty(), "{:?}", profiles.errors);
    let (t, log) = scripted(&[
        (&[0x00, 0xA4, 0x04, 0x00, 0x05, 0xF0], &[0x90, 0x00]),
        (&[0x00, 0x24, 0x00, 0x81], &[0x69, 0x85]),
    ]);
    let session = CardSession::open_with(t, &profiles).ok().unwrap();
    let mut engine = cardgate::pin::Engine::new(session);
    let same = cardgate::secret::Secret::from("1234");
    let e = engine.change("pin", &same, &same).unwrap_err();
    let Error::ConstraintViolation { failed } = e else {
        panic!("{e:?}");
    };
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].type_name(), "newOldDifferent");
    // One CHANGE REFERENCE DATA reached the card, nothing else but SELECTs.
    let log = log.lock().unwrap();
    assert_eq!(log.iter().filter(|c| c[1] == 0x24).count(), 1);
    assert!(
        log.iter().all(|c| matches!(c[1], 0xA4 | 0x24)),
        "{log:02X?}"
    );
}
