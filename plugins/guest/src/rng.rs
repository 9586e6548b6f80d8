//! Deterministic randomness for generators.
//!
//! Generator output must be a pure function of the tick, so generators seed
//! a [`SplitMix64`] per record from a stable hash ([`fnv1a64`] /
//! [`record_seed`]) and never keep state across ticks. Both are defined
//! bit-for-bit here (no platform RNG, no `std::hash`), so native and wasm
//! builds produce the same numbers.

/// The splitmix64 generator (Steele, Lea & Flood). Small, fast, and good
/// enough for test data; not for cryptography.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator starting from `seed`.
    pub const fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform float in `[0, 1)`, from the top 53 bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// A uniform integer in `[0, n)`; `n` must be non-zero.
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "below(0)");
        // Lemire's multiply-shift; the tiny bias is irrelevant here.
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// A uniform integer in `[lo, hi]` (inclusive).
    pub fn range_i64(&mut self, lo: i64, hi: i64) -> i64 {
        assert!(lo <= hi, "range_i64({lo}, {hi})");
        let span = (hi as i128 - lo as i128 + 1) as u128;
        if span > u128::from(u64::MAX) {
            return self.next_u64() as i64;
        }
        lo.wrapping_add(self.below(span as u64) as i64)
    }

    /// A uniform float in `[lo, hi)`.
    pub fn range_f64(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.next_f64()
    }

    /// `true` with probability `p` (`p <= 0` never, `p >= 1` always).
    pub fn chance(&mut self, p: f64) -> bool {
        self.next_f64() < p
    }

    /// A uniformly chosen element of a non-empty slice.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// 64-bit FNV-1a of `bytes`: a stable hash, the same on every platform.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    fnv1a64_extend(FNV_OFFSET, bytes)
}

/// Continues an FNV-1a hash `state` with more bytes.
pub fn fnv1a64_extend(state: u64, bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(state, |h, b| (h ^ u64::from(*b)).wrapping_mul(FNV_PRIME))
}

/// The stable hash of a sequence of `u64`s (each hashed as 8 little-endian
/// bytes), finished with a splitmix64 round so that nearby inputs give
/// unrelated seeds.
pub fn hash_u64s(values: &[u64]) -> u64 {
    let h = values
        .iter()
        .fold(FNV_OFFSET, |h, v| fnv1a64_extend(h, &v.to_le_bytes()));
    SplitMix64::new(h).next_u64()
}

/// The seed of record `index` of tick `number` of a feed seeded `seed`.
pub fn record_seed(seed: u64, number: u64, index: u64) -> u64 {
    hash_u64s(&[seed, number, index])
}

/// A PRNG for record `index` of tick `number` of a feed seeded `seed`.
pub fn record_rng(seed: u64, number: u64, index: u64) -> SplitMix64 {
    SplitMix64::new(record_seed(seed, number, index))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_reference_values() {
        // Reference output of splitmix64 seeded with 1234567.
        let mut r = SplitMix64::new(1_234_567);
        assert_eq!(r.next_u64(), 6_457_827_717_110_365_317);
        assert_eq!(r.next_u64(), 3_203_168_211_198_807_973);
        assert_eq!(r.next_u64(), 9_817_491_932_198_370_423);
    }

    #[test]
    fn fnv_reference_values() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
        assert_eq!(fnv1a64_extend(fnv1a64(b"foo"), b"bar"), fnv1a64(b"foobar"));
    }

    #[test]
    fn floats_and_ranges_stay_in_bounds() {
        let mut r = SplitMix64::new(42);
        for _ in 0..10_000 {
            let f = r.next_f64();
            assert!((0.0..1.0).contains(&f));
            assert!(r.below(7) < 7);
            let i = r.range_i64(-3, 3);
            assert!((-3..=3).contains(&i));
            let g = r.range_f64(10.0, 11.0);
            assert!((10.0..11.0).contains(&g));
        }
        assert_eq!(r.range_i64(5, 5), 5);
        let _ = r.range_i64(i64::MIN, i64::MAX);
    }

    #[test]
    fn chance_extremes() {
        let mut r = SplitMix64::new(7);
        for _ in 0..1000 {
            assert!(!r.chance(0.0));
            assert!(r.chance(1.0));
        }
        let hits = (0..10_000).filter(|_| r.chance(0.25)).count();
        assert!((2_200..2_800).contains(&hits), "{hits}");
    }

    #[test]
    fn record_seeds_are_stable_and_distinct() {
        assert_eq!(record_seed(1, 2, 3), record_seed(1, 2, 3));
        assert_ne!(record_seed(1, 2, 3), record_seed(1, 2, 4));
        assert_ne!(record_seed(1, 2, 3), record_seed(1, 3, 3));
        assert_ne!(record_seed(1, 2, 3), record_seed(2, 2, 3));
        assert_ne!(record_seed(0, 0, 1), record_seed(0, 1, 0));
    }
}
