//! The virtual card's models of real cards, driven by APDUs: the YubiKey
//! (PIV + OpenPGP, Yubico's GET METADATA), the Estonian ID card, the
//! Belgian eID, a PKCS#15 card and a plain ISO 7816-4 card with the quirks
//! of a hostile one. Each test checks the card's answers and its counters
//! read from inside the card.

use cardgate::vcard::{CardConfig, Profile, Quirk, VirtualCard, pkcs15};

/// Hex digits (whitespace ignored) into bytes.
fn hex(s: &str) -> Vec<u8> {
    let digits: String = s.split_whitespace().collect();
    assert!(digits.len().is_multiple_of(2), "odd hex {s:?}");
    (0..digits.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).expect("hex"))
        .collect()
}

/// A command APDU: header, then Lc and data when there is data.
fn apdu(header: &str, data: &[u8]) -> Vec<u8> {
    let mut c = hex(header);
    if !data.is_empty() {
        c.push(data.len() as u8);
        c.extend_from_slice(data);
    }
    c
}

/// ASCII digits padded with FF to `len` bytes.
fn ff(digits: &str, len: usize) -> Vec<u8> {
    let mut b = digits.as_bytes().to_vec();
    b.resize(len, 0xFF);
    b
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// The status word of a response.
fn sw(resp: &[u8]) -> u16 {
    assert!(resp.len() >= 2, "no status word: {resp:02X?}");
    u16::from_be_bytes([resp[resp.len() - 2], resp[resp.len() - 1]])
}

/// The data of a response (without the status word).
fn data(resp: &[u8]) -> &[u8] {
    &resp[..resp.len() - 2]
}

fn card(profile: Profile) -> VirtualCard {
    VirtualCard::new(CardConfig::for_profile(profile))
}

/// The ATR's check byte, when one is present, XORs to 0 with T0..TCK.
fn check_atr(atr: &[u8]) {
    assert!(matches!(atr[0], 0x3B | 0x3F));
    let mut i = 1;
    let mut y = atr[1] >> 4;
    let k = usize::from(atr[1] & 0x0F);
    let mut tck = false;
    loop {
        let td_present = y & 0x8 != 0;
        i += (y & 0x7).count_ones() as usize;
        if !td_present {
            break;
        }
        i += 1;
        let td = atr[i];
        if td & 0x0F != 0 {
            tck = true;
        }
        y = td >> 4;
    }
    let expected = 1 + i + k + usize::from(tck);
    assert_eq!(atr.len(), expected, "ATR length {atr:02X?}");
    if tck {
        assert_eq!(atr[1..].iter().fold(0, |a, b| a ^ b), 0, "TCK {atr:02X?}");
    }
}

// ---------------------------------------------------------------- YubiKey

const PIV_SELECT: &str = "00 A4 04 00 09 A0 00 00 03 08 00 00 10 00";
const PGP_SELECT: &str = "00 A4 04 00 06 D2 76 00 01 24 01";

#[test]
fn yubikey_atr_and_applications() {
    let mut c = card(Profile::YubiKey);
    assert_eq!(
        c.atr(),
        hex("3BFD1300008131FE158073C021C057597562694B657940")
    );
    check_atr(&c.atr());
    // Nothing selected yet.
    assert_eq!(sw(&c.process(&hex("00 20 00 80"))), 0x6985);
    assert_eq!(sw(&c.process(&hex(PIV_SELECT))), 0x9000);
    assert_eq!(sw(&c.process(&hex(PGP_SELECT))), 0x9000);
    // The OpenPGP AID names Yubico (0006) as manufacturer.
    let aid = c.process(&hex("00 CA 00 4F 00"));
    assert_eq!(&data(&aid)[8..10], &[0x00, 0x06]);
    assert_eq!(
        sw(&c.process(&hex("00 A4 04 00 05 A0 00 00 06 47"))),
        0x6A82
    );
    assert_eq!(
        c.counter_names(),
        [
            "piv.pin",
            "piv.puk",
            "openpgp.pw1",
            "openpgp.pw3",
            "openpgp.rc"
        ]
    );
}

#[test]
fn yubikey_selecting_one_application_drops_the_other() {
    let mut c = card(Profile::YubiKey);
    let piv_pin = apdu("00 20 00 80", &ff("123456", 8));
    c.process(&hex(PIV_SELECT));
    assert_eq!(sw(&c.process(&piv_pin)), 0x9000);
    // Re-selecting PIV keeps its verified state.
    c.process(&hex(PIV_SELECT));
    assert_eq!(sw(&c.process(&hex("00 20 00 80"))), 0x9000);

    // Selecting OpenPGP drops PIV's; verify PW1 there.
    c.process(&hex(PGP_SELECT));
    assert_eq!(sw(&c.process(&apdu("00 20 00 82", b"123456"))), 0x9000);
    assert_eq!(sw(&c.process(&hex("00 20 00 82"))), 0x9000);
    // A failed SELECT changes nothing.
    assert_eq!(sw(&c.process(&hex("00 A4 04 00 03 01 02 03"))), 0x6A82);
    assert_eq!(sw(&c.process(&hex("00 20 00 82"))), 0x9000);
    c.process(&hex(PIV_SELECT));
    assert_eq!(sw(&c.process(&hex("00 20 00 80"))), 0x63C3);
    c.process(&hex(PGP_SELECT));
    assert_eq!(sw(&c.process(&hex("00 20 00 82"))), 0x63C3);
    // No try was spent by any of this.
    assert_eq!(c.tries("piv.pin"), Some(3));
    assert_eq!(c.tries("openpgp.pw1"), Some(3));
}

#[test]
fn yubikey_counters_are_per_application() {
    let mut c = VirtualCard::new(CardConfig {
        max_tries: 5,
        ..CardConfig::for_profile(Profile::YubiKey)
    });
    c.process(&hex(PIV_SELECT));
    assert_eq!(
        sw(&c.process(&apdu("00 20 00 80", &ff("000000", 8)))),
        0x63C4
    );
    c.process(&hex(PGP_SELECT));
    assert_eq!(sw(&c.process(&apdu("00 20 00 81", b"000000"))), 0x63C4);
    assert_eq!(sw(&c.process(&apdu("00 20 00 83", b"00000000"))), 0x63C4);
    assert_eq!(c.tries("piv.pin"), Some(4));
    assert_eq!(c.tries("openpgp.pw1"), Some(4));
    assert_eq!(c.tries("openpgp.pw3"), Some(4));
    assert_eq!(c.tries("piv.puk"), Some(5));
    assert_eq!(c.tries("pin"), None);
    // A right PIV PIN resets only the PIV counter.
    c.process(&hex(PIV_SELECT));
    assert_eq!(
        sw(&c.process(&apdu("00 20 00 80", &ff("123456", 8)))),
        0x9000
    );
    assert_eq!(c.tries("piv.pin"), Some(5));
    assert_eq!(c.tries("openpgp.pw1"), Some(4));
}

#[test]
fn yubikey_metadata_and_version() {
    let mut c = card(Profile::YubiKey);
    c.process(&hex(PIV_SELECT));
    assert_eq!(c.process(&hex("00 FD 00 00 00")), hex("05 04 03 90 00"));
    assert_eq!(
        c.process(&hex("00 F7 00 80 00")),
        hex("01 01 FF 05 01 01 06 02 03 03 90 00")
    );
    assert_eq!(
        c.process(&hex("00 F7 00 81 00")),
        hex("01 01 FF 05 01 01 06 02 03 03 90 00")
    );
    // A wrong PIN: the metadata shows it, and reading it spends nothing.
    assert_eq!(
        sw(&c.process(&apdu("00 20 00 80", &ff("000000", 8)))),
        0x63C2
    );
    for _ in 0..3 {
        assert_eq!(
            c.process(&hex("00 F7 00 80 00")),
            hex("01 01 FF 05 01 01 06 02 03 02 90 00")
        );
    }
    assert_eq!(c.tries("piv.pin"), Some(2));
    // Change the PIN: no longer the default.
    let change = apdu("00 24 00 80", &cat(&[&ff("123456", 8), &ff("654321", 8)]));
    assert_eq!(sw(&c.process(&change)), 0x9000);
    assert_eq!(
        c.process(&hex("00 F7 00 80 00")),
        hex("01 01 FF 05 01 00 06 02 03 03 90 00")
    );
    // Other references, other P1.
    assert_eq!(sw(&c.process(&hex("00 F7 00 9A 00"))), 0x6A88);
    assert_eq!(sw(&c.process(&hex("00 F7 01 80 00"))), 0x6A86);
    // Not an OpenPGP command.
    c.process(&hex(PGP_SELECT));
    assert_eq!(sw(&c.process(&hex("00 F7 00 80 00"))), 0x6D00);
}

#[test]
fn yubikey_old_firmware_has_no_metadata() {
    let config = CardConfig::from_toml_str("profile = \"yubikey\"\nfirmware = \"4.3.5\"\n")
        .expect("valid configuration");
    let mut c = VirtualCard::new(config);
    c.process(&hex(PIV_SELECT));
    assert_eq!(c.process(&hex("00 FD 00 00 00")), hex("04 03 05 90 00"));
    assert_eq!(c.process(&hex("00 F7 00 80 00")), hex("6D 00"));
    // The fallback: the empty VERIFY, which spends nothing.
    assert_eq!(sw(&c.process(&hex("00 20 00 80"))), 0x63C3);
    assert_eq!(c.tries("piv.pin"), Some(3));
    let metadata_since = CardConfig::from_toml_str("profile = \"yubikey\"\nfirmware = \"5.3.0\"\n");
    let mut c = VirtualCard::new(metadata_since.expect("valid"));
    c.process(&hex(PIV_SELECT));
    assert_eq!(sw(&c.process(&hex("00 F7 00 80 00"))), 0x9000);
    assert!(CardConfig::from_toml_str("profile = \"yubikey\"\nfirmware = \"5.4\"\n").is_err());
    assert!(CardConfig::from_toml_str("profile = \"piv\"\nfirmware = \"5.4.3\"\n").is_err());
}

#[test]
fn yubikey_unblock_with_the_puk() {
    let mut c = card(Profile::YubiKey);
    c.process(&hex(PIV_SELECT));
    for expect in [0x63C2, 0x63C1, 0x6983] {
        assert_eq!(
            sw(&c.process(&apdu("00 20 00 80", &ff("000000", 8)))),
            expect
        );
    }
    assert_eq!(
        c.process(&hex("00 F7 00 80 00")),
        hex("01 01 FF 05 01 01 06 02 03 00 90 00")
    );
    let rrc = apdu("00 2C 00 80", &cat(&[b"12345678", &ff("111111", 8)]));
    assert_eq!(sw(&c.process(&rrc)), 0x9000);
    assert_eq!(c.tries("piv.pin"), Some(3));
    assert_eq!(
        sw(&c.process(&apdu("00 20 00 80", &ff("111111", 8)))),
        0x9000
    );
}

// ----------------------------------------------------------------- EstEID

const EST_MAIN: &str = "00 A4 04 0C 10 A0 00 00 00 77 01 08 00 07 00 00 FE 00 00 01 00";
const EST_QSCD: &str = "00 A4 04 0C 10 51 53 43 44 20 41 70 70 6C 69 63 61 74 69 6F 6E";
const EST_AWP: &str = "00 A4 04 0C 0D E8 28 BD 08 0F F2 50 4F 54 20 41 57 50";

fn est_tries(c: &mut VirtualCard, rr: u8) -> Vec<u8> {
    let mut cmd = hex("00 CB 3F FF 0A 4D 08 70 06 BF 81");
    cmd.extend_from_slice(&[rr, 0x02, 0xA0, 0x80, 0x00]);
    c.process(&cmd)
}

#[test]
fn esteid_tries_as_libelectronic_id_reads_them() {
    let mut c = card(Profile::EstEid);
    assert_eq!(c.atr(), hex("3BDB960080B1FE451F830012233F536549440F9000F1"));
    check_atr(&c.atr());
    assert_eq!(sw(&c.process(&hex(EST_MAIN))), 0x9000);
    // The mock transcript of libelectronic-id, byte for byte.
    assert_eq!(
        est_tries(&mut c, 0x01),
        hex(
            "70 1E BF 81 01 1A A0 18 9A 01 03 9B 01 03 A1 10 8C 06 F3 00 00 73 43 00 \
             9C 06 F3 00 00 73 43 00 90 00"
        )
    );
    let r = est_tries(&mut c, 0x02);
    assert_eq!((sw(&r), r[10], r[13]), (0x9000, 3, 3));
    // PIN2 lives in the QSCD application.
    assert_eq!(sw(&est_tries(&mut c, 0x05)), 0x6A88);
    assert_eq!(sw(&c.process(&hex(EST_QSCD))), 0x9000);
    assert_eq!(
        est_tries(&mut c, 0x05),
        hex(
            "70 1E BF 81 05 1A A0 18 9A 01 03 9B 01 03 A1 10 8C 06 F3 00 00 73 FF 00 \
             9C 06 F3 00 00 73 FF 00 90 00"
        )
    );
    // Wrong PIN2: DigiDoc4's offset 13 shows it.
    let verify2 = |pin: &str| apdu("00 20 00 85", &ff(pin, 12));
    assert_eq!(sw(&c.process(&verify2("11111"))), 0x63C2);
    let r = est_tries(&mut c, 0x05);
    assert_eq!((r[10], r[13]), (3, 2));
    assert_eq!(c.tries("pin2"), Some(2));
    assert_eq!(sw(&c.process(&verify2("12345"))), 0x9000);
    assert_eq!(c.tries("pin2"), Some(3));
    assert_eq!(c.counter_names(), ["pin1", "pin2", "puk"]);
}

#[test]
fn esteid_pin1_formats_and_blocking() {
    let mut c = VirtualCard::new(CardConfig {
        max_tries: 4,
        ..CardConfig::for_profile(Profile::EstEid)
    });
    assert_eq!(sw(&c.process(&hex(EST_AWP))), 0x9000);
    let verify1 = |pin: &[u8]| apdu("00 20 00 01", pin);
    // Malformed: nothing spent.
    assert_eq!(sw(&c.process(&verify1(b"1234"))), 0x6700);
    assert_eq!(sw(&c.process(&verify1(&ff("123", 12)))), 0x6A80);
    assert_eq!(sw(&c.process(&verify1(&ff("12a4", 12)))), 0x6A80);
    assert_eq!(c.tries("pin1"), Some(4));
    // The empty VERIFY is a free status query.
    assert_eq!(sw(&c.process(&hex("00 20 00 01"))), 0x63C4);
    for expect in [0x63C3, 0x63C2, 0x63C1, 0x63C0] {
        assert_eq!(sw(&c.process(&verify1(&ff("0000", 12)))), expect);
    }
    assert_eq!(sw(&c.process(&verify1(&ff("1234", 12)))), 0x6983);
    assert_eq!(c.tries("pin1"), Some(0));
    let r = est_tries(&mut c, 0x01);
    assert_eq!((r[10], r[13]), (4, 0));
    // PIN2 is not reachable from the authentication application.
    assert_eq!(
        sw(&c.process(&apdu("00 20 00 85", &ff("12345", 12)))),
        0x6A88
    );
}

#[test]
fn esteid_change_and_unblock_as_digidoc4() {
    let mut c = card(Profile::EstEid);
    c.process(&hex(EST_MAIN));
    // CHANGE REFERENCE DATA old ‖ new, 12 bytes each.
    let change1 = |old: &str, new: &str| apdu("00 24 00 01", &cat(&[&ff(old, 12), &ff(new, 12)]));
    assert_eq!(sw(&c.process(&change1("9999", "4321"))), 0x63C2);
    assert_eq!(sw(&c.process(&change1("1234", "12"))), 0x6A80);
    assert_eq!(sw(&c.process(&change1("1234", "4321"))), 0x9000);
    assert_eq!(c.tries("pin1"), Some(3));
    // Block PIN2.
    c.process(&hex(EST_QSCD));
    for _ in 0..3 {
        c.process(&apdu("00 20 00 85", &ff("00000", 12)));
    }
    assert_eq!(c.tries("pin2"), Some(0));
    // RESET RETRY COUNTER before the PUK: refused, nothing spent.
    let rrc2 = apdu("00 2C 02 85", &ff("55555", 12));
    assert_eq!(sw(&c.process(&rrc2)), 0x6982);
    // DigiDoc4: select main, VERIFY PUK, select QSCD, RRC P1=02 P2=85.
    c.process(&hex(EST_MAIN));
    assert_eq!(
        sw(&c.process(&apdu("00 20 00 02", &ff("00000000", 12)))),
        0x63C2
    );
    assert_eq!(c.tries("puk"), Some(2));
    assert_eq!(
        sw(&c.process(&apdu("00 20 00 02", &ff("17258403", 12)))),
        0x9000
    );
    assert_eq!(c.tries("puk"), Some(3));
    c.process(&hex(EST_QSCD));
    assert_eq!(
        sw(&c.process(&apdu("00 2C 00 85", &ff("55555", 12)))),
        0x6A86
    );
    assert_eq!(sw(&c.process(&rrc2)), 0x9000);
    assert_eq!(c.tries("pin2"), Some(3));
    assert_eq!(
        sw(&c.process(&apdu("00 20 00 85", &ff("55555", 12)))),
        0x9000
    );
    // Leaving QSCD drops PIN2's verified state, not PIN1's.
    assert_eq!(
        sw(&c.process(&apdu("00 20 00 01", &ff("4321", 12)))),
        0x9000
    );
    c.process(&hex(EST_MAIN));
    c.process(&hex(EST_QSCD));
    assert_eq!(sw(&c.process(&hex("00 20 00 85"))), 0x63C3);
    assert_eq!(sw(&c.process(&hex("00 20 00 01"))), 0x9000);
    // PUK change.
    let change_puk = apdu(
        "00 24 00 02",
        &cat(&[&ff("17258403", 12), &ff("87654321", 12)]),
    );
    assert_eq!(sw(&c.process(&change_puk)), 0x9000);
    // A reset forgets every verification.
    c.reset();
    assert_eq!(sw(&c.process(&hex("00 20 00 01"))), 0x63C3);
}

#[test]
fn esteid_configured_values_and_validation() {
    let c = CardConfig::from_toml_str(
        "profile = \"esteid\"\npin1 = \"4444\"\npin2 = \"55555\"\npuk = \"123456789\"\nmax_tries = 5\n",
    )
    .expect("valid");
    let mut c = VirtualCard::new(c);
    c.process(&hex(EST_MAIN));
    assert_eq!(
        sw(&c.process(&apdu("00 20 00 01", &ff("4444", 12)))),
        0x9000
    );
    assert_eq!(
        sw(&c.process(&apdu("00 20 00 02", &ff("123456789", 12)))),
        0x9000
    );
    assert_eq!(c.tries("pin2"), Some(5));
    for bad in [
        "profile = \"esteid\"\npin1 = \"123\"",
        "profile = \"esteid\"\npin2 = \"1234\"",
        "profile = \"esteid\"\npuk = \"1234567\"",
        "profile = \"esteid\"\npin = \"1234\"",
        "profile = \"esteid\"\npin_must_change = true",
    ] {
        assert!(CardConfig::from_toml_str(bad).is_err(), "{bad}");
    }
}

// ------------------------------------------------------------ Belgian eID

/// An ISO 9564-1 format 2 PIN block.
fn format2(digits: &str) -> Vec<u8> {
    let mut nibbles = vec![0x2, digits.len() as u8];
    nibbles.extend(digits.bytes().map(|d| d - b'0'));
    nibbles.resize(16, 0xF);
    nibbles.chunks(2).map(|n| (n[0] << 4) | n[1]).collect()
}

#[test]
fn beid_format2_verify_and_card_data() {
    let mut c = card(Profile::Beid);
    assert_eq!(c.atr(), hex("3B7F96000080318065B085040120120FFF829000"));
    check_atr(&c.atr());
    assert_eq!(format2("1234"), hex("24 12 34 FF FF FF FF FF"));
    // The applet answers without a SELECT (OpenSC sends GET CARD DATA first).
    let cd = c.process(&hex("80 E4 00 00 1C"));
    assert_eq!(sw(&cd), 0x9000);
    assert_eq!(data(&cd).len(), 28);
    assert_eq!(data(&cd)[21], 0x18);
    assert_eq!(data(&cd)[27], 0x0F);
    assert_eq!(sw(&c.process(&hex("00 A4 08 0C 04 3F 00 DF 00"))), 0x9000);
    assert_eq!(
        sw(&c.process(&hex("00 A4 04 0C 0C A0 00 00 01 77 50 4B 43 53 2D 31 35"))),
        0x9000
    );
    // The PIN in ASCII is not a format 2 block: refused, nothing spent.
    assert_eq!(sw(&c.process(&apdu("00 20 00 01", &ff("1234", 8)))), 0x6A80);
    assert_eq!(sw(&c.process(&apdu("00 20 00 01", b"1234"))), 0x6700);
    assert_eq!(c.tries("pin"), Some(3));
    assert_eq!(
        sw(&c.process(&apdu("00 20 00 01", &format2("0000")))),
        0x63C2
    );
    assert_eq!(
        sw(&c.process(&apdu("00 20 00 01", &format2("1234")))),
        0x9000
    );
    assert_eq!(c.tries("pin"), Some(3));
    assert_eq!(c.counter_names(), ["pin"]);
}

#[test]
fn beid_offers_no_tries_reading() {
    let mut c = card(Profile::Beid);
    // No status query: the empty VERIFY, the PIN status commands.
    assert_eq!(sw(&c.process(&hex("00 20 00 01"))), 0x6700);
    assert_eq!(sw(&c.process(&hex("80 EA 00 01 01"))), 0x6A86);
    assert_eq!(sw(&c.process(&hex("80 EA 02 01 81"))), 0x6A81);
    assert_eq!(c.tries("pin"), Some(3));
    // A verified state is dropped by LOG OFF.
    assert_eq!(
        sw(&c.process(&apdu("00 20 00 01", &format2("1234")))),
        0x9000
    );
    assert_eq!(sw(&c.process(&hex("80 E6 00 00"))), 0x9000);
    // Other proprietary instructions; CLA 80 on another card.
    assert_eq!(sw(&c.process(&hex("80 CA 00 00 00"))), 0x6D00);
    let mut piv = card(Profile::Piv);
    assert_eq!(sw(&piv.process(&hex("80 E4 00 00 1C"))), 0x6E00);
}

#[test]
fn beid_change_block_and_no_unblock() {
    let mut c = card(Profile::Beid);
    let change = |old: &str, new: &str| apdu("00 24 00 01", &cat(&[&format2(old), &format2(new)]));
    assert_eq!(sw(&c.process(&change("1234", "123"))), 0x6A80);
    assert_eq!(sw(&c.process(&change("1234", "987654321012"))), 0x9000);
    assert_eq!(
        sw(&c.process(&apdu("00 20 00 01", &format2("987654321012")))),
        0x9000
    );
    for expect in [0x63C2, 0x63C1, 0x63C0, 0x6983] {
        assert_eq!(
            sw(&c.process(&apdu("00 20 00 01", &format2("0000")))),
            expect
        );
    }
    assert_eq!(c.tries("pin"), Some(0));
    // Unblocking needs the municipality's secure channel.
    let rrc = apdu(
        "00 2C 00 01",
        &cat(&[&format2("12345678"), &format2("1111")]),
    );
    assert_eq!(sw(&c.process(&rrc)), 0x6982);
    assert_eq!(c.tries("pin"), Some(0));
    assert!(CardConfig::from_toml_str("profile = \"beid\"\npin = \"123\"").is_err());
    assert!(CardConfig::from_toml_str("profile = \"beid\"\npuk = \"12345678\"").is_err());
}

// ---------------------------------------------------------------- PKCS#15

/// A minimal DER reader: (tag, value, rest).
fn der(b: &[u8]) -> (u8, &[u8], &[u8]) {
    let tag = b[0];
    let (len, head) = match b[1] {
        n if n < 0x80 => (usize::from(n), 2),
        0x81 => (usize::from(b[2]), 3),
        0x82 => (usize::from(u16::from_be_bytes([b[2], b[3]])), 4),
        n => panic!("length form {n:02X}"),
    };
    (tag, &b[head..head + len], &b[head + len..])
}

/// Every TLV of a constructed value, in order.
fn children(mut b: &[u8]) -> Vec<(u8, &[u8])> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let (t, v, rest) = der(b);
        out.push((t, v));
        b = rest;
    }
    out
}

/// The PIN objects of an AODF, decoded: (label, commonObject authId,
/// authId, flags byte, pinType, min, stored, max, reference, pad, path).
#[derive(Debug, PartialEq)]
struct Pin {
    label: String,
    unblocked_by: Option<u8>,
    auth_id: u8,
    flags: Vec<u8>,
    pin_type: u8,
    min: u32,
    stored: u32,
    max: u32,
    reference: u32,
    pad: u8,
    path: Vec<u8>,
}

fn int(v: &[u8]) -> u32 {
    assert!(!v.is_empty() && v[0] & 0x80 == 0, "a positive DER INTEGER");
    assert!(
        v.len() == 1 || v[0] != 0 || v[1] & 0x80 != 0,
        "minimal INTEGER"
    );
    v.iter().fold(0, |a, b| (a << 8) | u32::from(*b))
}

fn decode_aodf(aodf: &[u8]) -> Vec<Pin> {
    children(aodf)
        .into_iter()
        .map(|(tag, object)| {
            assert_eq!(tag, 0x30, "pin choice: a SEQUENCE");
            let parts = children(object);
            assert_eq!(parts.len(), 3);
            let common = children(parts[0].1);
            assert_eq!(common[0].0, 0x0C);
            assert_eq!(common[1].0, 0x03);
            let unblocked_by = common.get(2).map(|(t, v)| {
                assert_eq!(*t, 0x04);
                v[0]
            });
            let auth = children(parts[1].1);
            assert_eq!((parts[1].0, auth[0].0), (0x30, 0x04));
            assert_eq!(parts[2].0, 0xA1, "[1] typeAttributes");
            let (t, attrs, rest) = der(parts[2].1);
            assert!(t == 0x30 && rest.is_empty());
            let a = children(attrs);
            let tags: Vec<u8> = a.iter().map(|(t, _)| *t).collect();
            assert_eq!(tags, [0x03, 0x0A, 0x02, 0x02, 0x02, 0x80, 0x04, 0x30]);
            let path = children(a[7].1);
            assert_eq!(path[0].0, 0x04);
            Pin {
                label: String::from_utf8(common[0].1.to_vec()).expect("UTF-8 label"),
                unblocked_by,
                auth_id: auth[0].1[0],
                flags: a[0].1.to_vec(),
                pin_type: a[1].1[0],
                min: int(a[2].1),
                stored: int(a[3].1),
                max: int(a[4].1),
                reference: int(a[5].1),
                pad: a[6].1[0],
                path: path[0].1.to_vec(),
            }
        })
        .collect()
}

/// Reads the current EF to its end, 16 bytes at a time.
fn read_all(c: &mut VirtualCard) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let off = out.len() as u16;
        let mut cmd = vec![0x00, 0xB0];
        cmd.extend_from_slice(&off.to_be_bytes());
        cmd.push(16);
        let r = c.process(&cmd);
        match sw(&r) {
            0x9000 => out.extend_from_slice(data(&r)),
            0x6282 => {
                out.extend_from_slice(data(&r));
                return out;
            }
            0x6B00 => return out,
            other => panic!("READ BINARY answered {other:04X}"),
        }
    }
}

#[test]
fn pkcs15_files_decode() {
    let f = pkcs15::encoded_files();
    // EF.DIR: one application template.
    let (t, template, rest) = der(&f.ef_dir);
    assert!(t == 0x61 && rest.is_empty());
    let t = children(template);
    assert_eq!(
        t[0],
        (0x4F, &hex("A0 00 00 00 63 50 4B 43 53 2D 31 35")[..])
    );
    assert_eq!(t[1], (0x50, pkcs15::LABEL.as_bytes()));
    assert_eq!(t[2], (0x51, &hex("3F00 5015")[..]));
    // EF.ODF: authObjects → the AODF's path.
    let (t, v, rest) = der(&f.odf);
    assert!(t == 0xA8 && rest.is_empty());
    let (t, path, _) = der(v);
    assert_eq!(t, 0x30);
    assert_eq!(der(path).1, &hex("3F00 5015 4401")[..]);
    // EF.TokenInfo: version 0, serial, manufacturer, label, flags.
    let (t, toki, _) = der(&f.token_info);
    assert_eq!(t, 0x30);
    let toki = children(toki);
    let tags: Vec<u8> = toki.iter().map(|(t, _)| *t).collect();
    assert_eq!(tags, [0x02, 0x04, 0x0C, 0x80, 0x03]);
    assert_eq!(toki[0].1, [0x00]);
    // The AODF.
    let pins = decode_aodf(&f.aodf);
    assert_eq!(
        pins,
        [
            Pin {
                label: "User PIN".into(),
                unblocked_by: Some(0x02),
                auth_id: 0x01,
                // local, initialized, needs-padding
                flags: vec![0x02, 0x4C],
                pin_type: 1,
                min: 4,
                stored: 8,
                max: 8,
                reference: 0x81,
                pad: 0xFF,
                path: hex("3F00 5015"),
            },
            Pin {
                label: "PUK".into(),
                unblocked_by: None,
                auth_id: 0x02,
                // local, initialized, needs-padding, unblockingPin
                flags: vec![0x01, 0x4E],
                pin_type: 1,
                min: 4,
                stored: 8,
                max: 8,
                reference: 0x82,
                pad: 0xFF,
                path: hex("3F00 5015"),
            },
        ]
    );
}

#[test]
fn pkcs15_reads_return_the_encoded_files() {
    let f = pkcs15::encoded_files();
    let mut c = card(Profile::Pkcs15);
    check_atr(&c.atr());
    // No current EF after the reset.
    assert_eq!(sw(&c.process(&hex("00 B0 00 00 10"))), 0x6986);
    // EF.DIR by FID from the MF, FCP with its size.
    let r = c.process(&hex("00 A4 00 04 02 2F 00 00"));
    assert_eq!(sw(&r), 0x9000);
    let (t, fcp, _) = der(data(&r));
    assert_eq!(t, 0x62);
    let fcp = children(fcp);
    assert_eq!(fcp[0], (0x80, &(f.ef_dir.len() as u16).to_be_bytes()[..]));
    assert_eq!(read_all(&mut c), f.ef_dir);
    // The application by AID, then the ODF by FID.
    let r = c.process(&hex("00 A4 04 0C 0C A0 00 00 00 63 50 4B 43 53 2D 31 35"));
    assert_eq!(r, hex("90 00"));
    assert_eq!(sw(&c.process(&hex("00 A4 02 0C 02 50 31"))), 0x9000);
    assert_eq!(read_all(&mut c), f.odf);
    // The AODF by path from the MF, with and without 3F00, and from the DF.
    for select in [
        "00 A4 08 0C 06 3F 00 50 15 44 01",
        "00 A4 08 0C 04 50 15 44 01",
        "00 A4 09 0C 02 44 01",
    ] {
        assert_eq!(sw(&c.process(&hex(select))), 0x9000, "{select}");
        assert_eq!(read_all(&mut c), f.aodf, "{select}");
    }
    assert_eq!(sw(&c.process(&hex("00 A4 00 0C 02 50 32"))), 0x9000);
    assert_eq!(read_all(&mut c), f.token_info);
    // One read of the whole file with the size from the FCP: 9000.
    let r = c.process(&hex("00 A4 08 04 04 50 15 44 01 00"));
    let size = u16::from_be_bytes([data(&r)[4], data(&r)[5]]);
    assert_eq!(usize::from(size), f.aodf.len());
    let r = c.process(&[0x00, 0xB0, 0x00, 0x00, size as u8]);
    assert_eq!((sw(&r), data(&r)), (0x9000, &f.aodf[..]));
    // Past the end; an unknown file; a bad P2.
    let past = f.aodf.len() as u16;
    let mut cmd = vec![0x00, 0xB0];
    cmd.extend_from_slice(&past.to_be_bytes());
    cmd.push(1);
    assert_eq!(sw(&c.process(&cmd)), 0x6B00);
    assert_eq!(sw(&c.process(&hex("00 A4 08 0C 04 50 15 44 02"))), 0x6A82);
    assert_eq!(sw(&c.process(&hex("00 A4 08 01 04 50 15 44 01"))), 0x6A86);
}

#[test]
fn pkcs15_pins_follow_the_aodf() {
    let mut c = card(Profile::Pkcs15);
    let verify = |p2: &str, pin: &str| apdu(&format!("00 20 00 {p2}"), &ff(pin, 8));
    // References 81/82 belong to DF 5015.
    assert_eq!(sw(&c.process(&verify("81", "123456"))), 0x6A88);
    c.process(&hex("00 A4 08 0C 02 50 15"));
    // Empty VERIFY: 63Cx, nothing spent (as OpenSC-created cards answer).
    assert_eq!(sw(&c.process(&hex("00 20 00 81"))), 0x63C3);
    assert_eq!(sw(&c.process(&hex("00 20 00 82"))), 0x63C3);
    // needs-padding: the stored length is 8.
    assert_eq!(sw(&c.process(&apdu("00 20 00 81", b"123456"))), 0x6700);
    assert_eq!(sw(&c.process(&verify("81", "123"))), 0x6A80);
    assert_eq!(c.tries("pin"), Some(3));
    assert_eq!(sw(&c.process(&verify("81", "000000"))), 0x63C2);
    assert_eq!(sw(&c.process(&verify("81", "123456"))), 0x9000);
    assert_eq!(sw(&c.process(&hex("00 20 00 81"))), 0x9000);
    // Reading a file in the DF keeps it; leaving the DF drops it.
    c.process(&hex("00 A4 02 0C 02 44 01"));
    assert_eq!(sw(&c.process(&hex("00 20 00 81"))), 0x9000);
    c.process(&hex("00 A4 00 0C 02 3F 00"));
    c.process(&hex("00 A4 04 0C 0C A0 00 00 00 63 50 4B 43 53 2D 31 35"));
    assert_eq!(sw(&c.process(&hex("00 20 00 81"))), 0x63C3);
    // Change, block, unblock with the PUK (P1=00, PUK ‖ new).
    let change = apdu("00 24 00 81", &cat(&[&ff("123456", 8), &ff("2468", 8)]));
    assert_eq!(sw(&c.process(&change)), 0x9000);
    for expect in [0x63C2, 0x63C1, 0x63C0, 0x6983] {
        assert_eq!(sw(&c.process(&verify("81", "0000"))), expect);
    }
    let rrc = |puk: &str| apdu("00 2C 00 81", &cat(&[&ff(puk, 8), &ff("1357", 8)]));
    assert_eq!(sw(&c.process(&rrc("00000000"))), 0x63C2);
    assert_eq!(c.tries("puk"), Some(2));
    assert_eq!(
        sw(&c.process(&apdu("00 2C 01 81", &ff("12345678", 8)))),
        0x6A86
    );
    assert_eq!(sw(&c.process(&rrc("12345678"))), 0x9000);
    assert_eq!((c.tries("pin"), c.tries("puk")), (Some(3), Some(3)));
    assert_eq!(sw(&c.process(&verify("81", "1357"))), 0x9000);
}

// -------------------------------------------------------------------- ISO

const ISO_SELECT: &str = "00 A4 04 00 09 F0 63 61 72 64 67 61 74 65";

#[test]
fn iso_card_plain() {
    let mut c = card(Profile::Iso);
    assert_eq!(c.atr(), hex("3B 89 80 01 80 57 63 67 2D 37 38 31 36 FE"));
    check_atr(&c.atr());
    assert_eq!(sw(&c.process(&hex("00 20 00 81"))), 0x6985);
    assert_eq!(
        c.process(&hex(ISO_SELECT)),
        hex("6F 0B 84 09 F0 63 61 72 64 67 61 74 65 90 00")
    );
    let verify = |pin: &str| apdu("00 20 00 81", &ff(pin, 8));
    // The empty VERIFY is free.
    for _ in 0..3 {
        assert_eq!(sw(&c.process(&hex("00 20 00 81"))), 0x63C3);
    }
    assert_eq!(sw(&c.process(&verify("9999"))), 0x63C2);
    assert_eq!(sw(&c.process(&verify("1234"))), 0x9000);
    assert_eq!(c.tries("pin"), Some(3));
    // P1=FF drops the verified state.
    assert_eq!(sw(&c.process(&hex("00 20 FF 81"))), 0x9000);
    assert_eq!(sw(&c.process(&hex("00 20 00 81"))), 0x63C3);
    // Unblock.
    for _ in 0..3 {
        c.process(&verify("0000"));
    }
    assert_eq!(sw(&c.process(&verify("1234"))), 0x6983);
    let rrc = apdu("00 2C 00 81", &cat(&[&ff("12345678", 8), &ff("4321", 8)]));
    assert_eq!(sw(&c.process(&rrc)), 0x9000);
    assert_eq!(sw(&c.process(&verify("4321"))), 0x9000);
    assert_eq!(sw(&c.process(&hex("00 84 00 00 08"))), 0x6D00);
}

#[test]
fn iso_hostile_card_quirks() {
    let config = CardConfig::from_toml_str(
        "profile = \"iso\"\nquirks = [\"empty_verify_counts\", \"wrong_verify_6300\"]\n\
         atr = \"3B 88 80 01 00 00 00 00 00 00 00 00 09\"\nmax_tries = 5\n",
    )
    .expect("valid");
    assert!(config.has_quirk(Quirk::EmptyVerifySpendsTry));
    assert!(config.has_quirk(Quirk::WrongVerify6300));
    let mut c = VirtualCard::new(config);
    assert_eq!(c.atr(), hex("3B 88 80 01 00 00 00 00 00 00 00 00 09"));
    c.process(&hex("00 A4 04 0C 09 F0 63 61 72 64 67 61 74 65"));
    // An empty VERIFY is a wrong presentation: a try spent, no count said.
    assert_eq!(c.process(&hex("00 20 00 81")), hex("63 00"));
    assert_eq!(c.tries("pin"), Some(4));
    // A wrong value: 6300, still spending.
    assert_eq!(
        c.process(&apdu("00 20 00 81", &ff("0000", 8))),
        hex("63 00")
    );
    assert_eq!(c.tries("pin"), Some(3));
    assert_eq!(sw(&c.process(&apdu("00 20 00 81", &ff("1234", 8)))), 0x9000);
    assert_eq!(c.tries("pin"), Some(5));
    // Even right after a success, the empty VERIFY spends.
    assert_eq!(c.process(&hex("00 20 00 81")), hex("63 00"));
    assert_eq!(c.tries("pin"), Some(4));
    for _ in 0..4 {
        assert_eq!(
            c.process(&apdu("00 20 00 81", &ff("0000", 8))),
            hex("63 00")
        );
    }
    assert_eq!(c.tries("pin"), Some(0));
    assert_eq!(sw(&c.process(&apdu("00 20 00 81", &ff("1234", 8)))), 0x6983);
    assert_eq!(sw(&c.process(&hex("00 20 00 81"))), 0x6983);
    assert_eq!(c.tries("pin"), Some(0));
}

#[test]
fn wrong_verify_6300_on_other_profiles() {
    let mut piv = VirtualCard::new(CardConfig::piv().with_quirk(Quirk::WrongVerify6300));
    piv.process(&hex("00 A4 04 00 05 A0 00 00 03 08"));
    assert_eq!(
        piv.process(&apdu("00 20 00 80", &ff("000000", 8))),
        hex("63 00")
    );
    assert_eq!(piv.tries("pin"), Some(2));
    let mut pgp = VirtualCard::new(CardConfig::openpgp().with_quirk(Quirk::WrongVerify6300));
    pgp.process(&hex(PGP_SELECT));
    assert_eq!(pgp.process(&apdu("00 20 00 81", b"000000")), hex("63 00"));
    assert_eq!(pgp.tries("pw1"), Some(2));
    let mut est = VirtualCard::new(
        CardConfig::for_profile(Profile::EstEid).with_quirk(Quirk::WrongVerify6300),
    );
    assert_eq!(
        est.process(&apdu("00 20 00 01", &ff("0000", 12))),
        hex("63 00")
    );
    assert_eq!(est.tries("pin1"), Some(2));
}

// ---------------------------------------------------------------- Common

#[test]
fn every_profile_honours_max_tries_start_blocked_and_atr() {
    for profile in Profile::ALL {
        let mut c = VirtualCard::new(CardConfig {
            max_tries: 7,
            ..CardConfig::for_profile(profile)
        });
        for name in c.counter_names() {
            let expected = if name.ends_with("rc") { 0 } else { 7 };
            assert_eq!(c.tries(name), Some(expected), "{profile:?} {name}");
        }
        check_atr(&c.atr());
        let blocked = VirtualCard::new(CardConfig {
            start_blocked: true,
            ..CardConfig::for_profile(profile)
        });
        assert_eq!(blocked.user_pin_tries(), 0, "{profile:?}");
        let atr = hex("3B 02 14 50");
        let c = VirtualCard::new(CardConfig {
            atr: Some(atr.clone()),
            ..CardConfig::for_profile(profile)
        });
        assert_eq!(c.atr(), atr, "{profile:?}");
    }
    // The default ATRs are all different.
    let mut atrs: Vec<Vec<u8>> = Profile::ALL.iter().map(|p| card(*p).atr()).collect();
    atrs.sort();
    atrs.dedup();
    assert_eq!(atrs.len(), Profile::ALL.len());
    assert!(CardConfig::from_toml_str("profile = \"iso\"\natr = \"3B0\"").is_err());
    assert!(CardConfig::from_toml_str("profile = \"iso\"\natr = \"00 11\"").is_err());
}

#[test]
fn counters_survive_a_restart_on_multi_application_cards() {
    let mut c = card(Profile::YubiKey);
    c.process(&hex(PGP_SELECT));
    c.process(&apdu("00 20 00 83", b"00000000"));
    let saved = c.counters();
    assert_eq!(
        saved,
        "piv.pin 3 0\npiv.puk 3 0\nopenpgp.pw1 3 0\nopenpgp.pw3 2 1\nopenpgp.rc 0 0\n"
    );
    let mut again = card(Profile::YubiKey);
    again.restore_counters(&saved);
    assert_eq!(again.tries("openpgp.pw3"), Some(2));
    assert_eq!(again.tries("piv.pin"), Some(3));
}

#[test]
fn profiles_by_name() {
    for (name, profile) in [
        ("yubikey", Profile::YubiKey),
        ("esteid", Profile::EstEid),
        ("beid", Profile::Beid),
        ("pkcs15", Profile::Pkcs15),
        ("iso", Profile::Iso),
    ] {
        let c = CardConfig::from_toml_str(&format!("profile = \"{name}\"\n")).expect(name);
        assert_eq!(c.profile, profile);
        assert!(c.validate().is_ok());
    }
}
