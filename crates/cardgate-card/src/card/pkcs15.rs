//! Reading a PKCS#15 card's PIN objects from the card itself.
//!
//! References:
//! - PKCS #15 v1.1 (RSA Laboratories, "Cryptographic Token Information
//!   Syntax Standard"; ISO/IEC 7816-15 is its successor): §5.4.1 EF(DIR),
//!   §5.5.1 EF(ODF), §5.5.7 the authentication object directory files
//!   (AODFs), §5.7 selecting the application and its AID, §6.1 the basic
//!   types (`Path`, `Identifier`, `Reference`), §6.2 `PKCS15Objects`, §6.8
//!   authentication objects (`PinAttributes`, `PinFlags`, `PinType`), and
//!   the ASN.1 module of its Annex A, which is written with IMPLICIT TAGS.
//! - ISO/IEC 7816-4:2020 §8.2.1.1 (EF.DIR and its application templates),
//!   §11.2.2 SELECT, §11.3.3 READ BINARY.
//! - X.690 (DER): §8.6 BIT STRING, §8.3 INTEGER, §8.4 ENUMERATED.
//!
//! What is read: the PKCS#15 application (by its AID, else through EF.DIR,
//! else DF 5015 under the MF), its EF(ODF), and every AODF the ODF points
//! to. From each AODF only the PIN objects (`pin` in `AuthenticationType`)
//! are kept, with their label, identifiers, flags, type, lengths, reference,
//! padding character and path.
//!
//! [`discover`] sends SELECT and READ BINARY only (and GET RESPONSE, which
//! [`crate::transport::exchange`] may send to fetch a long answer). It never
//! presents, changes or unblocks a PIN, so reading a card's PIN objects
//! cannot spend a try. It leaves the card with whatever file it read last
//! selected: a caller selects its own application afterwards.
//!
//! Not supported (such objects are skipped, never guessed at):
//! - record-based EFs (EF.DIR or ODF/AODF as linear record files);
//! - `objects [0]` and the protected choices of `PathOrObjects` in the ODF
//!   (objects written into the ODF itself, or enveloped), and URLs;
//! - OpenSC's non-standard extended paths (an AID inside a `Path`);
//! - applications under another AID than [`PKCS15_AID`] (the ISO/IEC
//!   7816-15 ones), and any PKCS#15 application after the first one EF.DIR
//!   lists; EF.DIR is read only when selecting the AID fails, so an
//!   application selected by its AID has no label;
//! - biometric, authentication-key and external authentication objects
//!   (only PINs are read), `lastPinChange`, access control rules, and the
//!   fields later versions add to `CommonAuthenticationObjectAttributes`.
//!
//! Card files are untrusted input. Every parser is bounded by the data it is
//! given and by the BER-TLV reader of [`crate::apdu::tlv`]; malformed input
//! yields `None` or an empty list (a malformed object is skipped, the rest of
//! the file still read), never a panic. Each file read is capped at
//! [`MAX_FILE_LEN`] bytes and at most [`MAX_AODFS`] AODFs are read, so a
//! hostile card cannot keep the reader looping.

use crate::apdu::{Command, StatusWord, commands, tlv};
use crate::transport::{self, Transport, TransportError};

/// The PKCS#15 application identifier (PKCS #15 v1.1 §5.7.2): RID
/// A0 00 00 00 63, PIX "PKCS-15".
pub const PKCS15_AID: [u8; 12] = [
    0xA0, 0x00, 0x00, 0x00, 0x63, 0x50, 0x4B, 0x43, 0x53, 0x2D, 0x31, 0x35,
];

/// File identifier of EF.DIR under the MF (ISO 7816-4 §8.2.1.1; PKCS #15
/// v1.1 §5.4.1).
pub const EF_DIR: u16 = 0x2F00;
/// File identifier of the PKCS#15 application DF when EF.DIR does not name
/// it (PKCS #15 v1.1 §5.6).
pub const DF_PKCS15: u16 = 0x5015;
/// File identifier of EF(ODF) in the application DF (PKCS #15 v1.1 §5.6).
pub const EF_ODF: u16 = 0x5031;

/// The most bytes read from one file; a longer file is read only up to here.
pub const MAX_FILE_LEN: usize = 16 * 1024;
/// The most AODFs read from one card.
pub const MAX_AODFS: usize = 8;

/// Bytes asked for by one READ BINARY (the short-length maximum).
const READ_CHUNK: usize = 256;
/// The most READ BINARY commands sent for one file: enough for
/// [`MAX_FILE_LEN`] in full chunks.
const MAX_READS: usize = MAX_FILE_LEN / READ_CHUNK;

// ---------------------------------------------------------------------------
// Types
// ---------------------------------------------------------------------------

/// An application as EF.DIR lists it (ISO 7816-4 §8.2.1.1: application
/// template `61`; PKCS #15 v1.1 §5.4.1 `DIRRecord`), or as found by
/// [`discover`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DirApplication {
    /// The application identifier (`4F`); `None` when the application was
    /// found by its DF's file identifier only.
    pub aid: Option<Vec<u8>>,
    /// The application label (`50`), UTF-8 (invalid bytes replaced).
    pub label: Option<String>,
    /// The path of the application DF (`51`), usually from the MF
    /// (`3F00…`).
    pub path: Option<Vec<u8>>,
    /// The path of EF(ODF) from the discretionary data (`73`, PKCS #15
    /// `DDO.odfPath`) when the card gives a non-default one.
    pub odf_path: Option<Vec<u8>>,
}

/// A PKCS#15 `Path` (PKCS #15 v1.1 §6.1): a file path, and optionally the
/// part of that file the object occupies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pkcs15Path {
    /// Concatenated file identifiers: absolute when it starts with 3F00,
    /// otherwise relative to the application DF.
    pub path: Vec<u8>,
    /// Offset of the object in the file (`index`), given together with
    /// `length`.
    pub index: Option<usize>,
    /// Length of the object in the file (`length [0]`).
    pub length: Option<usize>,
}

/// `PinFlags` (PKCS #15 v1.1 §6.8), bit numbers as in the ASN.1 named bit
/// list.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PinFlags {
    /// Bit 0 `case-sensitive`.
    pub case_sensitive: bool,
    /// Bit 1 `local`: the PIN belongs to the application, not the card.
    pub local: bool,
    /// Bit 2 `change-disabled`.
    pub change_disabled: bool,
    /// Bit 3 `unblock-disabled`.
    pub unblock_disabled: bool,
    /// Bit 4 `initialized`.
    pub initialized: bool,
    /// Bit 5 `needs-padding`: pad to `storedLength` with `padChar`.
    pub needs_padding: bool,
    /// Bit 6 `unblockingPin`: a PUK.
    pub unblocking_pin: bool,
    /// Bit 7 `soPin`: the security officer's PIN.
    pub so_pin: bool,
    /// Bit 8 `disable-allowed`.
    pub disable_allowed: bool,
    /// Bit 9 `integrity-protected`.
    pub integrity_protected: bool,
    /// Bit 10 `confidentiality-protected`.
    pub confidentiality_protected: bool,
    /// Bit 11 `exchangeRefData`.
    pub exchange_ref_data: bool,
}

/// `PinType` (PKCS #15 v1.1 §6.8): how the PIN is encoded for the card.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinType {
    /// 0 `bcd`: one digit per nibble.
    Bcd,
    /// 1 `ascii-numeric`: ASCII digits.
    AsciiNumeric,
    /// 2 `utf8`.
    Utf8,
    /// 3 `half-nibble-bcd`.
    HalfNibbleBcd,
    /// 4 `iso9564-1`: the ISO 9564-1 PIN block format.
    Iso9564_1,
}

impl PinType {
    /// The type for an ENUMERATED value; `None` for values PKCS #15 v1.1
    /// does not define.
    pub fn from_value(value: u32) -> Option<Self> {
        Some(match value {
            0 => PinType::Bcd,
            1 => PinType::AsciiNumeric,
            2 => PinType::Utf8,
            3 => PinType::HalfNibbleBcd,
            4 => PinType::Iso9564_1,
            _ => return None,
        })
    }
}

/// One PIN authentication object of an AODF (PKCS #15 v1.1 §6.8:
/// `AuthenticationObject {PinAttributes}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pkcs15Pin {
    /// `CommonObjectAttributes.label`: the PIN's name for display.
    pub label: Option<String>,
    /// `CommonAuthenticationObjectAttributes.authId`: the identifier other
    /// objects use to name this PIN.
    pub auth_id: Vec<u8>,
    /// `CommonObjectAttributes.authId`: the authentication object that
    /// protects this one; for a PIN, by PKCS #15 convention, the PIN that
    /// unblocks it (its PUK or the SO PIN).
    pub parent_auth_id: Option<Vec<u8>>,
    /// `pinFlags`.
    pub flags: PinFlags,
    /// `pinType`.
    pub pin_type: PinType,
    /// `minLength`.
    pub min_length: usize,
    /// `storedLength`: the length after padding.
    pub stored_length: usize,
    /// `maxLength`, when given.
    pub max_length: Option<usize>,
    /// `pinReference [0]` as encoded; `None` when absent, where the
    /// specification's default 0 applies (see
    /// [`Pkcs15Pin::reference_or_default`]).
    pub reference: Option<u8>,
    /// `padChar`, when given.
    pub pad_char: Option<u8>,
    /// `path`: the DF the PIN belongs to, when given.
    pub path: Option<Vec<u8>>,
}

impl Pkcs15Pin {
    /// The PIN's reference for VERIFY's P2, with the ASN.1 default (`pinReference
    /// [0] Reference DEFAULT 0`) when the object does not give one.
    pub fn reference_or_default(&self) -> u8 {
        self.reference.unwrap_or(0)
    }
}

/// What [`discover`] read from a PKCS#15 card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pkcs15Card {
    /// The PKCS#15 application, as it was found.
    pub application: DirApplication,
    /// The PIN objects of its AODFs, in file order.
    pub pins: Vec<Pkcs15Pin>,
}

// ---------------------------------------------------------------------------
// Parsers
// ---------------------------------------------------------------------------

/// A DER BIT STRING's content (X.690 §8.6): the first byte counts the
/// unused bits of the last byte; bit `n` of the named bit list is bit
/// `7 - n % 8` of data byte `n / 8`, the most significant bit first.
#[derive(Debug, Clone, Copy)]
struct BitString<'a> {
    bytes: &'a [u8],
    bits: usize,
}

impl<'a> BitString<'a> {
    /// `None` when the unused-bit count is above 7, or not 0 for an empty
    /// string (X.690 §8.6.2).
    fn parse(value: &'a [u8]) -> Option<Self> {
        let (&unused, bytes) = value.split_first()?;
        if unused > 7 || (bytes.is_empty() && unused != 0) {
            return None;
        }
        Some(BitString {
            bytes,
            bits: bytes.len() * 8 - usize::from(unused),
        })
    }

    /// Whether named bit `n` is set; bits beyond the string are clear.
    fn bit(&self, n: usize) -> bool {
        n < self.bits
            && self
                .bytes
                .get(n / 8)
                .is_some_and(|b| b & (0x80 >> (n % 8)) != 0)
    }
}

impl PinFlags {
    fn from_bits(bits: BitString<'_>) -> Self {
        PinFlags {
            case_sensitive: bits.bit(0),
            local: bits.bit(1),
            change_disabled: bits.bit(2),
            unblock_disabled: bits.bit(3),
            initialized: bits.bit(4),
            needs_padding: bits.bit(5),
            unblocking_pin: bits.bit(6),
            so_pin: bits.bit(7),
            disable_allowed: bits.bit(8),
            integrity_protected: bits.bit(9),
            confidentiality_protected: bits.bit(10),
            exchange_ref_data: bits.bit(11),
        }
    }
}

fn utf8(value: &[u8]) -> String {
    String::from_utf8_lossy(value).into_owned()
}

fn length(value: &[u8]) -> Option<usize> {
    usize::try_from(tlv::unsigned(value)?).ok()
}

/// A `Reference` (INTEGER 0..255). A one-byte negative value is read as its
/// byte: some cards (and OpenSC up to 0.11.4) wrote references 80–FF
/// without the leading 00, and OpenSC reads them that way.
fn reference(value: &[u8]) -> Option<u8> {
    match *value {
        [b] => Some(b),
        [0x00, b] if b & 0x80 != 0 => Some(b),
        _ => None,
    }
}

/// Parses EF.DIR (ISO 7816-4 §8.2.1.1; PKCS #15 v1.1 §5.4.1): the
/// application templates `61 { 4F aid, 50 label, 51 path, 73 ddo }` of a
/// transparent EF. Templates without an AID are skipped; the walk ends at
/// padding or at the first malformed object.
pub fn parse_dir(data: &[u8]) -> Vec<DirApplication> {
    tlv::iter(data)
        .filter(|t| t.tag == 0x61)
        .filter_map(|app| {
            let aid = tlv::find(app.value, &[0x4F])?;
            // DDO ::= SEQUENCE { oid, odfPath Path OPTIONAL,
            // tokenInfoPath [0] Path OPTIONAL, unusedPath [1] Path OPTIONAL }
            // under [APPLICATION 19] (73), implicitly tagged.
            let odf_path = tlv::find(app.value, &[0x73, 0x30])
                .and_then(parse_path)
                .map(|p| p.path);
            Some(DirApplication {
                aid: Some(aid.to_vec()),
                label: tlv::find(app.value, &[0x50]).map(utf8),
                path: tlv::find(app.value, &[0x51]).map(<[u8]>::to_vec),
                odf_path,
            })
        })
        .collect()
}

/// Parses the content of a `Path` SEQUENCE (PKCS #15 v1.1 §6.1):
/// `04 path`, then optionally `02 index` and `80 length` (`[0]`, implicit).
/// Index and length are kept only when both are there, as the
/// specification's constraint requires.
pub fn parse_path(content: &[u8]) -> Option<Pkcs15Path> {
    let mut items = tlv::iter(content);
    let first = items.next()?;
    if first.tag != 0x04 {
        return None;
    }
    let mut index = None;
    let mut len = None;
    for item in items {
        match item.tag {
            0x02 => index = Some(length(item.value)?),
            0x80 => len = Some(length(item.value)?),
            _ => {}
        }
    }
    let (index, length) = match (index, len) {
        (Some(i), Some(l)) => (Some(i), Some(l)),
        _ => (None, None),
    };
    Some(Pkcs15Path {
        path: first.value.to_vec(),
        index,
        length,
    })
}

/// Parses EF(ODF) (PKCS #15 v1.1 §5.5.1, §6.2): a sequence of
/// `PKCS15Objects` choices; returns the AODF paths, those of
/// `authObjects [8]` (`A8 { 30 { 04 path … } }`). The other object kinds,
/// and `authObjects` holding anything but a `Path`, are skipped.
pub fn parse_odf(data: &[u8]) -> Vec<Pkcs15Path> {
    tlv::iter(data)
        .filter(|t| t.tag == 0xA8)
        .filter_map(|auth| {
            // PathOrObjects: `path Path` is untagged (30); `objects [0]`,
            // `indirect-protected [1]` and `direct-protected [2]` are not
            // read.
            let (inner, _) = tlv::parse_one(auth.value)?;
            if inner.tag != 0x30 {
                return None;
            }
            parse_path(inner.value)
        })
        .collect()
}

/// Parses an AODF (PKCS #15 v1.1 §5.5.7, §6.8): a sequence of
/// `AuthenticationType` choices; returns the PIN objects (`pin`, untagged,
/// 30). Biometric `[0]`, authentication-key `[1]` and external `[2]` objects
/// are skipped, and so is any PIN object missing a mandatory field or
/// holding a value PKCS #15 v1.1 does not define.
pub fn parse_aodf(data: &[u8]) -> Vec<Pkcs15Pin> {
    tlv::iter(data)
        .filter(|t| t.tag == 0x30)
        .filter_map(|obj| {
            let pin = parse_pin_object(obj.value);
            if pin.is_none() {
                tracing::debug!("skipping a malformed PKCS#15 PIN object");
            }
            pin
        })
        .collect()
}

/// `PKCS15Object {CommonAuthenticationObjectAttributes, NULL, PinAttributes}`
/// (PKCS #15 v1.1 §6.8, §6.2):
///
/// ```text
/// 30 commonObjectAttributes { 0C label?, 03 flags?, 04 authId?, … }
/// 30 classAttributes        { 04 authId, … }
/// A0 subClassAttributes     (optional; NULL for authentication objects)
/// A1 typeAttributes         { 30 PinAttributes }
/// ```
///
/// `typeAttributes [1]` is explicitly tagged (its type is a parameter of
/// the ASN.1 module), so the `PinAttributes` SEQUENCE keeps its own 30
/// inside A1, as OpenSC's `c_asn1_type_pin_attr` reads it.
fn parse_pin_object(content: &[u8]) -> Option<Pkcs15Pin> {
    let mut items = tlv::iter(content);
    let common = items.next().filter(|t| t.tag == 0x30)?;
    let class = items.next().filter(|t| t.tag == 0x30)?;
    let mut next = items.next()?;
    if next.tag == 0xA0 {
        next = items.next()?;
    }
    if next.tag != 0xA1 {
        return None;
    }
    let (attrs, _) = tlv::parse_one(next.value)?;
    if attrs.tag != 0x30 {
        return None;
    }

    // CommonObjectAttributes: every field optional, each with its own tag.
    let label = tlv::find(common.value, &[0x0C]).map(utf8);
    let parent_auth_id = tlv::find(common.value, &[0x04]).map(<[u8]>::to_vec);
    // CommonAuthenticationObjectAttributes: authId first and mandatory.
    let (auth_id, _) = tlv::parse_one(class.value)?;
    if auth_id.tag != 0x04 {
        return None;
    }

    let mut pin = parse_pin_attributes(attrs.value)?;
    pin.label = label;
    pin.auth_id = auth_id.value.to_vec();
    pin.parent_auth_id = parent_auth_id;
    Some(pin)
}

/// `PinAttributes` (PKCS #15 v1.1 §6.8), read in order since `minLength`,
/// `storedLength` and `maxLength` are all untagged INTEGERs (02):
///
/// ```text
/// 03 pinFlags, 0A pinType, 02 minLength, 02 storedLength, 02 maxLength?,
/// 80 pinReference [0]?, 04 padChar?, 18 lastPinChange?, 30 path?, …
/// ```
fn parse_pin_attributes(content: &[u8]) -> Option<Pkcs15Pin> {
    let mut items = tlv::iter(content).peekable();
    let mut take = |tag: u32| items.next().filter(|t| t.tag == tag).map(|t| t.value);
    let flags = PinFlags::from_bits(BitString::parse(take(0x03)?)?);
    let pin_type = PinType::from_value(tlv::unsigned(take(0x0A)?)?)?;
    let min_length = length(take(0x02)?)?;
    let stored_length = length(take(0x02)?)?;
    let mut pin = Pkcs15Pin {
        label: None,
        auth_id: Vec::new(),
        parent_auth_id: None,
        flags,
        pin_type,
        min_length,
        stored_length,
        max_length: None,
        reference: None,
        pad_char: None,
        path: None,
    };
    if let Some(max) = items.next_if(|t| t.tag == 0x02) {
        pin.max_length = Some(length(max.value)?);
    }
    for item in items {
        match item.tag {
            0x80 => pin.reference = Some(reference(item.value)?),
            0x04 => match *item.value {
                [pad] => pin.pad_char = Some(pad),
                _ => return None,
            },
            0x30 => pin.path = Some(parse_path(item.value)?.path),
            // lastPinChange (18) and extensions are not read.
            _ => {}
        }
    }
    Some(pin)
}

// ---------------------------------------------------------------------------
// Reading the card
// ---------------------------------------------------------------------------

/// Finds the PKCS#15 application and reads its PIN objects.
///
/// 1. SELECT the application by [`PKCS15_AID`] (PKCS #15 v1.1 §5.7.1,
///    direct selection);
/// 2. otherwise read EF.DIR (2F00 under the MF) and select the DF of the
///    template carrying that AID, by its path (indirect selection);
/// 3. otherwise try DF 5015 under the MF.
///
/// Then EF(ODF) is read (5031 in the application DF, or the path EF.DIR's
/// DDO gives), then each AODF it names ([`MAX_AODFS`] at most).
///
/// Files are selected without asking for their control information
/// (P2=0C) and by path from the MF (P1=08); a card that refuses either
/// (6A86) is asked again with P2=00, or the path is walked one file
/// identifier at a time from the MF, and the refusal is remembered for the
/// rest of the reading.
///
/// `Ok(None)` when the card has no PKCS#15 application; `Ok(Some)` with an
/// empty `pins` when the application's files cannot be read or hold no PIN
/// objects. Only transport failures (card removed, reader gone) are errors.
/// Sends SELECT and READ BINARY only (see the module documentation).
pub fn discover(t: &mut dyn Transport) -> Result<Option<Pkcs15Card>, TransportError> {
    let mut r = Reader {
        t,
        fci_only: false,
        no_paths: false,
        in_application: false,
    };
    let Some(application) = r.select_application()? else {
        return Ok(None);
    };
    let odf_path = Pkcs15Path {
        path: application
            .odf_path
            .clone()
            .unwrap_or_else(|| EF_ODF.to_be_bytes().to_vec()),
        index: None,
        length: None,
    };
    let odf = r.read_object(&application, &odf_path)?;
    let mut aodfs = odf.as_deref().map(parse_odf).unwrap_or_default();
    aodfs.dedup();
    let mut pins = Vec::new();
    for path in aodfs.iter().take(MAX_AODFS) {
        if let Some(data) = r.read_object(&application, path)? {
            pins.extend(parse_aodf(&data));
        }
    }
    Ok(Some(Pkcs15Card { application, pins }))
}

/// One reading of a card, remembering what the card refused.
struct Reader<'t> {
    t: &'t mut dyn Transport,
    /// The card answered 6A86 to P2=0C and took P2=00: ask for the FCI.
    fci_only: bool,
    /// The card does not select by path (P1=08): walk paths instead.
    no_paths: bool,
    /// The application DF is the current DF.
    in_application: bool,
}

impl Reader<'_> {
    /// Selects the PKCS#15 application DF (see [`discover`]) and says how
    /// it was found.
    fn select_application(&mut self) -> Result<Option<DirApplication>, TransportError> {
        if self.select_aid(&PKCS15_AID)? {
            return Ok(Some(DirApplication {
                aid: Some(PKCS15_AID.to_vec()),
                ..DirApplication::default()
            }));
        }
        if self.select_from_mf(&EF_DIR.to_be_bytes())?
            && let Some(dir) = self.read_current_ef()?
            && let Some(app) = parse_dir(&dir)
                .into_iter()
                .find(|a| a.aid.as_deref() == Some(&PKCS15_AID[..]))
            && let Some(path) = &app.path
            && let Some(from_mf) = path.strip_prefix(&[0x3F, 0x00][..])
            && self.select_from_mf(from_mf)?
        {
            self.in_application = true;
            return Ok(Some(app));
        }
        if self.select_from_mf(&DF_PKCS15.to_be_bytes())? {
            self.in_application = true;
            return Ok(Some(DirApplication {
                path: Some(vec![0x3F, 0x00, 0x50, 0x15]),
                ..DirApplication::default()
            }));
        }
        Ok(None)
    }

    /// SELECT by DF name (the AID), asking for the FCI.
    fn select_aid(&mut self, aid: &[u8]) -> Result<bool, TransportError> {
        let ok = transport::exchange(self.t, &commands::select_aid(aid))?.is_ok();
        self.in_application = ok;
        Ok(ok)
    }

    /// Sends a SELECT, with P2=00 instead of 0C when the card wants it;
    /// returns the card's status word.
    fn select(&mut self, cmd: Command) -> Result<StatusWord, TransportError> {
        if self.fci_only && cmd.p2 == 0x0C {
            return Ok(transport::exchange(self.t, &commands::select_with_fci(cmd))?.sw);
        }
        let sw = transport::exchange(self.t, &cmd)?.sw;
        if sw == StatusWord::WrongP1P2 && cmd.p2 == 0x0C {
            let again = transport::exchange(self.t, &commands::select_with_fci(cmd))?.sw;
            self.fci_only = again == StatusWord::Ok;
            return Ok(again);
        }
        Ok(sw)
    }

    /// Selects a file by its path from the MF (without 3F00): SELECT with
    /// P1=08, or, on a card that does not take paths, the MF then each file
    /// identifier in turn. An empty path selects the MF.
    fn select_from_mf(&mut self, path: &[u8]) -> Result<bool, TransportError> {
        self.in_application = false;
        if path.is_empty() {
            return self.select_fid(0x3F00);
        }
        if !path.len().is_multiple_of(2) {
            return Ok(false);
        }
        if !self.no_paths {
            match self.select(commands::select_path_from_mf(path))? {
                StatusWord::Ok => return Ok(true),
                StatusWord::FileNotFound => return Ok(false),
                // 6A86 P1-P2 or 6A81 function not supported: no paths here.
                StatusWord::WrongP1P2 | StatusWord::Other(0x6A81) => self.no_paths = true,
                _ => {}
            }
        }
        Ok(self.select_fid(0x3F00)? && self.select_each(path)?)
    }

    /// Selects one file by its identifier from the current DF.
    fn select_fid(&mut self, fid: u16) -> Result<bool, TransportError> {
        Ok(self.select(commands::select_file_id(fid))? == StatusWord::Ok)
    }

    /// Selects each file identifier of `path` in turn from the current DF.
    fn select_each(&mut self, path: &[u8]) -> Result<bool, TransportError> {
        for fid in path.chunks(2) {
            let [hi, lo] = *fid else {
                return Ok(false);
            };
            if !self.select_fid(u16::from_be_bytes([hi, lo]))? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Selects a file by its path relative to the application DF: from the
    /// current DF when that is the application's and the path is one EF;
    /// else from the MF when the application's path is known; else after
    /// selecting the application again by its AID.
    fn select_in_application(
        &mut self,
        app: &DirApplication,
        relative: &[u8],
    ) -> Result<bool, TransportError> {
        if self.in_application && relative.len() == 2 {
            // Selecting an EF leaves its DF current.
            return self.select_each(relative);
        }
        if let Some(from_mf) = app
            .path
            .as_deref()
            .and_then(|p| p.strip_prefix(&[0x3F, 0x00][..]))
        {
            let full = [from_mf, relative].concat();
            return self.select_from_mf(&full);
        }
        let Some(aid) = &app.aid else {
            return Ok(false);
        };
        if !self.select_aid(aid)? {
            return Ok(false);
        }
        let ok = self.select_each(relative)?;
        self.in_application = relative.len() == 2;
        Ok(ok)
    }

    /// Reads the object a `Path` points to: the whole file, or the part its
    /// index and length give. `None` when it cannot be selected or read, or
    /// when the part lies outside the file.
    fn read_object(
        &mut self,
        app: &DirApplication,
        path: &Pkcs15Path,
    ) -> Result<Option<Vec<u8>>, TransportError> {
        let selected = match path.path.as_slice() {
            [0x3F, 0x00, rest @ ..] => self.select_from_mf(rest)?,
            // ISO 7816-4 reserves 3FFF for the current DF in a path; here
            // the application's.
            [0x3F, 0xFF, rest @ ..] => self.select_in_application(app, rest)?,
            relative => self.select_in_application(app, relative)?,
        };
        if !selected {
            return Ok(None);
        }
        let Some(data) = self.read_current_ef()? else {
            return Ok(None);
        };
        Ok(match (path.index, path.length) {
            (Some(index), Some(len)) => index
                .checked_add(len)
                .and_then(|end| data.get(index..end))
                .map(<[u8]>::to_vec),
            _ => Some(data),
        })
    }

    /// Reads the current transparent EF with READ BINARY, chunk by chunk,
    /// until the card reports the end of the file (6282, 6B00 or an empty
    /// answer), [`MAX_FILE_LEN`] bytes are read or [`MAX_READS`] commands
    /// were sent. A short answer with 9000 is not taken as the end: some
    /// cards cap their answers below 256 bytes. `None` when the first read
    /// fails (no such EF, access denied, a record EF).
    fn read_current_ef(&mut self) -> Result<Option<Vec<u8>>, TransportError> {
        let mut data = Vec::new();
        for _ in 0..MAX_READS {
            if data.len() >= MAX_FILE_LEN {
                break;
            }
            let want = READ_CHUNK.min(MAX_FILE_LEN - data.len());
            // MAX_FILE_LEN is far below the 15-bit offset limit (7FFF).
            let offset = u16::try_from(data.len()).unwrap_or(u16::MAX);
            let resp = transport::exchange(self.t, &commands::read_binary(offset, want))?;
            // A card answering more than was asked is cut to what was asked.
            let got = &resp.data[..resp.data.len().min(want)];
            match resp.sw {
                StatusWord::Ok if got.is_empty() => break,
                StatusWord::Ok => data.extend_from_slice(got),
                // 6282: end of file reached before Le bytes (ISO 7816-4 §5.6).
                StatusWord::Other(0x6282) => {
                    data.extend_from_slice(got);
                    break;
                }
                // 6B00: offset beyond the end of the file.
                StatusWord::Other(0x6B00) => break,
                _ if data.is_empty() => return Ok(None),
                _ => break,
            }
        }
        Ok(Some(data))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, BTreeSet};

    // -- DER vectors, written by hand from the ASN.1 of PKCS #15 v1.1 ------

    /// A user PIN protected (unblocked) by authId 02:
    #[rustfmt::skip]
    const USER_PIN: &[u8] = &[
        0x30, 0x3A, // pin: PKCS15Object
        0x30, 0x11, //   commonObjectAttributes
        0x0C, 0x08, b'U', b's', b'e', b'r', b' ', b'P', b'I', b'N', // label
        0x03, 0x02, 0x06, 0xC0, //     flags: private, modifiable
        0x04, 0x01, 0x02, //           authId 02: the PUK below
        0x30, 0x03, //   classAttributes (CommonAuthenticationObjectAttributes)
        0x04, 0x01, 0x01, //           authId 01
        0xA1, 0x20, //   typeAttributes [1], explicit
        0x30, 0x1E, //     PinAttributes
        0x03, 0x02, 0x02, 0x4C, //       pinFlags: local(1) initialized(4) needs-padding(5)
        0x0A, 0x01, 0x01, //             pinType ascii-numeric
        0x02, 0x01, 0x04, //             minLength 4
        0x02, 0x01, 0x08, //             storedLength 8
        0x02, 0x01, 0x08, //             maxLength 8
        0x80, 0x01, 0x01, //             pinReference [0] 1
        0x04, 0x01, 0xFF, //             padChar FF
        0x30, 0x06, 0x04, 0x04, 0x3F, 0x00, 0x50, 0x15, // path 3F00 5015
    ];

    /// Its PUK: no parent, no maxLength.
    #[rustfmt::skip]
    const PUK: &[u8] = &[
        0x30, 0x23, //
        0x30, 0x05, 0x0C, 0x03, b'P', b'U', b'K', //
        0x30, 0x03, 0x04, 0x01, 0x02, //
        0xA1, 0x15, 0x30, 0x13, //
        0x03, 0x02, 0x01, 0x4E, // local, initialized, needs-padding, unblockingPin(6)
        0x0A, 0x01, 0x01, //
        0x02, 0x01, 0x08, //
        0x02, 0x01, 0x08, //
        0x80, 0x01, 0x02, //
        0x04, 0x01, 0xFF, //
    ];

    /// An SO PIN whose flags take two bytes and whose reference is 0x81
    /// written as DER requires (00 81).
    #[rustfmt::skip]
    const SO_PIN: &[u8] = &[
        0x30, 0x29, //
        0x30, 0x0C, 0x0C, 0x06, b'S', b'O', b' ', b'P', b'I', b'N', //
        0x03, 0x02, 0x07, 0x80, // flags: private
        0x30, 0x03, 0x04, 0x01, 0x03, //
        0xA1, 0x14, 0x30, 0x12, //
        0x03, 0x03, 0x07, 0x89,
        0x80, // case-sensitive(0) initialized(4) soPin(7) disable-allowed(8)
        0x0A, 0x01, 0x02, //            utf8
        0x02, 0x01, 0x06, //            minLength 6
        0x02, 0x01, 0x10, //            storedLength 16
        0x80, 0x02, 0x00, 0x81, //      pinReference 0x81
    ];

    /// An authKey [1] object, to be skipped.
    #[rustfmt::skip]
    const AUTH_KEY: &[u8] = &[
        0xA1, 0x0E, 0x30, 0x00, 0x30, 0x03, 0x04, 0x01, 0x04, 0xA1, 0x05, 0x30, 0x03, 0x04, 0x01,
        0x05,
    ];

    fn aodf() -> Vec<u8> {
        [USER_PIN, AUTH_KEY, PUK, SO_PIN, &[0x00, 0x00, 0x00][..]].concat()
    }

    /// EF(ODF): PrKDF [0], CDF [4], AODF [8], DODF [7], then padding.
    #[rustfmt::skip]
    const ODF: &[u8] = &[
        0xA0, 0x0A, 0x30, 0x08, 0x04, 0x06, 0x3F, 0x00, 0x50, 0x15, 0x44, 0x02, //
        0xA4, 0x0A, 0x30, 0x08, 0x04, 0x06, 0x3F, 0x00, 0x50, 0x15, 0x44, 0x03, //
        0xA8, 0x0A, 0x30, 0x08, 0x04, 0x06, 0x3F, 0x00, 0x50, 0x15, 0x44, 0x01, //
        0xA7, 0x0A, 0x30, 0x08, 0x04, 0x06, 0x3F, 0x00, 0x50, 0x15, 0x44, 0x04, //
        0x00, 0x00,
    ];

    /// The EF(DIR) example of the PKCS #15 v1.1 test vectors (§1.1 of RSA
    /// Laboratories' testvectors.txt), encoded from its value notation
    /// `{ aid 'A000000063504B43532D3135'H, label "RSA DSI", path
    /// '3F005015'H, ddo { oid { 1 2 840 113549 1 15 4 1 }, unusedPath {
    /// path '3F0050154320'H } } }`; the lengths (53, 12, 7, 4, 22) are
    /// those of its published dump. Preceded by a PIV template.
    #[rustfmt::skip]
    const DIR: &[u8] = &[
        0x61, 0x11, 0x4F, 0x0A, 0xA0, 0x00, 0x00, 0x03, 0x08, 0x00, 0x00, 0x10, 0x00, 0x01, 0x50,
        0x03, b'P', b'I', b'V', //
        0x61, 0x35, // DIRRecord [APPLICATION 1]
        0x4F, 0x0C, 0xA0, 0x00, 0x00, 0x00, 0x63, 0x50, 0x4B, 0x43, 0x53, 0x2D, 0x31, 0x35, //
        0x50, 0x07, b'R', b'S', b'A', b' ', b'D', b'S', b'I', //
        0x51, 0x04, 0x3F, 0x00, 0x50, 0x15, //
        0x73, 0x16, // ddo [APPLICATION 19]
        0x06, 0x0A, 0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x0F, 0x04, 0x01, // oid
        0xA1, 0x08, 0x04, 0x06, 0x3F, 0x00, 0x50, 0x15, 0x43, 0x20, // unusedPath [1]
    ];

    fn user_pin() -> Pkcs15Pin {
        Pkcs15Pin {
            label: Some("User PIN".into()),
            auth_id: vec![0x01],
            parent_auth_id: Some(vec![0x02]),
            flags: PinFlags {
                local: true,
                initialized: true,
                needs_padding: true,
                ..PinFlags::default()
            },
            pin_type: PinType::AsciiNumeric,
            min_length: 4,
            stored_length: 8,
            max_length: Some(8),
            reference: Some(1),
            pad_char: Some(0xFF),
            path: Some(vec![0x3F, 0x00, 0x50, 0x15]),
        }
    }

    // -- Parsers -----------------------------------------------------------

    #[test]
    fn reads_pin_objects_of_an_aodf() {
        let pins = parse_aodf(&aodf());
        assert_eq!(pins.len(), 3, "the authKey object is skipped");
        assert_eq!(pins[0], user_pin());

        let puk = &pins[1];
        assert_eq!(puk.label.as_deref(), Some("PUK"));
        assert_eq!(puk.auth_id, [0x02]);
        assert_eq!(puk.parent_auth_id, None);
        assert!(puk.flags.unblocking_pin && !puk.flags.so_pin);
        assert_eq!((puk.min_length, puk.max_length), (8, None));
        assert_eq!(puk.reference, Some(2));

        let so = &pins[2];
        assert_eq!(
            so.flags,
            PinFlags {
                case_sensitive: true,
                initialized: true,
                so_pin: true,
                disable_allowed: true,
                ..PinFlags::default()
            }
        );
        assert_eq!(so.pin_type, PinType::Utf8);
        assert_eq!((so.min_length, so.stored_length), (6, 16));
        assert_eq!(so.reference, Some(0x81));
        assert_eq!((so.pad_char, so.path.as_deref()), (None, None));
    }

    #[test]
    fn pin_reference_defaults_and_legacy_encoding() {
        // No pinReference: the ASN.1 default 0 applies.
        let mut no_ref = PUK.to_vec();
        let at = no_ref
            .windows(3)
            .position(|w| w == [0x80, 0x01, 0x02])
            .unwrap();
        no_ref.drain(at..at + 3);
        no_ref[1] -= 3; // object
        no_ref[15] -= 3; // A1
        no_ref[17] -= 3; // PinAttributes
        let pin = &parse_aodf(&no_ref)[0];
        assert_eq!(pin.reference, None);
        assert_eq!(pin.reference_or_default(), 0);
        // A reference above 7F written as a negative one-byte INTEGER.
        assert_eq!(reference(&[0x81]), Some(0x81));
        assert_eq!(reference(&[0x00, 0x81]), Some(0x81));
        assert_eq!(reference(&[0x01, 0x00]), None);
        assert_eq!(reference(&[]), None);
    }

    #[test]
    fn bit_strings_number_bits_from_the_most_significant() {
        let b = BitString::parse(&[0x07, 0x89, 0x80]).unwrap();
        let set: Vec<usize> = (0..16).filter(|&n| b.bit(n)).collect();
        assert_eq!(set, [0, 4, 7, 8]);
        // Bits in the unused tail do not count.
        let b = BitString::parse(&[0x07, 0xFF]).unwrap();
        assert!(b.bit(0) && !b.bit(1));
        assert!(BitString::parse(&[0x00]).is_some());
        assert!(BitString::parse(&[0x01]).is_none());
        assert!(BitString::parse(&[0x08, 0xFF]).is_none());
        assert!(BitString::parse(&[]).is_none());
    }

    #[test]
    fn skips_pin_objects_with_bad_mandatory_fields() {
        let swap = |from: &[u8], to: &[u8]| {
            let mut v = USER_PIN.to_vec();
            let at = v.windows(from.len()).position(|w| w == from).unwrap();
            v.splice(at..at + from.len(), to.iter().copied());
            v
        };
        assert_eq!(parse_aodf(USER_PIN).len(), 1);
        for bad in [
            // pinType 9: not defined by PKCS #15 v1.1.
            swap(&[0x0A, 0x01, 0x01], &[0x0A, 0x01, 0x09]),
            // pinFlags claiming 9 unused bits.
            swap(&[0x03, 0x02, 0x02, 0x4C], &[0x03, 0x02, 0x09, 0x4C]),
            // maxLength negative.
            swap(&[0x02, 0x01, 0x08, 0x80], &[0x02, 0x01, 0x88, 0x80]),
            // padChar empty (its byte now reads as padding).
            swap(&[0x04, 0x01, 0xFF], &[0x04, 0x00, 0xFF]),
            // pinReference of two bytes below 80.
            swap(
                &[0x80, 0x01, 0x01, 0x04, 0x01],
                &[0x80, 0x02, 0x01, 0x01, 0x01],
            ),
            // authId not an OCTET STRING.
            swap(
                &[0x30, 0x03, 0x04, 0x01, 0x01],
                &[0x30, 0x03, 0x02, 0x01, 0x01],
            ),
            // PinAttributes not under typeAttributes [1], or not a SEQUENCE.
            swap(&[0xA1, 0x20, 0x30, 0x1E], &[0xA2, 0x20, 0x30, 0x1E]),
            swap(&[0xA1, 0x20, 0x30, 0x1E], &[0xA1, 0x20, 0x31, 0x1E]),
            // storedLength missing: pinReference where it should be.
            swap(
                &[0x02, 0x01, 0x04, 0x02, 0x01, 0x08],
                &[0x02, 0x01, 0x04, 0x80, 0x01, 0x08],
            ),
        ] {
            assert_eq!(parse_aodf(&bad), [], "{bad:02X?}");
        }
    }

    #[test]
    fn reads_the_odf_aodf_paths_only() {
        let paths = parse_odf(ODF);
        assert_eq!(
            paths,
            [Pkcs15Path {
                path: vec![0x3F, 0x00, 0x50, 0x15, 0x44, 0x01],
                index: None,
                length: None
            }]
        );
        // authObjects holding objects [0] directly is not read.
        assert!(parse_odf(&[0xA8, 0x04, 0xA0, 0x02, 0x30, 0x00]).is_empty());
        // A path with index and length.
        let p = parse_odf(&[
            0xA8, 0x0D, 0x30, 0x0B, 0x04, 0x02, 0x44, 0x01, 0x02, 0x01, 0x10, 0x80, 0x02, 0x01,
            0x00,
        ]);
        assert_eq!(p[0].path, [0x44, 0x01]);
        assert_eq!((p[0].index, p[0].length), (Some(0x10), Some(0x100)));
        // Index without length is dropped, as the constraint requires both.
        let p = parse_path(&[0x04, 0x02, 0x44, 0x01, 0x02, 0x01, 0x10]).unwrap();
        assert_eq!((p.index, p.length), (None, None));
        assert_eq!(parse_path(&[0x02, 0x01, 0x10]), None);
    }

    #[test]
    fn reads_ef_dir_templates() {
        let apps = parse_dir(DIR);
        assert_eq!(apps.len(), 2);
        assert_eq!(apps[0].label.as_deref(), Some("PIV"));
        assert_eq!(apps[0].path, None);
        assert_eq!(
            apps[1],
            DirApplication {
                aid: Some(PKCS15_AID.to_vec()),
                label: Some("RSA DSI".into()),
                path: Some(vec![0x3F, 0x00, 0x50, 0x15]),
                odf_path: None,
            }
        );
        // A DDO with an odfPath.
        let with_odf = [
            0x61, 0x1E, 0x4F, 0x0C, 0xA0, 0x00, 0x00, 0x00, 0x63, 0x50, 0x4B, 0x43, 0x53, 0x2D,
            0x31, 0x35, 0x73, 0x0E, 0x06, 0x02, 0x2A, 0x03, 0x30, 0x08, 0x04, 0x06, 0x3F, 0x00,
            0x50, 0x15, 0x50, 0x32,
        ];
        assert_eq!(
            parse_dir(&with_odf)[0].odf_path.as_deref(),
            Some(&[0x3F, 0x00, 0x50, 0x15, 0x50, 0x32][..])
        );
        // No AID: skipped.
        assert!(parse_dir(&[0x61, 0x03, 0x50, 0x01, b'x']).is_empty());
    }

    /// A small deterministic generator (xorshift64*), so the test needs no
    /// dependency and fails the same way every run.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
        fn bytes(&mut self, n: usize) -> Vec<u8> {
            (0..n).map(|_| self.next() as u8).collect()
        }
    }

    fn parse_all(data: &[u8]) {
        let _ = parse_dir(data);
        let _ = parse_odf(data);
        let _ = parse_aodf(data);
        let _ = parse_path(data);
        let _ = parse_pin_attributes(data);
        let _ = parse_pin_object(data);
    }

    #[test]
    fn parsers_never_panic_on_arbitrary_input() {
        let seeds: Vec<Vec<u8>> = vec![aodf(), ODF.to_vec(), DIR.to_vec(), USER_PIN.to_vec()];
        // Every truncation of every vector.
        for seed in &seeds {
            for end in 0..=seed.len() {
                parse_all(&seed[..end]);
                parse_all(&seed[end..]);
            }
        }
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for _ in 0..20_000 {
            // Random bytes, biased towards the tags the parsers look for.
            let n = rng.below(96);
            let mut data = rng.bytes(n);
            for b in data.iter_mut() {
                if rng.below(3) == 0 {
                    *b =
                        [0x30, 0xA1, 0xA8, 0x61, 0x04, 0x02, 0x03, 0x80, 0x81, 0x82][rng.below(10)];
                }
            }
            parse_all(&data);
            // Mutations of the valid vectors: flipped, inserted, removed bytes.
            let mut m = seeds[rng.below(seeds.len())].clone();
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(m.len());
                match rng.below(3) {
                    0 => m[at] ^= 1 << rng.below(8),
                    1 => m.insert(at, rng.next() as u8),
                    _ => {
                        m.remove(at);
                    }
                }
                if m.is_empty() {
                    break;
                }
            }
            parse_all(&m);
        }
    }

    // -- The reader over a simulated card ------------------------------------

    /// A PKCS#15 card's file system, answering SELECT and READ BINARY
    /// (ISO 7816-4) and recording every command it is sent.
    #[derive(Default)]
    struct FakeCard {
        /// Transparent EFs by absolute path without 3F00.
        files: BTreeMap<Vec<u8>, Vec<u8>>,
        /// DFs by absolute path without 3F00.
        dfs: BTreeSet<Vec<u8>>,
        /// The DF selected by the PKCS#15 AID, if the card supports it.
        aid_df: Option<Vec<u8>>,
        /// Answer 6A86 to SELECT with P2=0C.
        refuses_no_fci: bool,
        /// Answer 6A86 to SELECT with P1=08.
        refuses_paths: bool,
        /// The most bytes one READ BINARY returns.
        max_chunk: Option<usize>,
        current_df: Vec<u8>,
        current_ef: Option<Vec<u8>>,
        sent: Vec<Vec<u8>>,
        removed_after: Option<usize>,
    }

    impl FakeCard {
        fn pkcs15() -> Self {
            let mut card = FakeCard {
                aid_df: Some(vec![0x50, 0x15]),
                ..FakeCard::default()
            };
            card.dfs.insert(vec![0x50, 0x15]);
            card.files
                .insert(vec![0x50, 0x15, 0x50, 0x31], ODF.to_vec());
            card.files.insert(vec![0x50, 0x15, 0x44, 0x01], aodf());
            card
        }

        fn answer(&mut self, apdu: &[u8]) -> Vec<u8> {
            let &[_, ins, p1, p2, ref rest @ ..] = apdu else {
                return vec![0x67, 0x00];
            };
            let (data, le) = match rest {
                [] => (&[][..], None),
                [le] => (&[][..], Some(if *le == 0 { 256 } else { usize::from(*le) })),
                [lc, tail @ ..] => {
                    let n = usize::from(*lc);
                    let le = tail
                        .get(n)
                        .map(|&l| if l == 0 { 256 } else { usize::from(l) });
                    (&tail[..n.min(tail.len())], le)
                }
            };
            match ins {
                0xA4 => {
                    if p2 == 0x0C && self.refuses_no_fci {
                        return vec![0x6A, 0x86];
                    }
                    let target = match p1 {
                        0x04 => match (&self.aid_df, data == PKCS15_AID) {
                            (Some(df), true) => df.clone(),
                            _ => return vec![0x6A, 0x82],
                        },
                        0x08 if self.refuses_paths => return vec![0x6A, 0x86],
                        0x08 => data.to_vec(),
                        0x00 | 0x02 if data == [0x3F, 0x00] => Vec::new(),
                        0x00 | 0x02 => [&self.current_df[..], data].concat(),
                        _ => return vec![0x6A, 0x86],
                    };
                    if target.is_empty() || self.dfs.contains(&target) {
                        self.current_df = target;
                        self.current_ef = None;
                    } else if self.files.contains_key(&target) {
                        self.current_df = target[..target.len() - 2].to_vec();
                        self.current_ef = Some(target);
                    } else {
                        return vec![0x6A, 0x82];
                    }
                    if p2 == 0x0C {
                        vec![0x90, 0x00]
                    } else {
                        vec![0x6F, 0x00, 0x90, 0x00]
                    }
                }
                0xB0 => {
                    let Some(file) = self.current_ef.as_ref().and_then(|p| self.files.get(p))
                    else {
                        return vec![0x69, 0x86];
                    };
                    let offset = usize::from(u16::from_be_bytes([p1, p2]));
                    if offset > file.len() {
                        return vec![0x6B, 0x00];
                    }
                    let want = le.unwrap_or(256).min(self.max_chunk.unwrap_or(256));
                    let end = (offset + want).min(file.len());
                    let mut out = file[offset..end].to_vec();
                    out.extend(if end - offset < le.unwrap_or(256) && end == file.len() {
                        [0x62, 0x82]
                    } else {
                        [0x90, 0x00]
                    });
                    out
                }
                _ => vec![0x6D, 0x00],
            }
        }

        fn ins_sent(&self) -> BTreeSet<u8> {
            self.sent.iter().map(|a| a[1]).collect()
        }
    }

    impl Transport for FakeCard {
        fn transmit(&mut self, apdu: &[u8]) -> Result<Vec<u8>, TransportError> {
            if self.removed_after.is_some_and(|n| self.sent.len() >= n) {
                return Err(TransportError::CardRemoved);
            }
            self.sent.push(apdu.to_vec());
            Ok(self.answer(apdu))
        }
        fn control(&mut self, _: u32, _: &[u8]) -> Result<Vec<u8>, TransportError> {
            Err(TransportError::Unsupported)
        }
        fn reconnect(&mut self, _: bool) -> Result<(), TransportError> {
            Ok(())
        }
        fn atr(&self) -> &[u8] {
            &[0x3B, 0x00]
        }
    }

    fn assert_reads_only(card: &FakeCard) {
        let allowed = BTreeSet::from([0xA4, 0xB0, 0xC0]);
        assert!(
            card.ins_sent().is_subset(&allowed),
            "sent {:02X?}",
            card.ins_sent()
        );
    }

    #[test]
    fn discovers_by_aid() {
        let mut card = FakeCard::pkcs15();
        let found = discover(&mut card).unwrap().unwrap();
        assert_eq!(found.application.aid.as_deref(), Some(&PKCS15_AID[..]));
        assert_eq!(found.pins.len(), 3);
        assert_eq!(found.pins[0], user_pin());
        assert_reads_only(&card);
        // SELECT AID; SELECT 5031 in it, READ; SELECT the AODF by its path
        // from the MF, READ.
        let hex: Vec<String> = card
            .sent
            .iter()
            .map(|a| a.iter().map(|b| format!("{b:02X}")).collect())
            .collect();
        assert_eq!(
            hex,
            [
                "00A404000CA000000063504B43532D313500",
                "00A4000C025031",
                "00B0000000",
                "00A4080C0450154401",
                "00B0000000",
            ]
        );
    }

    #[test]
    fn discovers_through_ef_dir_with_relative_paths() {
        let mut card = FakeCard::pkcs15();
        card.aid_df = None;
        card.files.insert(vec![0x2F, 0x00], DIR.to_vec());
        // The ODF names the AODF by its file identifier only.
        card.files.insert(
            vec![0x50, 0x15, 0x50, 0x31],
            vec![0xA8, 0x06, 0x30, 0x04, 0x04, 0x02, 0x44, 0x01],
        );
        let found = discover(&mut card).unwrap().unwrap();
        assert_eq!(found.application.label.as_deref(), Some("RSA DSI"));
        assert_eq!(
            found.application.path.as_deref(),
            Some(&[0x3F, 0x00, 0x50, 0x15][..])
        );
        assert_eq!(found.pins.len(), 3);
        assert_reads_only(&card);
    }

    #[test]
    fn falls_back_to_df_5015_and_to_step_by_step_selection() {
        let mut card = FakeCard::pkcs15();
        card.aid_df = None;
        card.refuses_paths = true;
        card.refuses_no_fci = true;
        let found = discover(&mut card).unwrap().unwrap();
        assert_eq!(found.application.aid, None);
        assert_eq!(
            found.application.path.as_deref(),
            Some(&[0x3F, 0x00, 0x50, 0x15][..])
        );
        assert_eq!(found.pins.len(), 3);
        assert_reads_only(&card);
        // Selections were retried with P2=00 after 6A86.
        assert!(card.sent.iter().any(|a| a[1] == 0xA4 && a[3] == 0x00));
    }

    #[test]
    fn reads_long_files_in_chunks_and_slices_by_index() {
        let mut card = FakeCard::pkcs15();
        // 300 bytes: the user PIN five times, in a file read 100 bytes at a
        // time; the ODF points at the second copy by index and length.
        let big: Vec<u8> = std::iter::repeat_n(USER_PIN, 5)
            .flatten()
            .copied()
            .collect();
        assert_eq!(big.len(), 300);
        card.files.insert(vec![0x50, 0x15, 0x44, 0x01], big);
        card.max_chunk = Some(100);
        let found = discover(&mut card).unwrap().unwrap();
        assert_eq!(found.pins, vec![user_pin(); 5]);
        // The AODF was read at offsets 0, 100 and 200; the card's short
        // answers with 9000 did not end the file early.
        let reads: Vec<_> = card
            .sent
            .iter()
            .filter(|a| a[1] == 0xB0)
            .map(|a| (a[2], a[3]))
            .collect();
        assert!(
            reads.contains(&(0x00, 0x64)) && reads.contains(&(0x00, 0xC8)),
            "{reads:02X?}"
        );

        // The ODF names only the PUK's part of the AODF: index 76 (after
        // the user PIN and the authKey object), length 37.
        let index = (USER_PIN.len() + AUTH_KEY.len()) as u8;
        assert_eq!((index, PUK.len()), (76, 37));
        let mut card = FakeCard::pkcs15();
        card.files.insert(
            vec![0x50, 0x15, 0x50, 0x31],
            vec![
                0xA8, 0x0C, 0x30, 0x0A, 0x04, 0x02, 0x44, 0x01, 0x02, 0x01, index, 0x80, 0x01, 0x25,
            ],
        );
        let found = discover(&mut card).unwrap().unwrap();
        assert_eq!(found.pins.len(), 1);
        assert_eq!(found.pins[0].label.as_deref(), Some("PUK"));
    }

    #[test]
    fn no_pkcs15_application() {
        let mut card = FakeCard::default();
        assert_eq!(discover(&mut card).unwrap(), None);
        assert_reads_only(&card);

        // An application without readable files still counts, with no PINs.
        let mut card = FakeCard::pkcs15();
        card.files.clear();
        let found = discover(&mut card).unwrap().unwrap();
        assert!(found.pins.is_empty());
    }

    #[test]
    fn a_removed_card_is_an_error() {
        let mut card = FakeCard::pkcs15();
        card.removed_after = Some(3);
        assert_eq!(discover(&mut card), Err(TransportError::CardRemoved));
    }

    /// A card that answers every READ BINARY with a full chunk, and
    /// whatever else with random answers: reading stops at the caps.
    struct Hostile {
        rng: Rng,
        sent: Vec<Vec<u8>>,
    }

    impl Transport for Hostile {
        fn transmit(&mut self, apdu: &[u8]) -> Result<Vec<u8>, TransportError> {
            self.sent.push(apdu.to_vec());
            if apdu[1] == 0xB0 {
                // An endless ODF of AODF paths, each a new file.
                let mut out = Vec::new();
                while out.len() + 10 <= 256 {
                    let fid = self.rng.next() as u8;
                    out.extend([0xA8, 0x08, 0x30, 0x06, 0x04, 0x04, 0x3F, 0x00, 0x44, fid]);
                }
                out.resize(300, 0x30); // more than asked for
                out.extend([0x90, 0x00]);
                return Ok(out);
            }
            let n = self.rng.below(8);
            let mut out = self.rng.bytes(n);
            out.extend(match self.rng.below(4) {
                0 => [0x61, 0x00],
                1 => [0x6C, 0x10],
                2 => [0x6A, 0x82],
                _ => [0x90, 0x00],
            });
            Ok(out)
        }
        fn control(&mut self, _: u32, _: &[u8]) -> Result<Vec<u8>, TransportError> {
            Err(TransportError::Unsupported)
        }
        fn reconnect(&mut self, _: bool) -> Result<(), TransportError> {
            Ok(())
        }
        fn atr(&self) -> &[u8] {
            &[]
        }
    }

    #[test]
    fn a_hostile_card_cannot_loop_the_reader() {
        for seed in 1..20 {
            let mut card = Hostile {
                rng: Rng(seed),
                sent: Vec::new(),
            };
            let _ = discover(&mut card).unwrap();
            let reads = card.sent.iter().filter(|a| a[1] == 0xB0).count();
            assert!(reads <= (1 + 1 + MAX_AODFS) * MAX_READS, "{reads}");
            let ins: BTreeSet<u8> = card.sent.iter().map(|a| a[1]).collect();
            assert!(
                ins.is_subset(&BTreeSet::from([0xA4, 0xB0, 0xC0])),
                "{ins:02X?}"
            );
        }
    }
}
