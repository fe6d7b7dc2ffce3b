//! The virtual card answers every input with at least a status word and
//! never panics: random bytes, random commands after SELECT, random
//! sequences mixing resets, on every profile.

use cardgate::vcard::{CardConfig, Profile, Quirk, VirtualCard};
use proptest::prelude::*;

fn cards() -> Vec<VirtualCard> {
    let all_quirks = |c: CardConfig| {
        c.with_quirk(Quirk::BlockedSw63c0)
            .with_quirk(Quirk::EmptyVerifySpendsTry)
            .with_quirk(Quirk::ChangeWrongOld6300)
            .with_quirk(Quirk::WrongVerify6300)
    };
    let mut cards = vec![
        VirtualCard::new(CardConfig::piv()),
        VirtualCard::new(CardConfig::openpgp()),
        VirtualCard::new(all_quirks(CardConfig {
            pin_must_change: true,
            ..CardConfig::piv()
        })),
        VirtualCard::new(all_quirks(CardConfig {
            pin_not_initialized: true,
            max_tries: 1,
            ..CardConfig::openpgp()
        })),
    ];
    for profile in Profile::ALL {
        cards.push(VirtualCard::new(CardConfig::for_profile(profile)));
        cards.push(VirtualCard::new(all_quirks(CardConfig {
            max_tries: 1,
            start_blocked: true,
            ..CardConfig::for_profile(profile)
        })));
    }
    let old_yubikey = CardConfig {
        firmware: Some([4, 3, 5]),
        ..CardConfig::for_profile(Profile::YubiKey)
    };
    cards.push(VirtualCard::new(old_yubikey));
    for card in &mut cards {
        for select in SELECTS {
            card.process(select);
        }
    }
    cards
}

/// SELECTs of every application the profiles know; each card ends up in
/// the last one it has.
const SELECTS: [&[u8]; 6] = [
    &[
        0x00, 0xA4, 0x04, 0x0C, 0x09, 0xF0, b'c', b'a', b'r', b'd', b'g', b'a', b't', b'e',
    ],
    &[0x00, 0xA4, 0x08, 0x0C, 0x04, 0x50, 0x15, 0x44, 0x01],
    &[
        0x00, 0xA4, 0x04, 0x0C, 0x10, b'Q', b'S', b'C', b'D', b' ', b'A', b'p', b'p', b'l', b'i',
        b'c', b'a', b't', b'i', b'o', b'n',
    ],
    &[
        0x00, 0xA4, 0x04, 0x0C, 0x0C, 0xA0, 0x00, 0x00, 0x01, 0x77, b'P', b'K', b'C', b'S', b'-',
        b'1', b'5',
    ],
    &[
        0x00, 0xA4, 0x04, 0x00, 0x06, 0xD2, 0x76, 0x00, 0x01, 0x24, 0x01,
    ],
    &[0x00, 0xA4, 0x04, 0x00, 0x05, 0xA0, 0x00, 0x00, 0x03, 0x08],
];

fn command() -> impl Strategy<Value = Vec<u8>> {
    let ins = prop::sample::select(vec![
        0x20u8, 0x24, 0x2C, 0xCA, 0xCB, 0xDA, 0xC0, 0xA4, 0x2A, 0x47, 0x87, 0x00, 0xB0, 0xF7, 0xFD,
        0xE4, 0xE6, 0xEA, 0x84,
    ]);
    let p = prop::sample::select(vec![
        0x00u8, 0x01, 0x02, 0x04, 0x05, 0x08, 0x09, 0x0C, 0x3F, 0x44, 0x50, 0x5F, 0x6E, 0x7E, 0x80,
        0x81, 0x82, 0x83, 0x85, 0xC4, 0xD3, 0xFF,
    ]);
    (
        prop::sample::select(vec![0x00u8, 0x10, 0x80]),
        ins,
        p.clone(),
        p,
        prop::collection::vec(any::<u8>(), 0..300),
        prop::option::of(any::<u8>()),
    )
        .prop_map(|(cla, ins, p1, p2, data, le)| {
            let mut c = vec![cla, ins, p1, p2];
            if data.len() > 255 {
                c.extend_from_slice(&[0, (data.len() >> 8) as u8, data.len() as u8]);
            } else if !data.is_empty() {
                c.push(data.len() as u8);
            }
            c.extend_from_slice(&data);
            if let Some(le) = le {
                c.push(le);
            }
            c
        })
}

proptest! {
    #[test]
    fn random_bytes(raw in prop::collection::vec(any::<u8>(), 0..600)) {
        for card in &mut cards() {
            prop_assert!(card.process(&raw).len() >= 2);
        }
    }

    #[test]
    fn random_command_sequences(cmds in prop::collection::vec(prop::option::of(command()), 1..40)) {
        for card in &mut cards() {
            for cmd in &cmds {
                match cmd {
                    Some(cmd) => prop_assert!(card.process(cmd).len() >= 2),
                    None => card.reset(),
                }
            }
        }
    }
}
