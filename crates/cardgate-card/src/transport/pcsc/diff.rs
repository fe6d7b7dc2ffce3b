//! Pure event computation: what changed between two views of the readers.
//!
//! The monitor thread turns every `SCardGetStatusChange` answer into a
//! [`Snapshot`] and asks [`diff`] which [`Event`]s describe the step from the
//! previous snapshot. Keeping this free of PC/SC calls lets it be unit tested
//! without pcscd.

use std::collections::BTreeMap;

use crate::transport::Event;

/// What the monitor knows about one reader.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReaderSnapshot {
    /// The ATR when a usable card is present (present and not mute).
    pub card: Option<Vec<u8>>,
    /// pcsc-lite's per-reader event counter (high 16 bits of
    /// `dwEventState`), incremented on every card insertion and removal.
    /// `None` when the platform does not report one.
    pub event_count: Option<u32>,
}

/// All readers known at one moment, by name.
pub type Snapshot = BTreeMap<String, ReaderSnapshot>;

/// The events that lead from `old` to `new`, in a consistent order:
/// removals first (a card is removed before its reader), then additions
/// (a reader is added before its card), so that a consumer replaying them
/// always holds a coherent view.
///
/// A card that is present in both snapshots but whose event counter moved
/// (or whose ATR changed) was removed and inserted again between the two
/// observations: that yields `CardRemoved` then `CardInserted`, because every
/// session state of the first card (verified PINs, selected application) is
/// gone. A card that came and went while the reader looked empty both times
/// yields nothing: nobody could have used it, and its ATR is unknown.
pub fn diff(old: &Snapshot, new: &Snapshot) -> Vec<Event> {
    let mut events = Vec::new();

    // Removals.
    for (name, before) in old {
        match new.get(name) {
            None => {
                if before.card.is_some() {
                    events.push(Event::CardRemoved {
                        reader: name.clone(),
                    });
                }
                events.push(Event::ReaderRemoved {
                    reader: name.clone(),
                });
            }
            Some(after) => {
                if before.card.is_some() && (after.card.is_none() || card_replaced(before, after)) {
                    events.push(Event::CardRemoved {
                        reader: name.clone(),
                    });
                }
            }
        }
    }

    // Additions.
    for (name, after) in new {
        match old.get(name) {
            None => {
                events.push(Event::ReaderAdded {
                    reader: name.clone(),
                });
                if let Some(atr) = &after.card {
                    events.push(Event::CardInserted {
                        reader: name.clone(),
                        atr: atr.clone(),
                    });
                }
            }
            Some(before) => {
                if let Some(atr) = &after.card
                    && (before.card.is_none() || card_replaced(before, after))
                {
                    events.push(Event::CardInserted {
                        reader: name.clone(),
                        atr: atr.clone(),
                    });
                }
            }
        }
    }
    events
}

/// Both snapshots show a card; was it taken out in between?
fn card_replaced(before: &ReaderSnapshot, after: &ReaderSnapshot) -> bool {
    let counter_moved = matches!(
        (before.event_count, after.event_count),
        (Some(a), Some(b)) if a != b
    );
    counter_moved || before.card != after.card
}

/// Every reader and card of `old` going away (the service stopped).
pub(crate) fn all_removed(old: &Snapshot) -> Vec<Event> {
    diff(old, &Snapshot::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "Virtual PCD 00 00";
    const B: &str = "Virtual PCD 00 01";

    fn empty(count: u32) -> ReaderSnapshot {
        ReaderSnapshot {
            card: None,
            event_count: Some(count),
        }
    }

    fn card(atr: &[u8], count: u32) -> ReaderSnapshot {
        ReaderSnapshot {
            card: Some(atr.to_vec()),
            event_count: Some(count),
        }
    }

    fn snap(items: &[(&str, ReaderSnapshot)]) -> Snapshot {
        items
            .iter()
            .map(|(n, s)| (n.to_string(), s.clone()))
            .collect()
    }

    fn added(r: &str) -> Event {
        Event::ReaderAdded { reader: r.into() }
    }
    fn removed(r: &str) -> Event {
        Event::ReaderRemoved { reader: r.into() }
    }
    fn inserted(r: &str, atr: &[u8]) -> Event {
        Event::CardInserted {
            reader: r.into(),
            atr: atr.to_vec(),
        }
    }
    fn card_out(r: &str) -> Event {
        Event::CardRemoved { reader: r.into() }
    }

    #[test]
    fn initial_state_adds_readers_then_cards() {
        let new = snap(&[(A, card(&[0x3B, 1], 1)), (B, empty(0))]);
        assert_eq!(
            diff(&Snapshot::new(), &new),
            vec![added(A), inserted(A, &[0x3B, 1]), added(B)]
        );
    }

    #[test]
    fn no_change_no_events() {
        let s = snap(&[(A, card(&[0x3B], 3)), (B, empty(2))]);
        assert!(diff(&s, &s).is_empty());
    }

    #[test]
    fn insertion_and_removal() {
        let a = snap(&[(A, empty(0))]);
        let b = snap(&[(A, card(&[0x3B, 2], 1))]);
        assert_eq!(diff(&a, &b), vec![inserted(A, &[0x3B, 2])]);
        let c = snap(&[(A, empty(2))]);
        assert_eq!(diff(&b, &c), vec![card_out(A)]);
    }

    #[test]
    fn quick_swap_with_same_atr_is_seen_through_the_counter() {
        let a = snap(&[(A, card(&[0x3B, 7], 1))]);
        let b = snap(&[(A, card(&[0x3B, 7], 3))]);
        assert_eq!(diff(&a, &b), vec![card_out(A), inserted(A, &[0x3B, 7])]);
    }

    #[test]
    fn swap_with_other_atr_without_counter() {
        let a = snap(&[(
            A,
            ReaderSnapshot {
                card: Some(vec![1]),
                event_count: None,
            },
        )]);
        let b = snap(&[(
            A,
            ReaderSnapshot {
                card: Some(vec![2]),
                event_count: None,
            },
        )]);
        assert_eq!(diff(&a, &b), vec![card_out(A), inserted(A, &[2])]);
    }

    #[test]
    fn same_card_without_counter_is_unchanged() {
        let s = ReaderSnapshot {
            card: Some(vec![1]),
            event_count: None,
        };
        let a = snap(&[(A, s.clone())]);
        let b = snap(&[(
            A,
            ReaderSnapshot {
                event_count: Some(4),
                ..s
            },
        )]);
        assert!(diff(&a, &b).is_empty());
    }

    #[test]
    fn transient_card_in_empty_reader_is_ignored() {
        let a = snap(&[(A, empty(0))]);
        let b = snap(&[(A, empty(2))]);
        assert!(diff(&a, &b).is_empty());
    }

    #[test]
    fn reader_removed_with_its_card() {
        let a = snap(&[(A, card(&[0x3B], 1)), (B, empty(0))]);
        let b = snap(&[(B, empty(0))]);
        assert_eq!(diff(&a, &b), vec![card_out(A), removed(A)]);
    }

    #[test]
    fn removals_come_before_additions() {
        let a = snap(&[(B, card(&[9], 1))]);
        let b = snap(&[(A, card(&[8], 1))]);
        assert_eq!(
            diff(&a, &b),
            vec![card_out(B), removed(B), added(A), inserted(A, &[8])]
        );
    }

    #[test]
    fn all_removed_lists_cards_then_readers() {
        let a = snap(&[(A, card(&[1], 1)), (B, empty(0))]);
        assert_eq!(all_removed(&a), vec![card_out(A), removed(A), removed(B)]);
    }
}
