//! The daemon's gates: who may connect ([`origin`]), and later whose login
//! is whose and how fast wrong PINs may come.

pub mod origin;
