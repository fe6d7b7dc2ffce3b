//! Every command APDU the product sends, one function each, with the
//! specification section it follows.
//!
//! References:
//! - ISO/IEC 7816-4:2020 (basic interindustry commands)
//! - NIST SP 800-73-4 Part 2 (PIV card command interface)
//! - OpenPGP Card specification 3.4 ("OpenPGP 3.4")
//!
//! PIN values are copied straight into the command's zeroizing buffer.

use super::Command;
use crate::secret::Secret;

/// PIV application identifier (SP 800-73-4 Part 1 §2.2), without version bytes.
pub const PIV_AID: [u8; 5] = [0xA0, 0x00, 0x00, 0x03, 0x08];
/// OpenPGP application identifier prefix (OpenPGP 3.4 §4.2.1): RID + PIX application id.
pub const OPENPGP_AID: [u8; 6] = [0xD2, 0x76, 0x00, 0x01, 0x24, 0x01];

/// PIV key reference of the PIV Card Application PIN (SP 800-73-4 Part 1
/// §3.1, Table 4).
pub const PIV_PIN_REF: u8 = 0x80;
/// PIV key reference of the PIN Unblocking Key, PUK (same table).
pub const PIV_PUK_REF: u8 = 0x81;
/// Length every PIV PIN/PUK is sent with (SP 800-73-4 Part 2 §2.4.3).
pub const PIV_PIN_BLOCK_LEN: usize = 8;

/// OpenPGP password reference of PW1 for PSO:CDS, signing (OpenPGP 3.4
/// §7.2.2).
pub const OPENPGP_PW1_SIGN: u8 = 0x81;
/// OpenPGP password reference of PW1 for the other commands (decipher,
/// authenticate) (OpenPGP 3.4 §7.2.2).
pub const OPENPGP_PW1_OTHER: u8 = 0x82;
/// OpenPGP password reference of PW3, the admin PIN (OpenPGP 3.4 §7.2.2).
pub const OPENPGP_PW3: u8 = 0x83;
/// OpenPGP data object "PW status bytes" (OpenPGP 3.4 §4.4.1, tag C4).
pub const OPENPGP_DO_PW_STATUS: u16 = 0x00C4;
/// OpenPGP "Application Related Data" (OpenPGP 3.4 §4.4.1, tag 6E).
pub const OPENPGP_DO_APP_DATA: u16 = 0x006E;

/// GET RESPONSE (ISO 7816-4 §11.5.4 / 7816-3 T=0 procedure). `cla_channel`
/// keeps the logical channel bits of the command being continued.
pub fn get_response(cla_channel: u8, le: usize) -> Command {
    Command::new(cla_channel, 0xC0, 0x00, 0x00).with_le(le)
}

/// SELECT by DF name, first or only occurrence, return FCI (ISO 7816-4 §11.2.2;
/// SP 800-73-4 Part 2 §3.1.1; OpenPGP 3.4 §7.2.1).
pub fn select_aid(aid: &[u8]) -> Command {
    Command::new(0x00, 0xA4, 0x04, 0x00)
        .with_data(aid.to_vec())
        .with_le(256)
}

/// VERIFY with the reference data (ISO 7816-4 §11.6.6).
pub fn verify(reference: u8, value: &[u8]) -> Command {
    Command::new(0x00, 0x20, 0x00, reference).with_data(value.to_vec())
}

/// VERIFY without data: asks for the verification status without
/// presenting a value (ISO 7816-4 §11.6.6 "absent data field";
/// SP 800-73-4 Part 2 §3.2.1; OpenPGP 3.4 §7.2.2).
pub fn verify_status(reference: u8) -> Command {
    Command::new(0x00, 0x20, 0x00, reference)
}

/// VERIFY with P1=FF: resets the security status of the reference, i.e.
/// logs out (SP 800-73-4 Part 2 §3.2.1; OpenPGP 3.4 §7.2.2).
pub fn verify_reset(reference: u8) -> Command {
    Command::new(0x00, 0x20, 0xFF, reference)
}

/// CHANGE REFERENCE DATA with old and new value (ISO 7816-4 §11.6.7,
/// P1=00; SP 800-73-4 Part 2 §3.2.2; OpenPGP 3.4 §7.2.3).
pub fn change_reference_data(reference: u8, old: &[u8], new: &[u8]) -> Command {
    let mut data = Vec::with_capacity(old.len() + new.len());
    data.extend_from_slice(old);
    data.extend_from_slice(new);
    Command::new(0x00, 0x24, 0x00, reference).with_data(data)
}

/// RESET RETRY COUNTER with resetting code and new value, P1=00
/// (ISO 7816-4 §11.6.10; SP 800-73-4 Part 2 §3.2.3 with the PUK;
/// OpenPGP 3.4 §7.2.4 with the reset code RC).
pub fn reset_retry_counter(reference: u8, resetting_code: &[u8], new: &[u8]) -> Command {
    let mut data = Vec::with_capacity(resetting_code.len() + new.len());
    data.extend_from_slice(resetting_code);
    data.extend_from_slice(new);
    Command::new(0x00, 0x2C, 0x00, reference).with_data(data)
}

/// RESET RETRY COUNTER with the new value only, P1=02: the security officer
/// has been verified beforehand (ISO 7816-4 §11.6.10; OpenPGP 3.4 §7.2.4
/// after PW3 verification).
pub fn reset_retry_counter_after_so(reference: u8, new: &[u8]) -> Command {
    Command::new(0x00, 0x2C, 0x02, reference).with_data(new.to_vec())
}

/// GET DATA for a simple tag (ISO 7816-4 §11.4.3; OpenPGP 3.4 §7.2.6).
pub fn get_data(tag: u16) -> Command {
    Command::new(0x00, 0xCA, (tag >> 8) as u8, tag as u8).with_le(256)
}

/// Encodes a PIV PIN or PUK: ASCII, padded with FF to 8 bytes
/// (SP 800-73-4 Part 2 §2.4.3). The caller has checked the length.
pub fn piv_pin_block(value: &Secret) -> Vec<u8> {
    let mut block = value.expose().to_vec();
    block.resize(PIV_PIN_BLOCK_LEN.max(block.len()), 0xFF);
    block
}

/// Instructions a card profile may name for reading a counter: they read,
/// never check a value. GET DATA (CA, CB: ISO 7816-4 §11.4.3), READ
/// BINARY (B0, B1: §11.3.3), READ RECORD (B2, B3: §11.3.5), Yubico's GET
/// METADATA (F7) and the Belgian eID's GET CARD DATA (E4).
pub const READ_ONLY_INS: [u8; 8] = [0xCA, 0xCB, 0xB0, 0xB1, 0xB2, 0xB3, 0xF7, 0xE4];

/// A read-only query a card profile names (`tries` with `source =
/// "query"`), as a short command APDU (ISO 7816-4 §5.1: cases 1 to 4).
/// Anything but a reading instruction ([`READ_ONLY_INS`]) is refused, so a
/// profile cannot make the daemon send a VERIFY.
pub fn read_only_query(apdu: &[u8]) -> Result<Command, String> {
    let [cla, ins, p1, p2, body @ ..] = apdu else {
        return Err("an APDU has at least 4 bytes".into());
    };
    if !READ_ONLY_INS.contains(ins) {
        return Err(format!(
            "instruction {ins:02X} is not a reading instruction ({})",
            READ_ONLY_INS.map(|i| format!("{i:02X}")).join(", ")
        ));
    }
    if cla & 0x80 != 0 && *ins != 0xE4 {
        return Err("a proprietary class is allowed only with E4".into());
    }
    let cmd = Command::new(*cla, *ins, *p1, *p2);
    let le = |b: u8| if b == 0 { 256 } else { usize::from(b) };
    Ok(match body {
        [] => cmd,
        [n] => cmd.with_le(le(*n)),
        [lc, rest @ ..] if usize::from(*lc) == rest.len() && *lc > 0 => {
            cmd.with_data(rest.to_vec())
        }
        [lc, rest @ ..] if usize::from(*lc) + 1 == rest.len() && *lc > 0 => {
            let (data, last) = rest.split_at(rest.len() - 1);
            cmd.with_data(data.to_vec()).with_le(le(last[0]))
        }
        _ => return Err("Lc does not match the data".into()),
    })
}

/// SELECT by file identifier, P1=00 (select MF, DF or EF: the card
/// resolves the identifier from the current DF), P2=0C (no response
/// data) (ISO 7816-4 §11.2.2).
///
/// Some cards refuse P2=0C with 6A86; the caller may retry the same
/// selection with [`select_with_fci`].
pub fn select_file_id(fid: u16) -> Command {
    Command::new(0x00, 0xA4, 0x00, 0x0C).with_data(fid.to_be_bytes().to_vec())
}

/// SELECT an EF under the current DF by file identifier, P1=02, P2=0C
/// (no response data) (ISO 7816-4 §11.2.2).
pub fn select_ef(fid: u16) -> Command {
    Command::new(0x00, 0xA4, 0x02, 0x0C).with_data(fid.to_be_bytes().to_vec())
}

/// SELECT by path from the MF, P1=08: `path` is the concatenation of
/// file identifiers without the MF's own 3F00, P2=0C (no response data)
/// (ISO 7816-4 §11.2.2).
pub fn select_path_from_mf(path: &[u8]) -> Command {
    Command::new(0x00, 0xA4, 0x08, 0x0C).with_data(path.to_vec())
}

/// The same SELECT asking for the FCI template (P2=00) with Le=256
/// instead of no response data (ISO 7816-4 §11.2.2): the
/// fallback for cards that answer 6A86 to P2=0C.
pub fn select_with_fci(select: Command) -> Command {
    let mut c = select;
    c.p2 = 0x00;
    c.with_le(256)
}

/// READ BINARY at `offset` in the current EF, P1 bit 8 = 0 so P1-P2
/// is a 15-bit offset (ISO 7816-4 §11.3.3); `le` bytes asked for (256
/// is the short-length maximum, encoded 00). Offsets above 7FFF are
/// clamped: the caller bounds its reads well below.
pub fn read_binary(offset: u16, le: usize) -> Command {
    let offset = offset.min(0x7FFF);
    Command::new(0x00, 0xB0, (offset >> 8) as u8, offset as u8).with_le(le)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(c: Command) -> String {
        c.to_bytes()
            .unwrap()
            .iter()
            .map(|x| format!("{x:02X}"))
            .collect()
    }

    #[test]
    fn builds_piv_commands() {
        assert_eq!(hex(select_aid(&PIV_AID)), "00A4040005A00000030800");
        let pin = piv_pin_block(&Secret::from("123456"));
        assert_eq!(hex(verify(PIV_PIN_REF, &pin)), "0020008008313233343536FFFF");
        assert_eq!(hex(verify_status(PIV_PIN_REF)), "00200080");
        assert_eq!(hex(verify_reset(PIV_PIN_REF)), "0020FF80");
        let puk = piv_pin_block(&Secret::from("12345678"));
        assert_eq!(
            hex(reset_retry_counter(PIV_PIN_REF, &puk, &pin)),
            "002C0080103132333435363738313233343536FFFF"
        );
    }

    #[test]
    fn profile_queries_are_read_only() {
        assert_eq!(
            hex(read_only_query(&[0, 0xF7, 0, 0x80]).unwrap()),
            "00F70080"
        );
        assert_eq!(
            hex(read_only_query(&[0, 0xCB, 0x3F, 0xFF, 2, 0x4D, 0x00, 0x00]).unwrap()),
            "00CB3FFF024D0000"
        );
        for bad in [
            &[0x00, 0x20, 0x00, 0x81][..],
            &[0x00, 0x24, 0x00, 0x81, 0x00][..],
            &[0x00, 0x2C, 0x00, 0x81][..],
            &[0x80, 0xCA, 0x00, 0x81][..],
            &[0x00, 0xCA, 0x00][..],
            &[0x00, 0xCA, 0x00, 0x01, 0x05, 0x01][..],
        ] {
            assert!(read_only_query(bad).is_err(), "{bad:02X?}");
        }
    }

    #[test]
    fn builds_openpgp_commands() {
        assert_eq!(hex(get_data(OPENPGP_DO_PW_STATUS)), "00CA00C400");
        assert_eq!(hex(get_data(OPENPGP_DO_APP_DATA)), "00CA006E00");
        assert_eq!(
            hex(reset_retry_counter_after_so(OPENPGP_PW1_SIGN, b"654321")),
            "002C028106363534333231"
        );
        assert_eq!(
            hex(change_reference_data(OPENPGP_PW3, b"12345678", b"87654321")),
            "002400831031323334353637383837363534333231"
        );
    }

    #[test]
    fn builds_file_commands() {
        assert_eq!(hex(select_file_id(0x2F00)), "00A4000C022F00");
        assert_eq!(hex(select_ef(0x5031)), "00A4020C025031");
        assert_eq!(hex(select_path_from_mf(&[0x50, 0x15])), "00A4080C025015");
        assert_eq!(
            hex(select_path_from_mf(&[0x50, 0x15, 0x44, 0x01])),
            "00A4080C0450154401"
        );
        assert_eq!(
            hex(select_with_fci(select_path_from_mf(&[0x50, 0x15]))),
            "00A4080002501500"
        );
        assert_eq!(hex(read_binary(0, 256)), "00B0000000");
        assert_eq!(hex(read_binary(0x0100, 256)), "00B0010000");
        assert_eq!(hex(read_binary(0x1234, 0x20)), "00B0123420");
        assert_eq!(hex(read_binary(0xFFFF, 1)), "00B07FFF01");
    }
}
