//! Terminology knowledge the rules apply: UCUM units and their conversions.
//! Pure data and arithmetic; it imports nothing of the crate.

pub mod units;
