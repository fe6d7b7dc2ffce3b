//! The simulated card as the card itself sees it, read outside the daemon.
#![allow(dead_code)] // each test binary uses part of it

use cardgate::service::Service;
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
