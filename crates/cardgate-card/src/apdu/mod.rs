//! ISO/IEC 7816-4 command and response APDUs.
//!
//! Every concrete command the product sends is built in [`commands`], one
//! function each, naming the specification section it implements.

pub mod commands;
mod status;
pub mod tlv;

pub use status::StatusWord;

use zeroize::Zeroizing;

/// A command APDU. The data field is held in a zeroizing buffer because it
/// often carries a PIN.
#[derive(Clone, PartialEq, Eq)]
pub struct Command {
    /// Class byte (ISO 7816-4 §5.4.1): logical channel and chaining bits.
    pub cla: u8,
    /// Instruction byte (ISO 7816-4 §5.4.2).
    pub ins: u8,
    /// First parameter byte.
    pub p1: u8,
    /// Second parameter byte.
    pub p2: u8,
    /// The data field (Lc is its length); empty for none.
    pub data: Zeroizing<Vec<u8>>,
    /// Expected response length; `Some(0)` is never used, `None` means no Le.
    /// 256 (short) and 65536 (extended) are the "maximum" values.
    pub le: Option<usize>,
}

impl std::fmt::Debug for Command {
    /// Never shows the data field: it may hold a PIN.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Command({:02X} {:02X} {:02X} {:02X}, {} data bytes, le={:?})",
            self.cla,
            self.ins,
            self.p1,
            self.p2,
            self.data.len(),
            self.le
        )
    }
}

/// Why a command could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The data field is longer than an extended Lc can say.
    #[error("command data of {0} bytes is longer than 65535")]
    DataTooLong(usize),
    /// The expected length is 0 or above the extended maximum.
    #[error("expected length {0} is outside 1..=65536")]
    BadLe(usize),
}

impl Command {
    /// A command with no data field and no Le (ISO 7816-4 §5.1 case 1).
    pub fn new(cla: u8, ins: u8, p1: u8, p2: u8) -> Self {
        Command {
            cla,
            ins,
            p1,
            p2,
            data: Zeroizing::new(Vec::new()),
            le: None,
        }
    }

    /// Sets the data field; the bytes move into zeroizing memory.
    pub fn with_data(mut self, data: Vec<u8>) -> Self {
        self.data = Zeroizing::new(data);
        self
    }

    /// Sets the expected response length (see [`Command::le`]).
    pub fn with_le(mut self, le: usize) -> Self {
        self.le = Some(le);
        self
    }

    /// True when the command needs extended length fields (ISO 7816-4 §5.1).
    pub fn is_extended(&self) -> bool {
        self.data.len() > 255 || self.le.is_some_and(|le| le > 256)
    }

    /// Serializes the command (ISO 7816-4 §5.1, cases 1–4, short or extended).
    pub fn to_bytes(&self) -> Result<Zeroizing<Vec<u8>>, EncodeError> {
        let n = self.data.len();
        if n > 65535 {
            return Err(EncodeError::DataTooLong(n));
        }
        if let Some(le) = self.le
            && !(1..=65536).contains(&le)
        {
            return Err(EncodeError::BadLe(le));
        }
        let mut out = Zeroizing::new(Vec::with_capacity(n + 9));
        out.extend_from_slice(&[self.cla, self.ins, self.p1, self.p2]);
        if self.is_extended() {
            if n > 0 {
                out.extend_from_slice(&[0, (n >> 8) as u8, n as u8]);
                out.extend_from_slice(&self.data);
            }
            if let Some(le) = self.le {
                if n == 0 {
                    out.push(0);
                }
                let v = if le == 65536 { 0 } else { le };
                out.extend_from_slice(&[(v >> 8) as u8, v as u8]);
            }
        } else {
            if n > 0 {
                out.push(n as u8);
                out.extend_from_slice(&self.data);
            }
            if let Some(le) = self.le {
                out.push(if le == 256 { 0 } else { le as u8 });
            }
        }
        Ok(out)
    }
}

/// A response APDU: data followed by the two status bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Response {
    /// The response data field, without SW1-SW2.
    pub data: Vec<u8>,
    /// SW1-SW2 (ISO 7816-4 §5.6).
    pub sw: StatusWord,
}

impl std::fmt::Debug for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Response({} data bytes, {})", self.data.len(), self.sw)
    }
}

/// A response shorter than the two status bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("response of {0} bytes has no status word")]
pub struct TruncatedResponse(pub usize);

impl Response {
    /// Splits a response as the card sent it into data and status word.
    pub fn parse(raw: &[u8]) -> Result<Self, TruncatedResponse> {
        if raw.len() < 2 {
            return Err(TruncatedResponse(raw.len()));
        }
        let (data, sw) = raw.split_at(raw.len() - 2);
        Ok(Response {
            data: data.to_vec(),
            sw: StatusWord::from_u16(u16::from_be_bytes([sw[0], sw[1]])),
        })
    }

    /// The card answered 9000, normal processing.
    pub fn is_ok(&self) -> bool {
        self.sw == StatusWord::Ok
    }
}

/// The bound on GET RESPONSE rounds, so a card that keeps answering 61xx
/// cannot hold a reader forever.
pub const MAX_GET_RESPONSE_ROUNDS: usize = 64;

/// Sends `cmd` with `transmit` and handles the transport-level status words
/// transparently (ISO 7816-4 §5.3.4 / ISO 7816-3 T=0 procedure):
/// - `61xx`: more data available → GET RESPONSE with Le=xx, concatenated;
/// - `6Cxx`: wrong Le → the same command re-sent once with Le=xx.
///
/// `transmit` receives serialized bytes and returns data||SW.
pub fn exchange<E>(
    cmd: &Command,
    mut transmit: impl FnMut(&[u8]) -> Result<Vec<u8>, E>,
) -> Result<Response, E>
where
    E: From<TruncatedResponse> + From<EncodeError>,
{
    let bytes = cmd.to_bytes()?;
    let mut resp = Response::parse(&transmit(&bytes)?)?;
    if let StatusWord::WrongLe(le) = resp.sw {
        let again = cmd.clone().with_le(if le == 0 { 256 } else { le as usize });
        resp = Response::parse(&transmit(&again.to_bytes()?)?)?;
    }
    let mut data = std::mem::take(&mut resp.data);
    let mut rounds = 0;
    while let StatusWord::BytesRemaining(n) = resp.sw {
        rounds += 1;
        if rounds > MAX_GET_RESPONSE_ROUNDS {
            break;
        }
        let le = if n == 0 { 256 } else { n as usize };
        let get = commands::get_response(cmd.cla & 0x03, le);
        resp = Response::parse(&transmit(&get.to_bytes()?)?)?;
        data.append(&mut resp.data);
    }
    resp.data = data;
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02X}")).collect()
    }

    #[test]
    fn encodes_the_four_short_cases() {
        assert_eq!(
            hex(&Command::new(0, 0x20, 0, 0x80).to_bytes().unwrap()),
            "00200080"
        );
        assert_eq!(
            hex(&Command::new(0, 0xCA, 0, 0xC4)
                .with_le(256)
                .to_bytes()
                .unwrap()),
            "00CA00C400"
        );
        assert_eq!(
            hex(&Command::new(0, 0x20, 0, 0x80)
                .with_data(vec![1, 2])
                .to_bytes()
                .unwrap()),
            "00200080020102"
        );
        assert_eq!(
            hex(&Command::new(0, 0xA4, 4, 0)
                .with_data(vec![0xA0])
                .with_le(16)
                .to_bytes()
                .unwrap()),
            "00A4040001A010"
        );
    }

    #[test]
    fn encodes_extended_length_when_needed() {
        let long = Command::new(0, 0xDB, 0x3F, 0xFF).with_data(vec![0xAB; 300]);
        let b = long.to_bytes().unwrap();
        assert_eq!(hex(&b[..7]), "00DB3FFF00012C");
        assert_eq!(b.len(), 7 + 300);

        let le_only = Command::new(0, 0xCB, 0x3F, 0xFF)
            .with_le(65536)
            .to_bytes()
            .unwrap();
        assert_eq!(hex(&le_only), "00CB3FFF000000");

        let both = Command::new(0, 0xCB, 0x3F, 0xFF)
            .with_data(vec![0x5C, 0x01, 0x7E])
            .with_le(1000)
            .to_bytes()
            .unwrap();
        assert_eq!(hex(&both), "00CB3FFF0000035C017E03E8");
    }

    #[test]
    fn refuses_unencodable_commands() {
        let too_long = Command::new(0, 0, 0, 0).with_data(vec![0; 70000]);
        assert_eq!(too_long.to_bytes(), Err(EncodeError::DataTooLong(70000)));
        assert_eq!(
            Command::new(0, 0, 0, 0).with_le(0).to_bytes(),
            Err(EncodeError::BadLe(0))
        );
    }

    #[test]
    fn debug_never_shows_data() {
        let c = Command::new(0, 0x20, 0, 0x80).with_data(b"123456".to_vec());
        assert!(!format!("{c:?}").contains("31"));
    }

    #[derive(Debug, PartialEq)]
    enum E {
        T(TruncatedResponse),
        Enc(EncodeError),
    }
    impl From<TruncatedResponse> for E {
        fn from(t: TruncatedResponse) -> Self {
            E::T(t)
        }
    }
    impl From<EncodeError> for E {
        fn from(t: EncodeError) -> Self {
            E::Enc(t)
        }
    }

    #[test]
    fn follows_61xx_with_get_response() {
        let mut sent = Vec::new();
        let mut replies = vec![
            vec![1, 2, 0x61, 0x02],
            vec![3, 4, 0x61, 0x01],
            vec![5, 0x90, 0x00],
        ]
        .into_iter();
        let r = exchange(
            &Command::new(0, 0xCA, 0, 0xC4).with_le(256),
            |b: &[u8]| {
                sent.push(hex(b));
                Ok::<_, E>(replies.next().unwrap())
            },
        )
        .unwrap();
        assert_eq!(r.data, vec![1, 2, 3, 4, 5]);
        assert_eq!(r.sw, StatusWord::Ok);
        assert_eq!(sent, vec!["00CA00C400", "00C0000002", "00C0000001"]);
    }

    #[test]
    fn resends_with_le_after_6cxx() {
        let mut sent = Vec::new();
        let mut replies = vec![vec![0x6C, 0x07], vec![1, 2, 3, 4, 5, 6, 7, 0x90, 0x00]].into_iter();
        let r = exchange(
            &Command::new(0, 0xCA, 0, 0xC4).with_le(256),
            |b: &[u8]| {
                sent.push(hex(b));
                Ok::<_, E>(replies.next().unwrap())
            },
        )
        .unwrap();
        assert_eq!(r.data.len(), 7);
        assert_eq!(sent, vec!["00CA00C400", "00CA00C407"]);
    }

    #[test]
    fn stops_an_endless_61xx_stream() {
        let mut n = 0;
        let r = exchange(&Command::new(0, 0xCA, 0, 0xC4), |_: &[u8]| {
            n += 1;
            Ok::<_, E>(vec![0xAA, 0x61, 0x01])
        })
        .unwrap();
        assert_eq!(n, MAX_GET_RESPONSE_ROUNDS + 1);
        assert!(matches!(r.sw, StatusWord::BytesRemaining(1)));
    }

    #[test]
    fn truncated_response_is_an_error() {
        let r = exchange(&Command::new(0, 0xCA, 0, 0xC4), |_: &[u8]| {
            Ok::<_, E>(vec![0x90])
        });
        assert_eq!(r, Err(E::T(TruncatedResponse(1))));
    }
}
