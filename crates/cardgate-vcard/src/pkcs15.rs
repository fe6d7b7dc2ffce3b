//! A generic PKCS#15 card (PKCS #15 v1.1, ISO/IEC 7816-15) laid out as
//! OpenSC's pkcs15-init creates one, with the PIN part only: no keys and
//! no certificates, an AODF with a user PIN and its PUK.
//!
//! Files (ISO/IEC 7816-4 §7; PKCS #15 v1.1 §5.4–5.5):
//!
//! | path | file | content |
//! |---|---|---|
//! | 3F00 | MF | |
//! | 3F00/2F00 | EF.DIR | one application template `61 { 4F AID, 50 label, 51 path 3F005015 }` (ISO/IEC 7816-4 §8.2.1.1, PKCS #15 §5.4.1) |
//! | 3F00/5015 | DF.PKCS15 | AID A0 00 00 00 63 "PKCS-15" (PKCS #15 §5.4.2) |
//! | 3F00/5015/5031 | EF.ODF | `A8 { 30 { 04 3F0050154401 } }`: authObjects → the AODF (§6.2) |
//! | 3F00/5015/5032 | EF.TokenInfo | version 0, serial, manufacturer "cardgate", label, loginRequired (§6.9) |
//! | 3F00/5015/4401 | EF.AODF | two `pin` AuthenticationObjects (§6.8.1–6.8.3), below |
//!
//! The AODF, in DER (PKCS #15 v1.1 §6.8, OpenSC's `c_asn1_pin_attr`):
//! - "User PIN": commonObjectAttributes { label, flags private+modifiable,
//!   authId 02 — by the specification's convention, the authentication
//!   object that unblocks it }, commonAuthenticationObjectAttributes
//!   { authId 01 }, `[1]` PinAttributes { pinFlags local, initialized,
//!   needs-padding; pinType ascii-numeric (1); minLength 4; storedLength 8;
//!   maxLength 8; pinReference `[0]` 0x81 (`80 02 00 81`: DER keeps the
//!   INTEGER positive); padChar FF; path 3F005015 }.
//! - "PUK": commonObjectAttributes { label, flags private+modifiable },
//!   { authId 02 }, `[1]` PinAttributes { pinFlags local, initialized,
//!   needs-padding, unblockingPin; ascii-numeric; 4; 8; 8; reference 0x82;
//!   FF; 3F005015 }.
//!
//! References 81 and 82 are specific to DF.PKCS15 (ISO/IEC 7816-4 §7.5.1,
//! b8 set): VERIFY, CHANGE REFERENCE DATA and RESET RETRY COUNTER answer
//! 6A88 while another DF is the current one, and leaving DF.PKCS15 drops
//! their verified states. Their formats and answers are the `iso` card's
//! (see `iso`): 8-byte blocks of 4–8 ASCII digits padded with FF, an empty
//! VERIFY is a free status query (cards OpenSC creates answer 63Cx),
//! RESET RETRY COUNTER P1=00 takes PUK ‖ new PIN.
//!
//! SELECT FILE (ISO/IEC 7816-4 §11.2.2): P1=00 by file identifier (the MF,
//! the current DF, a file in it, or a file in its parent), 01 child DF, 02
//! EF in the current DF, 04 by DF name (the PKCS#15 AID), 08 path from the
//! MF (with or without 3F00 first), 09 path from the current DF; P2=0C
//! answers nothing, 04 and 00 answer the FCP template `62 { 80 size, 82
//! descriptor, 83 identifier, 84 DF name }`. After a reset the MF is the
//! current DF. READ BINARY (§11.3.3): offset in P1P2 (P1 b8 clear),
//! 6986 with no current EF, 6B00 at or past its end, 6282 when fewer than
//! Ne bytes remain.

use crate::apdu::StatusWord;

use super::command::Apdu;
use super::config::{CardConfig, PKCS15_DEFAULT_PIN, PKCS15_DEFAULT_PUK};
use super::iso::{BLOCK_LEN, INS_SELECT, MIN_DIGITS, PIN_REF, PUK_REF, PinPuk};
use super::pin::RefData;
use super::{Reply, tlv};

/// The PKCS#15 application identifier (PKCS #15 v1.1 §5.4.2).
pub const AID: [u8; 12] = [
    0xA0, 0x00, 0x00, 0x00, 0x63, b'P', b'K', b'C', b'S', b'-', b'1', b'5',
];
/// File identifier of the MF.
pub const MF: u16 = 0x3F00;
/// File identifier of EF.DIR, in the MF.
pub const EF_DIR: u16 = 0x2F00;
/// File identifier of DF.PKCS15, in the MF.
pub const APP_DF: u16 = 0x5015;
/// File identifier of EF.ODF, in DF.PKCS15.
pub const EF_ODF: u16 = 0x5031;
/// File identifier of EF.TokenInfo, in DF.PKCS15.
pub const EF_TOKEN_INFO: u16 = 0x5032;
/// File identifier of the AODF, in DF.PKCS15.
pub const EF_AODF: u16 = 0x4401;
/// Label of the application in EF.DIR and EF.TokenInfo.
pub const LABEL: &str = "cardgate PKCS#15";
/// authId of the user PIN.
pub const USER_PIN_AUTH_ID: u8 = 0x01;
/// authId of the PUK.
pub const PUK_AUTH_ID: u8 = 0x02;
/// Reference (VERIFY P2) of the user PIN, as in its PinAttributes.
pub const USER_PIN_REF: u8 = PIN_REF;
/// Reference of the PUK, as in its PinAttributes.
pub const PUK_REFERENCE: u8 = PUK_REF;
/// Serial number in EF.TokenInfo.
pub const SERIAL: [u8; 8] = [0x43, 0x47, 0x00, 0x00, 0x00, 0x00, 0x15, 0x01];

/// The encoded content of every EF of the PKCS#15 card: what READ BINARY
/// returns, for a parser's unit tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pkcs15Files {
    /// EF.DIR (3F00/2F00).
    pub ef_dir: Vec<u8>,
    /// EF.ODF (3F00/5015/5031).
    pub odf: Vec<u8>,
    /// EF.TokenInfo (3F00/5015/5032).
    pub token_info: Vec<u8>,
    /// EF.AODF (3F00/5015/4401).
    pub aodf: Vec<u8>,
}

/// The files of the PKCS#15 card, DER-encoded (they do not depend on the
/// card's configuration: PIN values and tries are not in them).
pub fn encoded_files() -> Pkcs15Files {
    let app_path = [0x3F, 0x00, 0x50, 0x15];

    // EF.DIR: one application template (ISO/IEC 7816-4 §8.2.1.1).
    let mut template = Vec::new();
    tlv(&mut template, &[0x4F], &AID);
    tlv(&mut template, &[0x50], LABEL.as_bytes());
    tlv(&mut template, &[0x51], &app_path);
    let mut ef_dir = Vec::new();
    tlv(&mut ef_dir, &[0x61], &template);

    // EF.ODF: authObjects `[8]` PKCS15ObjectsPath → Path { path }.
    let mut aodf_path = app_path.to_vec();
    aodf_path.extend_from_slice(&EF_AODF.to_be_bytes());
    let odf = tagged(0xA8, &path(&aodf_path));

    // EF.TokenInfo (PKCS #15 v1.1 §6.9).
    let mut toki = Vec::new();
    tlv(&mut toki, &[0x02], &[0x00]); // version v1(0)
    tlv(&mut toki, &[0x04], &SERIAL);
    tlv(&mut toki, &[0x0C], b"cardgate"); // manufacturerID
    tlv(&mut toki, &[0x80], LABEL.as_bytes()); // label [0]
    tlv(&mut toki, &[0x03], &bit_string(&[1])); // tokenflags: loginRequired
    let token_info = tagged(0x30, &toki);

    // EF.AODF (PKCS #15 v1.1 §6.8).
    let mut aodf = pin_object(&PinObject {
        label: "User PIN",
        unblocked_by: Some(PUK_AUTH_ID),
        auth_id: USER_PIN_AUTH_ID,
        // local(1), initialized(4), needs-padding(5)
        flags: &[1, 4, 5],
        reference: USER_PIN_REF,
        path: &app_path,
    });
    aodf.extend(pin_object(&PinObject {
        label: "PUK",
        unblocked_by: None,
        auth_id: PUK_AUTH_ID,
        // local(1), initialized(4), needs-padding(5), unblockingPin(6)
        flags: &[1, 4, 5, 6],
        reference: PUK_REFERENCE,
        path: &app_path,
    }));

    Pkcs15Files {
        ef_dir,
        odf,
        token_info,
        aodf,
    }
}

struct PinObject<'a> {
    label: &'a str,
    /// commonObjectAttributes.authId: the object that unblocks this one.
    unblocked_by: Option<u8>,
    auth_id: u8,
    /// PinFlags bits set (PKCS #15 v1.1 §6.8.3).
    flags: &'a [usize],
    reference: u8,
    path: &'a [u8],
}

/// An AuthenticationObject of the `pin` choice: PKCS15Object {
/// CommonObjectAttributes, CommonAuthenticationObjectAttributes, `[1]`
/// PinAttributes }.
fn pin_object(o: &PinObject<'_>) -> Vec<u8> {
    let mut common = Vec::new();
    tlv(&mut common, &[0x0C], o.label.as_bytes());
    // CommonObjectFlags: private(0), modifiable(1).
    tlv(&mut common, &[0x03], &bit_string(&[0, 1]));
    if let Some(id) = o.unblocked_by {
        tlv(&mut common, &[0x04], &[id]);
    }
    let mut auth = Vec::new();
    tlv(&mut auth, &[0x04], &[o.auth_id]);

    let mut attrs = Vec::new();
    tlv(&mut attrs, &[0x03], &bit_string(o.flags));
    tlv(&mut attrs, &[0x0A], &[0x01]); // pinType ascii-numeric
    tlv(&mut attrs, &[0x02], &der_uint(MIN_DIGITS as u32)); // minLength
    tlv(&mut attrs, &[0x02], &der_uint(BLOCK_LEN as u32)); // storedLength
    tlv(&mut attrs, &[0x02], &der_uint(BLOCK_LEN as u32)); // maxLength
    tlv(&mut attrs, &[0x80], &der_uint(u32::from(o.reference))); // pinReference [0]
    tlv(&mut attrs, &[0x04], &[0xFF]); // padChar
    attrs.extend(path(o.path));

    let mut object = tagged(0x30, &common);
    object.extend(tagged(0x30, &auth));
    object.extend(tagged(0xA1, &tagged(0x30, &attrs)));
    tagged(0x30, &object)
}

/// Path ::= SEQUENCE { path OCTET STRING } (PKCS #15 v1.1 §6.1.5).
fn path(p: &[u8]) -> Vec<u8> {
    let mut inner = Vec::new();
    tlv(&mut inner, &[0x04], p);
    tagged(0x30, &inner)
}

fn tagged(tag: u8, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    tlv(&mut out, &[tag], value);
    out
}

/// The contents of a DER BIT STRING with the named bits set: the count of
/// unused bits, then the bits from bit 0 (the first byte's high bit); no
/// trailing zero bits (X.690 §11.2.2).
fn bit_string(bits: &[usize]) -> Vec<u8> {
    let Some(&last) = bits.iter().max() else {
        return vec![0x00];
    };
    let mut out = vec![0u8; last / 8 + 2];
    out[0] = (7 - last % 8) as u8;
    for &b in bits {
        out[1 + b / 8] |= 0x80 >> (b % 8);
    }
    out
}

/// The contents of a DER INTEGER holding `n` (a leading 00 keeps it
/// positive).
fn der_uint(n: u32) -> Vec<u8> {
    let bytes = n.to_be_bytes();
    let skip = bytes.iter().take_while(|&&b| b == 0).count().min(3);
    let mut out = bytes[skip..].to_vec();
    if out[0] & 0x80 != 0 {
        out.insert(0, 0x00);
    }
    out
}

const INS_READ_BINARY: u8 = 0xB0;
/// 6986: command not allowed (no current EF).
const SW_NO_CURRENT_EF: StatusWord = StatusWord::Other(0x6986);
/// 6B00: wrong parameters P1-P2 (offset outside the EF).
const SW_OFFSET_OUTSIDE: StatusWord = StatusWord::Other(0x6B00);
/// 6282: end of file reached before reading Ne bytes.
const SW_END_OF_FILE: StatusWord = StatusWord::Other(0x6282);

/// A file of the card.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum File {
    Mf,
    App,
    Dir,
    Odf,
    TokenInfo,
    Aodf,
}

impl File {
    const ALL: [File; 6] = [
        File::Mf,
        File::App,
        File::Dir,
        File::Odf,
        File::TokenInfo,
        File::Aodf,
    ];

    fn fid(self) -> u16 {
        match self {
            File::Mf => MF,
            File::App => APP_DF,
            File::Dir => EF_DIR,
            File::Odf => EF_ODF,
            File::TokenInfo => EF_TOKEN_INFO,
            File::Aodf => EF_AODF,
        }
    }

    fn is_df(self) -> bool {
        matches!(self, File::Mf | File::App)
    }

    /// The DF holding this file (the MF holds itself).
    fn parent(self) -> File {
        match self {
            File::Mf | File::App | File::Dir => File::Mf,
            File::Odf | File::TokenInfo | File::Aodf => File::App,
        }
    }

    /// The file `fid` directly in this DF.
    fn child(self, fid: u16) -> Option<File> {
        File::ALL
            .into_iter()
            .find(|f| *f != File::Mf && f.parent() == self && f.fid() == fid)
    }
}

/// The PKCS#15 card.
pub(crate) struct Pkcs15 {
    refs: PinPuk,
    files: Pkcs15Files,
    current_df: File,
    current_ef: Option<File>,
}

impl Pkcs15 {
    pub(crate) fn new(config: &CardConfig) -> Self {
        Pkcs15 {
            refs: PinPuk::new(config, PKCS15_DEFAULT_PIN, PKCS15_DEFAULT_PUK),
            files: encoded_files(),
            current_df: File::Mf,
            current_ef: None,
        }
    }

    pub(crate) fn user_tries(&self) -> u8 {
        self.refs.pin.data.tries()
    }

    pub(crate) fn counters_mut(&mut self) -> [(&'static str, &mut RefData); 2] {
        self.refs.counters_mut()
    }

    pub(crate) fn reset(&mut self) {
        self.current_df = File::Mf;
        self.current_ef = None;
        self.refs.logout();
    }

    pub(crate) fn process(&mut self, cmd: &Apdu) -> Reply {
        if cmd.cla != 0 {
            return Reply::sw(StatusWord::ClaNotSupported);
        }
        match cmd.ins {
            INS_SELECT => self.select(cmd),
            INS_READ_BINARY => self.read_binary(cmd),
            _ => {
                if !matches!(
                    cmd.ins,
                    super::iso::INS_VERIFY
                        | super::iso::INS_CHANGE_REFERENCE_DATA
                        | super::iso::INS_RESET_RETRY_COUNTER
                ) {
                    return Reply::sw(StatusWord::InsNotSupported);
                }
                if self.current_df != File::App {
                    return Reply::sw(StatusWord::RefNotFound);
                }
                self.refs
                    .process(cmd)
                    .unwrap_or(Reply::sw(StatusWord::InsNotSupported))
            }
        }
    }

    fn content(&self, file: File) -> &[u8] {
        match file {
            File::Dir => &self.files.ef_dir,
            File::Odf => &self.files.odf,
            File::TokenInfo => &self.files.token_info,
            File::Aodf => &self.files.aodf,
            File::Mf | File::App => &[],
        }
    }

    /// SELECT FILE (ISO/IEC 7816-4 §11.2.2).
    fn select(&mut self, cmd: &Apdu) -> Reply {
        if !matches!(cmd.p2, 0x00 | 0x04 | 0x0C) {
            return Reply::sw(StatusWord::WrongP1P2);
        }
        let data = cmd.data.as_slice();
        let fids = |bytes: &[u8]| -> Option<Vec<u16>> {
            (!bytes.is_empty() && bytes.len().is_multiple_of(2)).then(|| {
                bytes
                    .chunks(2)
                    .map(|c| u16::from_be_bytes([c[0], c[1]]))
                    .collect()
            })
        };
        let found = match cmd.p1 {
            0x00 => match data {
                [] => Some(File::Mf),
                [a, b] => self.by_fid(u16::from_be_bytes([*a, *b])),
                _ => return Reply::sw(StatusWord::WrongLength),
            },
            0x01 | 0x02 => match data {
                [a, b] => self
                    .current_df
                    .child(u16::from_be_bytes([*a, *b]))
                    .filter(|f| f.is_df() == (cmd.p1 == 0x01)),
                _ => return Reply::sw(StatusWord::WrongLength),
            },
            0x04 => (data == AID).then_some(File::App),
            0x08 | 0x09 => {
                let Some(mut path) = fids(data) else {
                    return Reply::sw(StatusWord::WrongLength);
                };
                let mut at = if cmd.p1 == 0x08 {
                    if path.first() == Some(&MF) {
                        path.remove(0);
                    }
                    File::Mf
                } else {
                    self.current_df
                };
                let mut ok = true;
                for fid in path {
                    match at.child(fid).filter(|_| at.is_df()) {
                        Some(f) => at = f,
                        None => ok = false,
                    }
                }
                ok.then_some(at)
            }
            _ => return Reply::sw(StatusWord::WrongP1P2),
        };
        let Some(file) = found else {
            return Reply::sw(StatusWord::FileNotFound);
        };
        let df = if file.is_df() { file } else { file.parent() };
        if df != File::App {
            // Leaving DF.PKCS15 loses the security status of its references.
            self.refs.logout();
        }
        self.current_df = df;
        self.current_ef = (!file.is_df()).then_some(file);
        if cmd.p2 == 0x0C {
            return Reply::ok();
        }
        Reply::data(self.fcp(file))
    }

    /// A file by identifier: the MF, the current DF, a file in it, or a
    /// file in its parent.
    fn by_fid(&self, fid: u16) -> Option<File> {
        if fid == MF {
            return Some(File::Mf);
        }
        if fid == self.current_df.fid() {
            return Some(self.current_df);
        }
        self.current_df
            .child(fid)
            .or_else(|| self.current_df.parent().child(fid))
    }

    /// FCP template (ISO/IEC 7816-4 §7.4.3).
    fn fcp(&self, file: File) -> Vec<u8> {
        let mut fcp = Vec::new();
        if file.is_df() {
            tlv(&mut fcp, &[0x82], &[0x38]);
            tlv(&mut fcp, &[0x83], &file.fid().to_be_bytes());
            if file == File::App {
                tlv(&mut fcp, &[0x84], &AID);
            }
        } else {
            let size = self.content(file).len() as u16;
            tlv(&mut fcp, &[0x80], &size.to_be_bytes());
            tlv(&mut fcp, &[0x82], &[0x01]);
            tlv(&mut fcp, &[0x83], &file.fid().to_be_bytes());
        }
        let mut out = Vec::new();
        tlv(&mut out, &[0x62], &fcp);
        out
    }

    /// READ BINARY (ISO/IEC 7816-4 §11.3.3), offset in P1P2.
    fn read_binary(&self, cmd: &Apdu) -> Reply {
        if cmd.p1 & 0x80 != 0 {
            // Short EF identifiers are not supported.
            return Reply::sw(super::SW_FUNCTION_NOT_SUPPORTED);
        }
        if !cmd.data.is_empty() {
            return Reply::sw(StatusWord::WrongLength);
        }
        let Some(ef) = self.current_ef else {
            return Reply::sw(SW_NO_CURRENT_EF);
        };
        let content = self.content(ef);
        let offset = usize::from(u16::from_be_bytes([cmd.p1, cmd.p2]));
        if offset >= content.len() {
            return Reply::sw(SW_OFFSET_OUTSIDE);
        }
        let ne = cmd.ne.unwrap_or(256);
        let end = content.len().min(offset + ne);
        let data = content[offset..end].to_vec();
        if data.len() < ne {
            Reply {
                data,
                sw: SW_END_OF_FILE,
            }
        } else {
            Reply::data(data)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_pieces() {
        assert_eq!(bit_string(&[1, 4, 5]), [0x02, 0x4C]);
        assert_eq!(bit_string(&[1, 4, 5, 6]), [0x01, 0x4E]);
        assert_eq!(bit_string(&[0, 1]), [0x06, 0xC0]);
        assert_eq!(bit_string(&[8]), [0x07, 0x00, 0x80]);
        assert_eq!(der_uint(4), [0x04]);
        assert_eq!(der_uint(0x81), [0x00, 0x81]);
        assert_eq!(der_uint(0), [0x00]);
        assert_eq!(der_uint(0x1234), [0x12, 0x34]);
    }

    #[test]
    fn known_encodings() {
        let f = encoded_files();
        assert_eq!(
            f.odf,
            [
                0xA8, 0x0A, 0x30, 0x08, 0x04, 0x06, 0x3F, 0x00, 0x50, 0x15, 0x44, 0x01
            ]
        );
        assert_eq!(&f.ef_dir[..4], &[0x61, 0x26, 0x4F, 0x0C]);
        // The user PIN's PinAttributes, as OpenSC writes them.
        let attrs = [
            0x30, 0x1F, 0x03, 0x02, 0x02, 0x4C, 0x0A, 0x01, 0x01, 0x02, 0x01, 0x04, 0x02, 0x01,
            0x08, 0x02, 0x01, 0x08, 0x80, 0x02, 0x00, 0x81, 0x04, 0x01, 0xFF, 0x30, 0x06, 0x04,
            0x04, 0x3F, 0x00, 0x50, 0x15,
        ];
        assert!(f.aodf.windows(attrs.len()).any(|w| w == attrs));
    }
}
