//! The daemon's gates: who may connect ([`origin`]), how many wrong PINs a
//! site may send ([`lockout`]), and how fast a connection may go
//! ([`throttle`]).

pub mod lockout;
pub mod origin;
pub mod throttle;
