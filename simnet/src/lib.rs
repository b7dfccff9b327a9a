//! `floe-simnet`: a seeded, deterministic discrete-event simulator that drives floe-protocol's sans-IO state
//! machines ([`floe_protocol::write::Write`], [`floe_protocol::read::Read`], [`floe_protocol::repair::Repair`],
//! placement and repair planning) over a modelled network, instead of running libp2p swarms (which read
//! wall-clock time and thread-local randomness and cannot be replayed; see the reference notes).
//!
//! What is modelled, and how coarsely, is documented module by module and in `docs/simnet.md`:
//! - [`sim`]: virtual time in milliseconds, one event queue ordered by (time, sequence number), nodes with
//!   regions, up/down links with FIFO queueing, message loss/duplication/reordering, a Kademlia lookup as "the n
//!   XOR-closest peers believed alive" with a staleness window, gossip as a delay and a loss probability, faults
//!   (crashes, churn, regional outages, partitions, byzantine holders, bit rot, lost writes), and repair.
//! - [`scenario`]: the TOML scenario format.
//! - [`metrics`], [`output`], [`sweep`]: what a run reports and where it is written.
//!
//! Determinism: every random draw comes from a ChaCha8 stream derived from the run seed (one per node, one for
//! the world), events at equal times run in the order they were scheduled, and no result depends on `HashMap`
//! iteration order (the crate uses none). A run's trace hash is BLAKE3 over every processed event, in order.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]
#![deny(missing_docs)]

pub mod cpu;
pub mod metrics;
pub mod net;
pub mod output;
pub mod rng;
pub mod scenario;
pub mod sim;
pub mod sweep;

pub use metrics::{Row, Summary};
pub use scenario::Scenario;
pub use sim::{RunOptions, RunResult, run};

/// Everything that can go wrong in the library. The binary wraps it with context.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The scenario file is not valid TOML or does not match the format.
    // The TOML error is the source, not part of this message: the binary prints the chain once.
    #[error("scenario does not parse")]
    Toml(#[from] toml::de::Error),
    /// The scenario parses but asks for something the simulator cannot do.
    #[error("invalid scenario: {0}")]
    Invalid(String),
    /// The protocol rejected the blob parameters a scenario implies.
    #[error("blob parameters: {0}")]
    Params(#[from] floe_protocol::ParamsError),
    /// Writing outputs failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// Serialising the summary failed.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
}
