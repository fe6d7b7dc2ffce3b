//! Our own virtual smart card: an ISO 7816 PIN state machine with a PIV and
//! an OpenPGP profile. It runs in-process (the simulated transport) or as a
//! separate process speaking the vpcd protocol to pcscd (`cardgate vcard`).

/// A virtual card in one reader.
pub struct VirtualCard {}

impl VirtualCard {
    /// The answer to reset.
    pub fn atr(&self) -> Vec<u8> {
        vec![0x3B, 0x00]
    }

    /// Cold or warm reset: every verified state and the selection are dropped.
    pub fn reset(&mut self) {}

    /// Processes one command APDU; returns response data || SW1 SW2.
    pub fn process(&mut self, _apdu: &[u8]) -> Vec<u8> {
        vec![0x6D, 0x00]
    }
}
