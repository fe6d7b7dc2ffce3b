//! PIN format policies: the constraints of SCWS `Pin.getConstraints()` /
//! `Pin.checkConstraints()`.

pub mod constraint;

pub use constraint::{Constraint, check_all};
