//! The simulated card as the card itself sees it, read outside the daemon.
#![allow(dead_code)] // each test binary uses part of it

use cardgate::testing::Service;
use cardgate::vcard::sim::SimBackend;
use std::sync::Arc;

/// Whether the card in `reader` holds a verified user PIN.
pub async fn pin_verified(sim: &SimBackend, reader: &str) -> bool {
    let service = Service::new(Arc::new(sim.clone()));
    let reader = reader.to_string();
    tokio::task::spawn_blocking(move || {
        service
            .with_engine(&reader, |e| e.status("pin"))
            .unwrap()
            .validated
    })
    .await
    .unwrap()
}

/// The values the card's reference data object `name` compared, as text,
/// each with its counter before and after: the card's own witness of what
/// reached it.
pub fn presented(sim: &SimBackend, reader: &str, name: &str) -> Vec<(String, u8, u8)> {
    sim.with_card(reader, |c| c.presented(name))
        .unwrap()
        .into_iter()
        .map(|p| {
            let bytes: Vec<u8> = p
                .value
                .expose()
                .iter()
                .copied()
                .filter(|b| *b != 0xFF)
                .collect();
            (
                String::from_utf8_lossy(&bytes).into_owned(),
                p.tries_before,
                p.tries_after,
            )
        })
        .collect()
}

/// The tries left of the card's reference data object `name` (PIV `pin`,
/// `puk`; OpenPGP `pw1`, `pw3`, `rc`), as the card counts them.
pub fn tries(sim: &SimBackend, reader: &str, name: &str) -> u8 {
    let counters = sim.with_card(reader, |c| c.counters()).unwrap();
    counters
        .lines()
        .find_map(|l| {
            let mut f = l.split_whitespace();
            (f.next() == Some(name)).then(|| f.next().unwrap().parse().unwrap())
        })
        .unwrap()
}
