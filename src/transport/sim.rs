//! In-process simulated readers holding virtual cards.
