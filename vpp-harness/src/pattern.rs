//! Test data every byte of which can be checked.

/// Deterministic pseudo-random bytes (xorshift), so that every byte a test
/// moves can be checked.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
