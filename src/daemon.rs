//! The composition root: what `cardgate serve` and `cardgate demo` build
//! from the effective configuration — the card
//! backend (PC/SC, or simulated cards for the demo), the PIN policies and
//! the daemon's settings — in one place, so every front end is wired the
//! same way.

use crate::config::Config;
use crate::policy::PolicySet;
use crate::server::ServerConfig;
use crate::vcard::VirtualCard;
use crate::vcard::config::CardConfig;
use crate::vcard::sim::SimBackend;
use clap::ValueEnum;
use std::sync::Arc;

#[derive(Clone, Copy, ValueEnum)]
/// A simulated card for `cardgate demo` (`--card`).
pub(crate) enum DemoCard {
    /// A PIV card.
    Piv,
    /// An OpenPGP card.
    Openpgp,
}

/// Simulated readers, one card each, with factory default PINs; and a line
/// describing each.
pub(crate) fn demo_sim(cards: &[DemoCard]) -> (SimBackend, Vec<String>) {
    let sim = SimBackend::new();
    let mut lines = Vec::new();
    for (i, card) in cards.iter().enumerate() {
        let reader = format!("cardgate demo reader {i}");
        sim.add_reader(&reader);
        let (config, pins) = match card {
            DemoCard::Piv => (CardConfig::piv(), "PIV card: PIN 123456, PUK 12345678"),
            DemoCard::Openpgp => (
                CardConfig::openpgp(),
                "OpenPGP card: user PIN 123456, admin PIN 12345678",
            ),
        };
        // A fresh simulated reader always takes a card.
        let _ = sim.insert_card(&reader, VirtualCard::new(config));
        lines.push(format!("  {reader}: {pins}"));
    }
    (sim, lines)
}

/// The PIN policies from the configuration's directories (a policy file
/// that cannot be read is skipped with a warning).
pub(crate) fn policies(config: &Config) -> Arc<PolicySet> {
    let (set, errors) = PolicySet::load(&config.policy_sources());
    for e in errors {
        tracing::warn!("policy file ignored: {e}");
    }
    Arc::new(set)
}

/// The daemon's settings from the effective configuration.
pub(crate) fn server_config(config: &Config) -> Result<ServerConfig, String> {
    let tls = if config.tls.enabled {
        Some(crate::tls::server_config(
            &config.tls.cert,
            &config.tls.key,
        )?)
    } else {
        None
    };
    Ok(ServerConfig {
        port: config.port,
        op_timeout: config.op_timeout,
        origins_file: config.origins_file.clone(),
        origins: config.origins.clone(),
        limits: config.limits.clone(),
        policies: policies(config),
        profiles: Arc::new(config.card_profiles()),
        pin_dialog: crate::pinentry::PinDialog::new(
            config.pin_dialog.program.clone(),
            config.pin_dialog.timeout,
        ),
        tls,
        ..ServerConfig::default()
    })
}
