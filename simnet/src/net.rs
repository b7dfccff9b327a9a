//! Regions and their round-trip times.
//!
//! The default matrix has six AWS regions. Figures are average inter-region ping RTTs between EC2 instances
//! (ms), from the table "Latency Between AWS Global Regions" as reproduced in
//! <https://acomputerscientistlearnsaws.blogspot.com/2017/04/aws-regions.html> (2017 measurements; the two
//! directions are averaged and rounded). Live dashboards such as <https://www.cloudping.co> (TCP-connect
//! latency between all AWS regions) give current figures; some routes are faster today (Frankfurt–Singapore in
//! particular was ≈ 326 ms in that table and is roughly half that now), so a scenario that cares should supply its
//! own `network.rtt_ms`. Intra-region RTT is 2 ms (cross-availability-zone pings measure ≈ 0.25–3.4 ms per
//! <https://www.xkyle.com/Measuring-AWS-Region-and-AZ-Latency/>).

use crate::Error;
use crate::scenario::NetworkConfig;

/// Names of the default regions, in matrix order.
pub const DEFAULT_REGIONS: [&str; 6] = [
    "us-east",      // us-east-1, N. Virginia
    "us-west",      // us-west-1, N. California
    "eu-west",      // eu-west-1, Ireland
    "eu-central",   // eu-central-1, Frankfurt
    "ap-northeast", // ap-northeast-1, Tokyo
    "ap-southeast", // ap-southeast-1, Singapore
];

/// Default RTTs in ms (see the module docs for the source).
pub const DEFAULT_RTT_MS: [[f64; 6]; 6] = [
    [2.0, 72.0, 81.0, 89.0, 145.0, 217.0],
    [72.0, 2.0, 153.0, 167.0, 103.0, 174.0],
    [81.0, 153.0, 2.0, 20.0, 212.0, 239.0],
    [89.0, 167.0, 20.0, 2.0, 237.0, 326.0],
    [145.0, 103.0, 212.0, 237.0, 2.0, 74.0],
    [217.0, 174.0, 239.0, 326.0, 74.0, 2.0],
];

/// The regions of a run.
#[derive(Debug, Clone)]
pub struct Regions {
    names: Vec<String>,
    rtt: Vec<Vec<f64>>,
}

impl Regions {
    /// The default six, or the scenario's own.
    pub fn from_config(config: &NetworkConfig) -> Result<Self, Error> {
        let (names, rtt) = match (&config.regions, &config.rtt_ms) {
            (None, None) => (
                DEFAULT_REGIONS.iter().map(|s| (*s).to_owned()).collect(),
                DEFAULT_RTT_MS.iter().map(|row| row.to_vec()).collect(),
            ),
            (None, Some(rtt)) if rtt.len() == DEFAULT_REGIONS.len() => (
                DEFAULT_REGIONS.iter().map(|s| (*s).to_owned()).collect(),
                rtt.clone(),
            ),
            (Some(names), Some(rtt)) => (names.clone(), rtt.clone()),
            _ => {
                return Err(Error::Invalid(
                    "network.regions needs network.rtt_ms (a square matrix, one row per region)"
                        .into(),
                ));
            }
        };
        let size = names.len();
        let square = rtt.len() == size && rtt.iter().all(|row| row.len() == size);
        let sane = rtt.iter().flatten().all(|x| *x >= 0.0 && x.is_finite());
        if size == 0 || size > 255 || !square || !sane {
            return Err(Error::Invalid(
                "network.rtt_ms must be a square matrix of non-negative RTTs, one row per region (1 to 255)"
                    .into(),
            ));
        }
        Ok(Self { names, rtt })
    }

    /// Number of regions.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether there are none (never, once built).
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The index of a region by name.
    pub fn index(&self, name: &str) -> Option<u8> {
        self.names
            .iter()
            .position(|n| n == name)
            .and_then(|i| u8::try_from(i).ok())
    }

    /// The name of region `index`.
    pub fn name(&self, index: u8) -> &str {
        self.names
            .get(usize::from(index))
            .map_or("?", String::as_str)
    }

    /// Round-trip time between two regions, ms.
    pub fn rtt_ms(&self, a: u8, b: u8) -> f64 {
        self.rtt
            .get(usize::from(a))
            .and_then(|row| row.get(usize::from(b)))
            .copied()
            .unwrap_or(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_matrix_is_symmetric_with_small_diagonal() {
        for (i, row) in DEFAULT_RTT_MS.iter().enumerate() {
            for (j, rtt) in row.iter().enumerate() {
                assert_eq!(*rtt, DEFAULT_RTT_MS[j][i]);
                assert!(i == j || *rtt > 10.0);
            }
        }
        let regions = Regions::from_config(&NetworkConfig::default()).unwrap();
        assert_eq!(regions.index("eu-west"), Some(2));
        assert_eq!(regions.rtt_ms(2, 3), 20.0);
    }

    #[test]
    fn custom_matrices_are_checked() {
        let config = NetworkConfig {
            regions: Some(vec!["a".into(), "b".into()]),
            rtt_ms: Some(vec![vec![1.0, 50.0], vec![50.0]]),
            ..NetworkConfig::default()
        };
        assert!(Regions::from_config(&config).is_err());
    }
}
