//! The HTTP routes' handlers, one file per endpoint.

pub mod feedback;
