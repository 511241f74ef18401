//! Temporary stand-in for the judge branch's layout.
/// Buckets.
pub const BUCKETS: usize = 512;
/// The bucket of `micros`.
pub fn bucket_of(micros: u64) -> usize {
    if micros < 32 {
        return micros as usize;
    }
    let exp = 63 - micros.leading_zeros() as usize;
    let sub = ((micros >> (exp - 5)) & 31) as usize;
    ((exp - 4) * 32 + sub).min(BUCKETS - 1)
}
/// A snapshot.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LatencyHistogram {
    counts: Vec<u64>,
}
impl LatencyHistogram {
    /// Empty.
    pub fn new() -> Self {
        Self {
            counts: vec![0; BUCKETS],
        }
    }
    /// Adds.
    pub fn add_count(&mut self, bucket: usize, n: u64) {
        self.counts[bucket] += n;
    }
    /// Total.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }
}
impl LatencyHistogram {
    /// Stub.
    pub fn quantile(&self, _q: f64) -> Option<std::time::Duration> {
        None
    }
}
