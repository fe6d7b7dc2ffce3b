//! PC/SC backend (pcscd through the `pcsc` crate).
