//! Request ids: 128 random bits as 32 lowercase hex characters, generated
//! without a lock from a per-thread generator.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::cell::RefCell;

thread_local! {
    static RNG: RefCell<SmallRng> = RefCell::new(SmallRng::from_os_rng());
}

/// A fresh random request id.
pub fn request_id() -> String {
    String::from_utf8_lossy(&request_id_bytes()).into_owned()
}

/// A fresh random request id as ASCII hex, without allocating.
pub fn request_id_bytes() -> [u8; 32] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let v: u128 = RNG.with(|r| r.borrow_mut().random());
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = HEX[((v >> (124 - 4 * i)) & 0xf) as usize];
    }
    out
}

/// A fast per-thread random u64 for balancer choices and jitter.
pub fn random_u64() -> u64 {
    RNG.with(|r| r.borrow_mut().random())
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_are_hex_and_distinct() {
        let a = super::request_id();
        let b = super::request_id();
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
