//! The PIN engine on one simulated reader and card, as the engine tests
//! drive it: the service's worker for that reader, and the card read
//! outside the engine.
#![allow(dead_code)] // each test binary uses part of it

use cardgate::error::Error;
use cardgate::pin::{Engine, PinStatus};
use cardgate::policy::PolicySet;
use cardgate::secret::Secret;
use cardgate::testing::Service;
use cardgate::vcard::VirtualCard;
use cardgate::vcard::config::CardConfig;
use cardgate::vcard::sim::SimBackend;
use cardgate::vcard::sim::pinpad::SimPinpad;
use std::sync::Arc;

pub struct Rig {
    pub sim: SimBackend,
    pub service: Service,
    /// The reader holding the card.
    pub reader: &'static str,
}

impl Rig {
    /// A plain reader holding a card; the built-in policies.
    pub fn new(reader: &'static str, card: CardConfig) -> Rig {
        let sim = SimBackend::new();
        sim.add_reader(reader);
        Rig::on(sim, reader, card, PolicySet::builtin())
    }

    /// A pinpad reader holding a card; the built-in policies.
    pub fn pinpad(reader: &'static str, card: CardConfig, pinpad: SimPinpad) -> Rig {
        let sim = SimBackend::new();
        sim.add_pinpad_reader(reader, pinpad);
        Rig::on(sim, reader, card, PolicySet::builtin())
    }

    /// A plain reader holding a card; `policies` instead of the built-in ones.
    pub fn with_policies(reader: &'static str, card: CardConfig, policies: PolicySet) -> Rig {
        let sim = SimBackend::new();
        sim.add_reader(reader);
        Rig::on(sim, reader, card, policies)
    }

    fn on(sim: SimBackend, reader: &'static str, card: CardConfig, policies: PolicySet) -> Rig {
        sim.insert_card(reader, VirtualCard::new(card)).unwrap();
        let service = Service::with_policies(Arc::new(sim.clone()), Arc::new(policies));
        Rig {
            sim,
            service,
            reader,
        }
    }

    /// Runs `f` on the reader's engine.
    pub fn run<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Engine) -> Result<R, Error> + Send + 'static,
    ) -> Result<R, Error> {
        self.service.with_engine(self.reader, f)
    }

    pub fn status(&self, pin: &'static str) -> PinStatus {
        self.run(move |e| e.status(pin)).unwrap()
    }

    /// The remaining tries the engine reports.
    pub fn tries(&self, pin: &'static str) -> Option<u8> {
        self.status(pin).remaining_tries
    }

    pub fn validated(&self, pin: &'static str) -> bool {
        self.status(pin).validated
    }

    /// The user PIN counter as the card itself holds it.
    pub fn card_tries(&self) -> u8 {
        let reader = self.reader;
        self.sim.with_card(reader, |c| c.user_pin_tries()).unwrap()
    }
}

/// Operations with values the page sent (a trait, so that a test of
/// values typed elsewhere may name its own).
pub trait FromThePage {
    fn login(&self, pin: &'static str, value: &'static str) -> Result<(), Error>;
}

impl FromThePage for Rig {
    fn login(&self, pin: &'static str, value: &'static str) -> Result<(), Error> {
        self.run(move |e| e.login(pin, &s(value), false))
    }
}

pub fn s(v: &str) -> Secret {
    Secret::from(v)
}
