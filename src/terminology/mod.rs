//! Terminology knowledge the rules apply: UCUM units and their conversions,
//! and the RxNorm drug table (ingredients, strengths, dose forms).
//! Pure data and arithmetic; it imports nothing of the crate.

pub mod drugs;
pub mod units;
