//! The CPU a node spends on slivers, measured on the machine that runs `floe-simnet cpu`: how fast it verifies
//! slivers against a blob ID (a holder before it answers, a reader or repairer for each sliver it receives) and
//! how fast it runs the consistency check (re-encode and hash the other slivers) a first read of a blob does.
//! The numbers become a scenario's `[cpu]` table; a run only reads them, so it stays deterministic.
//!
//! The measurement runs the protocol crate's own code (`VerifiedSliver::new`, `SegmentDecoder::decode`) on one
//! thread, as the simulator charges each node one core.

use std::time::{Duration, Instant};

use floe_protocol::decoder::{Consistency, SegmentDecoder, VerifiedSliver};
use floe_protocol::encoder::EncodedBlob;
use floe_protocol::encoding::{BlobParams, DEFAULT_SEGMENT_SIZE, EncodingType};

use crate::scenario::CpuConfig;

/// Why a profile could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// The protocol refused the sample blob.
    #[error("profiling blob: {0}")]
    Protocol(String),
}

/// Measures verification and consistency-check throughput on a blob of `size` bytes in `shards` slivers,
/// repeating each measurement for about `budget`, and returns them as a `[cpu]` table (with the default fixed
/// costs, which this measurement cannot see).
pub fn profile(shards: u16, size: u64, budget: Duration) -> Result<CpuConfig, ProfileError> {
    let fail = |e: &dyn std::fmt::Display| ProfileError::Protocol(e.to_string());
    let params = BlobParams::new(EncodingType::RsSimd, shards, DEFAULT_SEGMENT_SIZE, size)
        .map_err(|e| fail(&e))?;
    let len = usize::try_from(size).map_err(|e| fail(&e))?;
    // Bytes that do not compress into a pattern the codec could shortcut.
    let data: Vec<u8> = (0..len)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13).to_le_bytes()[0])
        .collect();
    let encoded = EncodedBlob::encode(params, &data).map_err(|e| fail(&e))?;
    let blob_id = encoded.metadata.blob_id();
    let k = params.source_shards();
    let sources: Vec<_> = (0..params.segment_count())
        .map(|segment| {
            (0..k)
                .filter_map(|index| encoded.sliver(segment, index))
                .collect::<Vec<_>>()
        })
        .collect();
    let sliver_bytes: u64 = sources
        .iter()
        .flatten()
        .map(|s| u64::try_from(s.data.len()).unwrap_or(0))
        .sum();

    let verify = |budget: Duration| -> Result<(u32, Duration), ProfileError> {
        let started = Instant::now();
        let mut rounds = 0u32;
        while started.elapsed() < budget || rounds == 0 {
            for sliver in sources.iter().flatten() {
                VerifiedSliver::new(sliver.clone(), &blob_id).map_err(|e| fail(&e))?;
            }
            rounds += 1;
        }
        Ok((rounds, started.elapsed()))
    };
    let verified: Vec<Vec<VerifiedSliver>> = sources
        .iter()
        .map(|segment| {
            segment
                .iter()
                .map(|s| VerifiedSliver::new(s.clone(), &blob_id))
                .collect::<Result<Vec<_>, _>>()
        })
        .collect::<Result<_, _>>()
        .map_err(|e| fail(&e))?;
    // A fresh decoder per read, as the node makes one for each read.
    let decode = |consistency: Consistency, budget: Duration| {
        let started = Instant::now();
        let mut rounds = 0u32;
        while started.elapsed() < budget || rounds == 0 {
            let mut decoder = SegmentDecoder::new(params);
            for (segment, slivers) in (0u64..).zip(&verified) {
                decoder
                    .decode(segment, slivers, consistency)
                    .map_err(|e| fail(&e))?;
            }
            rounds += 1;
        }
        Ok::<_, ProfileError>((rounds, started.elapsed()))
    };
    // Warm caches and allocator once, then measure.
    verify(Duration::ZERO)?;
    decode(Consistency::Full, Duration::ZERO)?;
    let (rounds, took) = verify(budget)?;
    let verify_mb_per_s = mb_per_s(sliver_bytes, rounds, took);
    let (plain_rounds, plain) = decode(Consistency::SliversOnly, budget)?;
    let (full_rounds, full) = decode(Consistency::Full, budget)?;
    // The check's own cost: a full decode less the plain one, per byte of blob.
    let per_round = |took: Duration, rounds: u32| took.as_secs_f64() / f64::from(rounds.max(1));
    let check_seconds = (per_round(full, full_rounds) - per_round(plain, plain_rounds)).max(1e-9);
    let check_mb_per_s = size as f64 / 1e6 / check_seconds;
    Ok(CpuConfig {
        verify_mb_per_s: round(verify_mb_per_s),
        check_mb_per_s: round(check_mb_per_s),
        ..CpuConfig::default()
    })
}

fn mb_per_s(bytes: u64, rounds: u32, took: Duration) -> f64 {
    bytes as f64 * f64::from(rounds) / 1e6 / took.as_secs_f64().max(1e-9)
}

/// Three significant figures: a profile is a measurement, not a constant to 15 digits.
fn round(value: f64) -> f64 {
    if value <= 0.0 || !value.is_finite() {
        return value;
    }
    let mut scale = 1.0;
    while value * scale >= 1000.0 {
        scale /= 10.0;
    }
    while value * scale < 100.0 {
        scale *= 10.0;
    }
    (value * scale).round() / scale
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_profile_measures_positive_rates() {
        let cpu = profile(20, 256 * 1024, Duration::from_millis(20)).unwrap();
        assert!(cpu.verify_mb_per_s > 0.0 && cpu.verify_mb_per_s.is_finite());
        assert!(cpu.check_mb_per_s > 0.0 && cpu.check_mb_per_s.is_finite());
        assert_eq!(round(123_456.0), 123_000.0);
        assert_eq!(round(0.012_345), 0.012_3);
    }
}
