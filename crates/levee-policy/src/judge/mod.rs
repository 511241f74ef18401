//! Temporary: the judge's bucket layout (replaced by the judge branch).
pub mod histogram;
