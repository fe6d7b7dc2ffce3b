//! The daemon on simulated cards as the tests start it: its readers and
//! cards, the origins it allows, its limits and its PIN dialog program, on
//! port 0. Pages connect with [`crate::ws_client::Client::page`].
#![allow(dead_code)] // each test binary uses part of it

use cardgate::OriginsFile;
use cardgate::PinDialog;
use cardgate::vcard::VirtualCard;
use cardgate::vcard::config::CardConfig;
use cardgate::vcard::sim::SimBackend;
use cardgate::vcard::sim::pinpad::SimPinpad;
use cardgate::{Limits, Server, ServerConfig};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// What the daemon will run on; [`SimDaemon::start`] starts it.
pub struct SimDaemon {
    sim: SimBackend,
    config: ServerConfig,
}

impl SimDaemon {
    /// No readers yet; port 0, no allowlist file, no origin allowed.
    pub fn new() -> SimDaemon {
        SimDaemon {
            sim: SimBackend::new(),
            config: ServerConfig {
                port: 0,
                origins_file: None,
                origins: OriginsFile::default(),
                ..ServerConfig::default()
            },
        }
    }

    /// No readers yet; the daemon as a local tool uses it
    /// ([`crate::ws_client::local_tool_config`]).
    pub fn local_tool() -> SimDaemon {
        SimDaemon {
            sim: SimBackend::new(),
            config: crate::ws_client::local_tool_config(),
        }
    }

    /// An empty reader.
    pub fn reader(self, reader: &str) -> SimDaemon {
        self.sim.add_reader(reader);
        self
    }

    /// A reader holding a card.
    pub fn card(self, reader: &str, card: CardConfig) -> SimDaemon {
        self.sim.add_reader(reader);
        self.sim
            .insert_card(reader, VirtualCard::new(card))
            .unwrap();
        self
    }

    /// A pinpad reader holding a card.
    pub fn pinpad_card(self, reader: &str, pinpad: SimPinpad, card: CardConfig) -> SimDaemon {
        self.sim.add_pinpad_reader(reader, pinpad);
        self.sim
            .insert_card(reader, VirtualCard::new(card))
            .unwrap();
        self
    }

    /// The origins allowed without a prompt.
    pub fn origins(mut self, allowed: &[&str]) -> SimDaemon {
        self.config.origins.allowed = allowed.iter().map(|o| o.to_string()).collect();
        self
    }

    /// The allowlist file the daemon reads and writes.
    pub fn origins_file(mut self, file: Option<&Path>) -> SimDaemon {
        self.config.origins_file = file.map(Path::to_path_buf);
        self
    }

    pub fn limits(mut self, limits: Limits) -> SimDaemon {
        self.config.limits = limits;
        self
    }

    /// The PIN dialog program (none: no dialog) and how long it may take.
    pub fn pin_dialog(mut self, program: Option<&Path>, timeout: Duration) -> SimDaemon {
        self.config.pin_dialog = PinDialog::new(program.map(Path::to_path_buf), timeout);
        self
    }

    /// Any other setting.
    pub fn config(mut self, f: impl FnOnce(&mut ServerConfig)) -> SimDaemon {
        f(&mut self.config);
        self
    }

    /// The daemon, and the simulated readers to act on the cards with.
    pub async fn start(self) -> (Server, SimBackend) {
        let server = Server::start(Arc::new(self.sim.clone()), self.config)
            .await
            .unwrap();
        (server, self.sim)
    }
}
