//! One reader registry: what the daemon says about readers and cards
//! (`getReaders`, the service's reader list) is the backend's truth after
//! any interleaving of reader and card events — readers plugged in and
//! out, cards inserted, removed and swapped, the PC/SC service restarting —
//! with work queued on the readers meanwhile. A second copy of the reader
//! list that missed an update would show here.

#[path = "common/daemon.rs"]
mod daemon;
#[path = "common/ws_client.rs"]
mod ws_client;

use cardgate::testing::{ReaderList, Service};
use cardgate::transport::{Backend, Event, ReaderInfo};
use cardgate::vcard::VirtualCard;
use cardgate::vcard::config::CardConfig;
use cardgate::vcard::sim::SimBackend;
use daemon::SimDaemon;
use proptest::prelude::*;
use serde_json::{Value, json};
use std::sync::{Arc, mpsc};
use ws_client::Client;

const READERS: [&str; 4] = ["Reader A", "Reader B", "Reader C", "Reader D"];

#[derive(Debug, Clone)]
enum Op {
    AddReader(usize),
    RemoveReader(usize),
    /// A PIV card (`true`) or an OpenPGP card, into the reader; a card in
    /// it already comes out first.
    Insert(usize, bool),
    RemoveCard(usize),
    /// A job queued on the reader (its worker is started if it has none).
    Work(usize),
    /// The PC/SC service goes down and comes back, telling its readers
    /// again as a monitor does.
    PcscRestart,
}

fn op() -> impl Strategy<Value = Op> {
    let r = 0..READERS.len();
    prop_oneof![
        r.clone().prop_map(Op::AddReader),
        r.clone().prop_map(Op::RemoveReader),
        (r.clone(), any::<bool>()).prop_map(|(i, piv)| Op::Insert(i, piv)),
        r.clone().prop_map(Op::RemoveCard),
        r.prop_map(Op::Work),
        Just(Op::PcscRestart),
    ]
}

fn card(piv: bool) -> VirtualCard {
    VirtualCard::new(if piv {
        CardConfig::piv()
    } else {
        CardConfig::openpgp()
    })
}

/// Puts a card in `reader`, taking out the one in it first: a card swapped
/// is removed, then inserted, as PC/SC reports it (its monitor tells a swap
/// by the reader's event counter; the simulation would report an insertion
/// only).
fn swap_in(sim: &SimBackend, reader: &str, piv: bool) {
    drop(sim.remove_card(reader));
    drop(sim.insert_card(reader, card(piv)));
}

/// Does to the simulated readers what `op` says (a card for a reader that
/// is not there is refused by the simulation, and that is fine).
fn act(sim: &SimBackend, op: &Op) {
    match *op {
        Op::AddReader(i) => sim.add_reader(READERS[i]),
        Op::RemoveReader(i) => sim.remove_reader(READERS[i]),
        Op::Insert(i, piv) => swap_in(sim, READERS[i], piv),
        Op::RemoveCard(i) => drop(sim.remove_card(READERS[i])),
        Op::Work(_) | Op::PcscRestart => {}
    }
}

/// The backend's readers as the registry lists them: by name.
fn truth(sim: &SimBackend) -> Vec<ReaderInfo> {
    let mut list = sim.list_readers().unwrap();
    list.sort_by(|a, b| a.name.cmp(&b.name));
    list
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// The service applies each event as the daemon's event thread does;
    /// after every one, its reader list is the backend's.
    #[test]
    fn the_reader_list_is_the_backends_after_every_event(
        start in proptest::collection::vec(any::<bool>(), READERS.len()),
        ops in proptest::collection::vec(op(), 1..40),
    ) {
        let sim = SimBackend::new();
        for (i, with_card) in start.iter().enumerate() {
            if i % 2 == 0 {
                sim.add_reader(READERS[i]);
                if *with_card {
                    sim.insert_card(READERS[i], card(i == 0)).unwrap();
                }
            }
        }
        let service = Service::new(Arc::new(sim.clone()));
        service.load_readers();
        let (tx, events) = mpsc::channel();
        let _watch = sim.watch(tx);
        let apply = |events: &mpsc::Receiver<Event>| {
            for event in events.try_iter() {
                service.handle_event(&event);
            }
        };
        apply(&events);
        prop_assert_eq!(service.reader_list(), ReaderList { pcsc_up: true, readers: truth(&sim) });
        for op in &ops {
            act(&sim, op);
            match *op {
                Op::Work(i) => drop(service.queue(READERS[i], |e| e.statuses())),
                Op::PcscRestart => {
                    service.handle_event(&Event::ServiceDown);
                    prop_assert_eq!(service.reader_list(), ReaderList { pcsc_up: false, readers: vec![] });
                    service.handle_event(&Event::ServiceUp);
                    for r in sim.list_readers().unwrap() {
                        service.handle_event(&Event::ReaderAdded { reader: r.name.clone() });
                        if let Some(atr) = r.atr {
                            service.handle_event(&Event::CardInserted { reader: r.name, atr });
                        }
                    }
                }
                _ => {}
            }
            apply(&events);
            prop_assert_eq!(
                service.reader_list(),
                ReaderList { pcsc_up: true, readers: truth(&sim) },
                "after {:?}", op
            );
        }
    }
}

/// A tiny deterministic generator (xorshift64*), so a failing round can be
/// replayed from its seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n
    }
}

/// `getReaders` as the backend's truth would answer it: each reader's name,
/// whether a card is in it and its ATR.
fn readers_seen(result: &Value) -> Vec<Value> {
    result["readers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| json!({ "name": r["name"], "cardPresent": r["cardPresent"], "atr": r["atr"] }))
        .collect()
}

fn readers_true(sim: &SimBackend) -> Vec<Value> {
    truth(sim)
        .into_iter()
        .map(|r| {
            let mut v = json!({ "name": r.name, "cardPresent": r.atr.is_some(), "atr": null });
            if let Some(atr) = r.atr {
                v["atr"] = json!(atr.iter().map(|b| format!("{b:02X}")).collect::<String>());
            }
            v
        })
        .collect()
}

/// Through the running daemon: bursts of random events from the backend
/// (its event thread applies them while pages ask for readers), then
/// `getReaders` right after the burst — once a reader plugged in last is
/// announced, every event before it has been applied — equals the backend's
/// truth, and each card in it is described.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_readers_after_a_burst_of_events_is_the_backends_truth() {
    let (server, sim) = SimDaemon::local_tool()
        .card(READERS[0], CardConfig::piv())
        .reader(READERS[1])
        .start()
        .await;
    let mut watcher = Client::connect(server.port()).await;
    watcher.ok("hello", json!({})).await;
    let mut asker = Client::connect(server.port()).await;
    let seed = 0x5EED_CA4D_u64;
    let mut rng = Rng(seed);
    let mut piv = true;
    for round in 0..40 {
        for _ in 0..1 + rng.below(12) {
            let i = rng.below(READERS.len());
            match rng.below(6) {
                0 => sim.add_reader(READERS[i]),
                1 => sim.remove_reader(READERS[i]),
                2 | 3 => {
                    piv = !piv;
                    swap_in(&sim, READERS[i], piv);
                }
                4 => drop(sim.remove_card(READERS[i])),
                // A page asks meanwhile: its answer is whatever the
                // registry holds at that instant, but it must not disturb it.
                _ => drop(asker.call("getReaders", json!({})).await),
            }
        }
        // The marker: a reader plugged in after the burst. Its
        // notification leaves the event thread after every event before it.
        let marker = format!("Marker {round}");
        sim.add_reader(&marker);
        watcher
            .notification("readerAdded", |p| p["reader"] == marker.as_str())
            .await;
        let result = watcher.ok("getReaders", json!({})).await;
        assert_eq!(result["pcsc"], "up");
        assert_eq!(
            readers_seen(&result),
            readers_true(&sim),
            "round {round} of seed {seed:#x}"
        );
        for r in result["readers"].as_array().unwrap() {
            if r["cardPresent"] == true {
                let profile = &r["token"]["profile"];
                assert!(profile == "piv" || profile == "openpgp", "{r}");
            }
        }
        let registry = cardgate::testing::service(&server).reader_list();
        assert_eq!(registry.readers, truth(&sim), "round {round}");
        sim.remove_reader(&marker);
    }
    server.shutdown().await;
}
