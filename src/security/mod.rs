//! The daemon's gates: who may connect ([`origin`]), how many wrong PINs a
//! site may send ([`lockout`]), and how fast a connection may go
//! ([`throttle`]).

pub(crate) mod lockout;
pub(crate) mod origin;
pub(crate) mod throttle;
