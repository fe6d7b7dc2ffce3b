//! PC/SC backend (pcscd through the `pcsc` crate).

/// Placeholder until the PC/SC backend lands.
pub struct PcscBackend;

impl PcscBackend {
    pub fn new() -> Self {
        PcscBackend
    }
}

impl Default for PcscBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl super::Backend for PcscBackend {
    fn list_readers(&self) -> Result<Vec<super::ReaderInfo>, super::TransportError> {
        Err(super::TransportError::NoService)
    }
    fn connect(&self, _reader: &str) -> Result<Box<dyn super::Transport>, super::TransportError> {
        Err(super::TransportError::NoService)
    }
    fn watch(&self, _events: std::sync::mpsc::Sender<super::Event>) -> Box<dyn super::WatchGuard> {
        struct Nothing;
        impl super::WatchGuard for Nothing {}
        Box::new(Nothing)
    }
}
