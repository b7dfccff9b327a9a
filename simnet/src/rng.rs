//! Seeded randomness. Every stream is a ChaCha8 generator (rand 0.10, `chacha` feature) keyed by
//! BLAKE3-derive-key over (run seed, stream name, stream number): one stream per node, one for the world
//! (workload and fault choices). ChaCha8 is a fixed, documented algorithm, so a seed replays identically on every
//! platform and rand version that ships it; nothing here reads OS entropy or a clock.

use floe_protocol::write::Millis;
use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};

/// The generator every stream uses.
pub type SimRng = ChaCha8Rng;

const STREAM_CONTEXT: &str = "floe-simnet 2026-11 rng stream v1";

/// The stream `name`/`number` of run `seed`.
pub fn stream(seed: u64, name: &str, number: u64) -> SimRng {
    let mut hasher = blake3::Hasher::new_derive_key(STREAM_CONTEXT);
    hasher.update(&seed.to_le_bytes());
    hasher.update(name.as_bytes());
    hasher.update(&[0]);
    hasher.update(&number.to_le_bytes());
    SimRng::from_seed(*hasher.finalize().as_bytes())
}

/// Uniform in [0, 1).
pub fn unit(rng: &mut SimRng) -> f64 {
    rng.random::<f64>()
}

/// True with probability `p` (no draw at all when `p <= 0`, so a disabled fault does not shift the stream).
pub fn chance(rng: &mut SimRng, p: f64) -> bool {
    p > 0.0 && unit(rng) < p
}

/// Uniform in `0..n` (0 when `n <= 1`).
pub fn below(rng: &mut SimRng, n: usize) -> usize {
    if n <= 1 { 0 } else { rng.random_range(0..n) }
}

/// Exponential with the given mean (inverse CDF; `1 - u` is in (0, 1], so the logarithm is finite).
pub fn exponential(rng: &mut SimRng, mean: f64) -> f64 {
    -mean * (1.0 - unit(rng)).ln()
}

/// Weibull with shape `k` and scale `lambda` (inverse CDF: λ(−ln(1−u))^(1/k)).
pub fn weibull(rng: &mut SimRng, shape: f64, scale: f64) -> f64 {
    scale * (-(1.0 - unit(rng)).ln()).powf(1.0 / shape)
}

/// SplitMix64 (Steele, Lea and Flood 2014): a bijective 64-bit mixer, used for the lazily evaluated gossip
/// draws, which are a pure function of (seed, announcement, listener) rather than a stream position.
pub fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A 64-bit hash mapped to [0, 1): the top 53 bits over 2^53.
pub fn unit_from_hash(hash: u64) -> f64 {
    (hash >> 11) as f64 / (1u64 << 53) as f64
}

/// Milliseconds from a non-negative float, rounded up; NaN and negatives give 0, and values are capped at 2^53
/// (285,000 years), where every integer is still exact in an f64.
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
pub fn ceil_ms(x: f64) -> Millis {
    const CAP: f64 = 9_007_199_254_740_992.0; // 2^53
    if x.is_nan() || x <= 0.0 {
        return 0;
    }
    // Safe: the value is in (0, 2^53] after the clamp, so it is non-negative and fits u64 exactly.
    x.ceil().min(CAP) as Millis
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_reproducible_and_distinct() {
        let a: Vec<u64> = (0..4)
            .map(|_| stream(7, "node", 3).random::<u64>())
            .collect();
        assert!(a.iter().all(|x| *x == a[0]), "same stream, same first draw");
        let mut s = stream(7, "node", 3);
        let mut t = stream(7, "node", 4);
        let mut u = stream(8, "node", 3);
        let (x, y, z) = (s.random::<u64>(), t.random::<u64>(), u.random::<u64>());
        assert!(x != y && x != z && y != z);
    }

    #[test]
    fn samplers_have_the_right_means() {
        let mut rng = stream(1, "test", 0);
        let n = 20_000;
        let exp: f64 = (0..n).map(|_| exponential(&mut rng, 10.0)).sum::<f64>() / f64::from(n);
        assert!((exp - 10.0).abs() < 0.5, "{exp}");
        // Weibull shape 1 is exponential with mean = scale.
        let w: f64 = (0..n).map(|_| weibull(&mut rng, 1.0, 4.0)).sum::<f64>() / f64::from(n);
        assert!((w - 4.0).abs() < 0.2, "{w}");
        assert!(!chance(&mut rng, 0.0));
        assert!((0..100).all(|_| below(&mut rng, 3) < 3));
    }

    #[test]
    fn ceil_ms_is_total() {
        assert_eq!(ceil_ms(-1.0), 0);
        assert_eq!(ceil_ms(f64::NAN), 0);
        assert_eq!(ceil_ms(1.2), 2);
        assert_eq!(ceil_ms(f64::INFINITY), 1 << 53);
    }
}
