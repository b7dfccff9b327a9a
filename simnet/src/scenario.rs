//! The scenario file: a TOML document describing the swarm, the network, the workload and the faults. Every
//! time is in milliseconds of simulated time (field names end in `_ms`); every probability is in [0, 1].
//! `docs/simnet.md` documents each table with an example; unknown fields are rejected so that a typo is
//! an error rather than a silently ignored setting.

use std::collections::BTreeMap;

use floe_protocol::write::Millis;
use serde::Deserialize;

use crate::Error;

/// A whole scenario.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Short name, printed in reports.
    #[serde(default)]
    pub name: String,
    /// What the scenario shows.
    #[serde(default)]
    pub description: String,
    /// Simulated time to run.
    pub duration_ms: Millis,
    /// Interval between rows of `timeseries.csv`.
    #[serde(default = "default_sample_interval")]
    pub sample_interval_ms: Millis,
    /// The swarm.
    #[serde(default)]
    pub nodes: NodesConfig,
    /// Latency, bandwidth and message faults.
    #[serde(default)]
    pub network: NetworkConfig,
    /// The Kademlia model.
    #[serde(default)]
    pub kademlia: KademliaConfig,
    /// The gossipsub model (repair announcements).
    #[serde(default)]
    pub gossip: GossipConfig,
    /// Writes and reads.
    #[serde(default)]
    pub workload: WorkloadConfig,
    /// Repair.
    #[serde(default)]
    pub repair: RepairConfig,
    /// Crashes at fixed times (`[[crash]]`).
    #[serde(default)]
    pub crash: Vec<CrashFault>,
    /// Continuous churn.
    #[serde(default)]
    pub churn: Option<ChurnConfig>,
    /// Regional outages (`[[outage]]`).
    #[serde(default)]
    pub outage: Vec<OutageFault>,
    /// Network partitions (`[[partition]]`).
    #[serde(default)]
    pub partition: Vec<PartitionFault>,
    /// Byzantine holders.
    #[serde(default)]
    pub byzantine: Option<ByzantineConfig>,
    /// The networks (/24s) nodes sit in, for the per-network cap on a blob's slivers.
    #[serde(default)]
    pub networks: NetworksConfig,
    /// An attacker grinding peer IDs next to the blob IDs (`[sybil]`).
    #[serde(default)]
    pub sybil: Option<SybilConfig>,
    /// Disk faults.
    #[serde(default)]
    pub disk: DiskConfig,
    /// What each node's CPU spends on slivers and messages.
    #[serde(default)]
    pub cpu: CpuConfig,
    /// The parameter a sweep varies (ignored by `run`).
    #[serde(default)]
    pub sweep: Option<SweepConfig>,
    /// BLAKE3 of the file's bytes, hex; set by [`Scenario::from_toml`].
    #[serde(skip)]
    pub source_hash: String,
}

fn default_sample_interval() -> Millis {
    60_000
}

/// The swarm at time 0.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodesConfig {
    /// Nodes at time 0.
    pub count: u32,
    /// Region name → weight; empty means every region of the network, equally.
    pub regions: BTreeMap<String, f64>,
    /// Uplink per node, Mbit/s.
    pub up_mbps: f64,
    /// Downlink per node, Mbit/s.
    pub down_mbps: f64,
}

impl Default for NodesConfig {
    fn default() -> Self {
        Self {
            count: 100,
            regions: BTreeMap::new(),
            up_mbps: 100.0,
            down_mbps: 100.0,
        }
    }
}

/// Latency and message faults.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkConfig {
    /// Region names, when overriding the default six (then `rtt_ms` is required).
    pub regions: Option<Vec<String>>,
    /// Round-trip times between regions (square, symmetric), overriding the default matrix.
    pub rtt_ms: Option<Vec<Vec<f64>>>,
    /// Uniform one-way jitter in [0, jitter_ms) added to every message.
    pub jitter_ms: f64,
    /// Probability that a message is lost (whole messages: the transport is assumed to retransmit packets, so
    /// this is the chance a request or response never arrives).
    pub loss: f64,
    /// Probability that a message is delivered twice.
    pub duplicate: f64,
    /// Probability that a message is held back by up to `reorder_ms`, overtaking or being overtaken.
    pub reorder: f64,
    /// Largest extra delay of a reordered message.
    pub reorder_ms: f64,
    /// A request to a crashed node fails back to the sender after one round trip (connection refused) instead
    /// of timing out silently.
    pub dead_peer_fails_fast: bool,
    /// Bytes added to every message for framing, headers and proofs.
    pub message_overhead_bytes: u64,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        Self {
            regions: None,
            rtt_ms: None,
            jitter_ms: 5.0,
            loss: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            reorder_ms: 50.0,
            dead_peer_fails_fast: true,
            message_overhead_bytes: 256,
        }
    }
}

/// Kademlia, modelled: a lookup returns the n peers XOR-closest to the blob among those the looker believes
/// alive, after `hops × hop_latency_ms`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KademliaConfig {
    /// Hops per lookup.
    pub hops: u32,
    /// Latency per hop.
    pub hop_latency_ms: Millis,
    /// A departed peer stays in everyone's routing table this long (and a partitioned one is dropped after it).
    pub staleness_ms: Millis,
}

impl Default for KademliaConfig {
    fn default() -> Self {
        Self {
            hops: 3,
            hop_latency_ms: 100,
            staleness_ms: 600_000,
        }
    }
}

/// Gossipsub, modelled: an announcement reaches each live subscriber after one hop plus heartbeat jitter, or
/// is lost.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GossipConfig {
    /// Latency of one mesh hop.
    pub hop_latency_ms: Millis,
    /// Heartbeat interval; the jitter is uniform in [0, heartbeat_ms).
    pub heartbeat_ms: Millis,
    /// Probability that a subscriber never receives an announcement.
    pub loss: f64,
}

impl Default for GossipConfig {
    fn default() -> Self {
        Self {
            hop_latency_ms: 100,
            heartbeat_ms: 1_000,
            loss: 0.0,
        }
    }
}

/// Writes then reads.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkloadConfig {
    /// n; default `floe_protocol::encoding::default_shards(nodes.count)`.
    pub shards: Option<u16>,
    /// Blobs written, evenly spaced over the write phase.
    pub blobs: u32,
    /// Smallest blob.
    pub size_min_bytes: u64,
    /// Largest blob; sizes are log-uniform between the two.
    pub size_max_bytes: u64,
    /// Writes are spread over [0, write_phase_ms).
    pub write_phase_ms: Millis,
    /// Poisson read arrivals per second of simulated time, over uniformly chosen certified blobs.
    pub read_rate_per_s: f64,
    /// When reads start; default: the end of the write phase.
    pub read_start_ms: Option<Millis>,
    /// `WriteConfig::request_timeout` (also used by repair deliveries).
    pub write_timeout_ms: Millis,
    /// `WriteConfig::max_attempts`.
    pub write_attempts: u32,
    /// `ReadConfig::soft_timeout` of reads (repair fetches use `floe_protocol::repair::repair_read_config`).
    pub read_soft_timeout_ms: Millis,
    /// `ReadConfig::hard_timeout` of reads.
    pub read_hard_timeout_ms: Millis,
    /// `ReadConfig::systematic_grace` of reads (the node's default). The simulator charges reads no decode
    /// time, so here the grace only shows what the wait costs.
    pub read_systematic_grace_ms: Millis,
    /// Blob lifetimes (`floe_protocol::lifetime`): the length of an epoch (0: blobs live forever, as before).
    pub epoch_ms: Millis,
    /// Each blob lives a uniform number of epochs from `epochs_min` to `epochs_max` (its writer's `?epochs=`).
    pub epochs_min: u64,
    /// See `epochs_min`.
    pub epochs_max: u64,
    /// Deletion (`floe_protocol::deletion`): the fraction of certified blobs whose writer deletes them with its
    /// token (0: none, as before).
    pub delete_fraction: f64,
    /// A deleted blob is deleted a uniform time from `delete_after_min_ms` to `delete_after_max_ms` after it was
    /// certified.
    pub delete_after_min_ms: Millis,
    /// See `delete_after_min_ms`.
    pub delete_after_max_ms: Millis,
    /// The node's scan interval (`--repair-interval`): a holder that was down when a blob was deleted is told
    /// by its live predecessors' next scan after it returns (`deletion::pass_on_to`).
    pub scan_interval_ms: Millis,
}

impl Default for WorkloadConfig {
    fn default() -> Self {
        Self {
            shards: None,
            blobs: 100,
            size_min_bytes: 64 << 10,
            size_max_bytes: 1 << 20,
            write_phase_ms: 600_000,
            read_rate_per_s: 0.2,
            read_start_ms: None,
            write_timeout_ms: 10_000,
            write_attempts: 3,
            read_soft_timeout_ms: 500,
            read_hard_timeout_ms: 10_000,
            read_systematic_grace_ms: floe_protocol::read::DEFAULT_SYSTEMATIC_GRACE,
            epoch_ms: 0,
            epochs_min: 1,
            epochs_max: 1,
            delete_fraction: 0.0,
            delete_after_min_ms: 60_000,
            delete_after_max_ms: 600_000,
            scan_interval_ms: 10_000,
        }
    }
}

/// Repair.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RepairConfig {
    /// Whether anything repairs at all.
    pub enabled: bool,
    /// A holder counts as gone once it has been down (or unreachable) this long.
    pub grace_ms: Millis,
    /// Decode + re-encode throughput of a repairer, MB/s of blob bytes.
    pub decode_mb_per_s: f64,
    /// Repair a blob only when at least this many sliver indexes have gone holders (lazy repair; 1 = eager).
    pub min_lost: u16,
    /// How often each blob's leader (and its deputy, which challenges the leader) runs a round of storage
    /// challenges (`floe_protocol::challenge`); 0 = never. Rounds cost a request and one segment's sliver per
    /// challenged holder, and are judged when they are sent (no transfer delay).
    pub challenge_interval_ms: Millis,
    /// Consecutive failed challenges after which a challenger counts a holder as gone.
    pub challenge_failures: u32,
    /// How long a challenger waits, after the blob's holder list last changed or a sliver of it was last
    /// delivered, before it challenges the blob's holders (the node's `--challenge-settle`, default 60 s): a
    /// sliver still on its way is not counted as lost.
    pub challenge_settle_ms: Millis,
    /// How long a node must have been in the swarm before a repair, hand-off or rebalance gives it slivers
    /// while an older peer could take them (the node's `--newcomer-age`, default 2 h; 0 here, so scenarios
    /// without it replay as before it existed).
    pub newcomer_age_ms: Millis,
}

impl Default for RepairConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            grace_ms: 900_000,
            decode_mb_per_s: 300.0,
            min_lost: 1,
            challenge_interval_ms: 0,
            challenge_failures: 3,
            challenge_settle_ms: 60_000,
            newcomer_age_ms: 0,
        }
    }
}

/// The CPU a node spends, one core per node, queued in order (docs/simnet.md, "CPU"). The sliver throughputs
/// default to what `floe-simnet cpu` measured on one core of the development machine (2026-12-03); transport
/// and fixed costs default to zero. `scripts/calibrate.sh` sets all four for its loopback swarm.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct CpuConfig {
    /// Sliver verification against the blob ID (BLAKE3 leaf and paths), MB/s of sliver bytes: a holder before
    /// it serves or after it stores a sliver, a reader or repairer for each sliver it receives.
    pub verify_mb_per_s: f64,
    /// The consistency check of a reader's first read of a blob (re-encode, hash the other slivers), MB/s of
    /// blob bytes. Later reads of the same blob by the same node skip it, as the node's checked-segment cache does.
    pub check_mb_per_s: f64,
    /// What moving a message's payload through the transport costs each end (encryption, framing, copies), MB/s;
    /// 0 = free (the links' bandwidth is the only cost).
    pub transfer_mb_per_s: f64,
    /// Fixed cost of each request or response a node handles (dispatch, decoding), microseconds.
    pub message_us: f64,
    /// Fixed cost of each read at the reader (the gateway's HTTP exchange, assembling the answer),
    /// microseconds.
    pub read_us: f64,
}

impl Default for CpuConfig {
    fn default() -> Self {
        Self {
            // `floe-simnet cpu` (n = 20, 1 MiB) on the development machine, 2026-12-03.
            verify_mb_per_s: 5_020.0,
            check_mb_per_s: 1_140.0,
            transfer_mb_per_s: 0.0,
            message_us: 0.0,
            read_us: 0.0,
        }
    }
}

/// Crash some nodes at a fixed time.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrashFault {
    /// When.
    pub at_ms: Millis,
    /// ⌊fraction × live nodes⌋ nodes, chosen at random.
    #[serde(default)]
    pub fraction: Option<f64>,
    /// Or these node ids.
    #[serde(default)]
    pub nodes: Vec<u32>,
    /// Whether their disks are lost.
    #[serde(default)]
    pub wipe: bool,
    /// When they come back, if ever.
    #[serde(default)]
    pub restart_at_ms: Option<Millis>,
}

/// Churn: each node lives for a Weibull session, then leaves for good with its data; new nodes arrive as a
/// Poisson process and get sessions too.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChurnConfig {
    /// When sessions start counting (usually the end of the write phase).
    #[serde(default)]
    pub start_ms: Millis,
    /// Weibull shape k (k < 1: many short sessions and a long tail, as measured in P2P networks).
    pub session_shape: f64,
    /// Weibull scale λ in ms; the mean session is λ·Γ(1 + 1/k).
    pub session_scale_ms: f64,
    /// New nodes per hour.
    #[serde(default)]
    pub arrivals_per_hour: f64,
}

/// A region goes dark (its nodes crash, keeping their disks) and comes back.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutageFault {
    /// The region's name.
    pub region: String,
    /// Start.
    pub from_ms: Millis,
    /// End.
    pub to_ms: Millis,
}

/// A partition between group A and everyone else.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartitionFault {
    /// Start.
    pub from_ms: Millis,
    /// Heal.
    pub heal_ms: Millis,
    /// Group A: the nodes of these regions…
    #[serde(default)]
    pub regions: Vec<String>,
    /// …or this fraction of the nodes, at random.
    #[serde(default)]
    pub fraction: Option<f64>,
    /// Only messages from A to the rest are dropped (the rest can still reach A).
    #[serde(default)]
    pub one_way: bool,
}

/// How a byzantine holder misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Behaviour {
    /// Answers every sliver request with bytes that fail verification.
    Corrupt,
    /// Never answers a sliver request.
    Withhold,
    /// Withholds, and announces forged holder lists with forged departure evidence as often as it scans
    /// (`sim::hijack`).
    Hijack,
}

/// Byzantine holders: they accept writes and sign receipts, then misbehave on reads and repair fetches, and
/// never act as repair leaders.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ByzantineConfig {
    /// ⌊fraction × nodes⌋ initial nodes, chosen at random; arrivals are byzantine with this probability.
    pub fraction: f64,
    /// What they do.
    pub behaviour: Behaviour,
}

/// The networks honest nodes sit in (docs/protocol.md §9, "Networks").
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetworksConfig {
    /// Honest nodes spread round-robin over this many networks; 0 puts every node in a network of its own
    /// (the cap then never binds, and lookups skip it).
    pub count: u32,
    /// Whether writes and repairs apply the per-network cap (`floe_protocol::diversity`); off only to measure
    /// what it prevents.
    pub cap: bool,
}

impl Default for NetworksConfig {
    fn default() -> Self {
        Self {
            count: 0,
            cap: true,
        }
    }
}

/// An attacker with unlimited peer IDs in a few networks: before the writes, for each of the first
/// `target_blobs` blobs, it joins with ⌈n / networks⌉ IDs per network closer to the blob's ID than any honest
/// peer (n IDs in all, enough to take the whole neighbourhood without the cap). Its nodes accept slivers and
/// sign receipts, then misbehave as `behaviour` says, and never lead a repair.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SybilConfig {
    /// Networks the attacker has addresses in (A).
    pub networks: u32,
    /// Blobs it targets (the first ones written); default all.
    #[serde(default)]
    pub target_blobs: Option<u32>,
    /// What its nodes do with the slivers they get.
    #[serde(default = "default_sybil_behaviour")]
    pub behaviour: Behaviour,
}

fn default_sybil_behaviour() -> Behaviour {
    Behaviour::Withhold
}

/// Disk faults.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DiskConfig {
    /// Expected bit-rot events per stored sliver per day; a rotten sliver fails verification.
    pub bitrot_per_sliver_per_day: f64,
    /// Probability that a store is acknowledged with a receipt but the sliver never reaches the disk.
    pub lost_write: f64,
    /// Sliver bytes each node may hold (0: no limit), as `floe node --capacity`: a full node refuses stores, and
    /// writers and repair leaders skip peers without room for one sliver index (`floe_protocol::room`).
    pub capacity_bytes: u64,
}

/// The parameter a sweep varies.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepConfig {
    /// Dotted path into this file, e.g. `byzantine.fraction` or `nodes.count`.
    pub parameter: String,
    /// The values it takes.
    pub values: Vec<toml::Value>,
}

impl Scenario {
    /// Parses and checks a scenario, recording the BLAKE3 hash of its text.
    pub fn from_toml(text: &str) -> Result<Self, Error> {
        let table: toml::Table = text.parse()?;
        let mut scenario = Self::from_table(table)?;
        scenario.source_hash = blake3::hash(text.as_bytes()).to_hex().to_string();
        Ok(scenario)
    }

    /// A scenario from an already parsed table (a sweep point); checks it. `source_hash` is left empty.
    pub fn from_table(table: toml::Table) -> Result<Self, Error> {
        let scenario: Self = table.try_into()?;
        scenario.validate()?;
        Ok(scenario)
    }

    /// n for this scenario.
    pub fn shards(&self) -> u16 {
        self.workload.shards.unwrap_or_else(|| {
            floe_protocol::encoding::default_shards(
                usize::try_from(self.nodes.count).unwrap_or(usize::MAX),
            )
        })
    }

    /// Checks what serde cannot.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |what: &str| Err(Error::Invalid(what.to_owned()));
        let probability = |p: f64| (0.0..=1.0).contains(&p);
        // NaN fails both (comparisons with NaN are false).
        let positive = |x: f64| x > 0.0 && x.is_finite();
        let non_negative = |x: f64| x >= 0.0 && x.is_finite();
        if self.duration_ms == 0 || self.sample_interval_ms == 0 {
            return bad("duration_ms and sample_interval_ms must be positive");
        }
        if self.nodes.count == 0 {
            return bad("nodes.count must be at least 1");
        }
        if self.workload.epoch_ms > 0
            && !(1..=self.workload.epochs_max).contains(&self.workload.epochs_min)
        {
            return bad("workload.epochs_min must be at least 1 and at most workload.epochs_max");
        }
        if !(0.0..=1.0).contains(&self.workload.delete_fraction) {
            return bad("workload.delete_fraction must be from 0 to 1");
        }
        if self.workload.delete_after_min_ms > self.workload.delete_after_max_ms {
            return bad(
                "workload.delete_after_min_ms must be at most workload.delete_after_max_ms",
            );
        }
        if !(positive(self.nodes.up_mbps) && positive(self.nodes.down_mbps)) {
            return bad("nodes.up_mbps and nodes.down_mbps must be positive");
        }
        if self.nodes.regions.values().any(|w| !non_negative(*w))
            || (!self.nodes.regions.is_empty()
                && !positive(self.nodes.regions.values().sum::<f64>()))
        {
            return bad("nodes.regions weights must be non-negative and not all zero");
        }
        let n = &self.network;
        if ![
            n.loss,
            n.duplicate,
            n.reorder,
            self.gossip.loss,
            self.disk.lost_write,
        ]
        .into_iter()
        .all(probability)
        {
            return bad(
                "network.loss/duplicate/reorder, gossip.loss and disk.lost_write must be in [0, 1]",
            );
        }
        if !(non_negative(n.jitter_ms) && non_negative(n.reorder_ms)) {
            return bad("network.jitter_ms and network.reorder_ms must be non-negative");
        }
        if !non_negative(self.disk.bitrot_per_sliver_per_day) {
            return bad("disk.bitrot_per_sliver_per_day must be non-negative");
        }
        let w = &self.workload;
        let shards = self.shards();
        if !(floe_protocol::encoding::MIN_SHARDS..=floe_protocol::encoding::MAX_SHARDS)
            .contains(&shards)
        {
            return bad("workload.shards must be 4 to 4096");
        }
        if w.size_min_bytes > w.size_max_bytes {
            return bad("workload.size_min_bytes must not exceed size_max_bytes");
        }
        if !non_negative(w.read_rate_per_s) {
            return bad("workload.read_rate_per_s must be a non-negative number");
        }
        if w.write_attempts == 0 || w.write_timeout_ms == 0 || w.read_hard_timeout_ms == 0 {
            return bad("workload timeouts and attempts must be positive");
        }
        if !positive(self.cpu.verify_mb_per_s) || !positive(self.cpu.check_mb_per_s) {
            return bad("cpu.verify_mb_per_s and cpu.check_mb_per_s must be positive");
        }
        let not_negative = |x: f64| x >= 0.0 && x.is_finite();
        if !not_negative(self.cpu.transfer_mb_per_s) {
            return bad("cpu.transfer_mb_per_s must be zero or positive");
        }
        if !(not_negative(self.cpu.message_us) && not_negative(self.cpu.read_us)) {
            return bad("cpu.message_us and cpu.read_us must be zero or positive");
        }
        if !positive(self.repair.decode_mb_per_s) {
            return bad("repair.decode_mb_per_s must be positive");
        }
        for crash in &self.crash {
            if crash.fraction.is_some_and(|f| !probability(f)) {
                return bad("crash.fraction must be in [0, 1]");
            }
            if crash.fraction.is_none() && crash.nodes.is_empty() {
                return bad("a [[crash]] needs fraction or nodes");
            }
            if crash.restart_at_ms.is_some_and(|r| r < crash.at_ms) {
                return bad("crash.restart_at_ms is before at_ms");
            }
        }
        if let Some(churn) = &self.churn
            && !(positive(churn.session_shape)
                && positive(churn.session_scale_ms)
                && non_negative(churn.arrivals_per_hour))
        {
            return bad(
                "churn.session_shape and session_scale_ms must be positive, arrivals_per_hour ≥ 0",
            );
        }
        for outage in &self.outage {
            if outage.to_ms < outage.from_ms {
                return bad("outage.to_ms is before from_ms");
            }
        }
        for partition in &self.partition {
            if partition.heal_ms < partition.from_ms {
                return bad("partition.heal_ms is before from_ms");
            }
            if partition.fraction.is_some_and(|f| !probability(f)) {
                return bad("partition.fraction must be in [0, 1]");
            }
            if partition.fraction.is_none() && partition.regions.is_empty() {
                return bad("a [[partition]] needs regions or fraction");
            }
        }
        if self.partition.len() > 8 || self.outage.len() > 64 || self.crash.len() > 1024 {
            return bad("at most 8 partitions, 64 outages and 1024 crashes");
        }
        if let Some(sybil) = &self.sybil {
            if sybil.networks == 0 {
                return bad("sybil.networks must be at least 1");
            }
            let targets = u64::from(sybil.target_blobs.unwrap_or(w.blobs).min(w.blobs));
            if targets.saturating_mul(u64::from(shards)) > 1_000_000 {
                return bad("sybil: target_blobs × n must be at most 1,000,000 attacker IDs");
            }
        }
        if let Some(byz) = &self.byzantine
            && !probability(byz.fraction)
        {
            return bad("byzantine.fraction must be in [0, 1]");
        }
        Ok(())
    }
}

/// Sets the value at a dotted `path` in a TOML table, creating tables on the way.
pub fn set_path(table: &mut toml::Table, path: &str, value: toml::Value) -> Result<(), Error> {
    let mut parts: Vec<&str> = path.split('.').collect();
    let Some(last) = parts.pop().filter(|p| !p.is_empty()) else {
        return Err(Error::Invalid(format!("empty sweep parameter {path:?}")));
    };
    let mut current = table;
    for part in parts {
        let entry = current
            .entry(part.to_owned())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        let toml::Value::Table(next) = entry else {
            return Err(Error::Invalid(format!(
                "sweep parameter {path:?}: {part} is not a table"
            )));
        };
        current = next;
    }
    current.insert(last.to_owned(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minimal_scenario_takes_the_defaults() {
        let s = Scenario::from_toml("duration_ms = 1000").unwrap();
        assert_eq!(s.nodes.count, 100);
        assert_eq!(s.shards(), 100);
        assert_eq!(s.source_hash.len(), 64);
        assert!(Scenario::from_toml("duration_ms = 1000\nbogus = 1").is_err());
        assert!(Scenario::from_toml("duration_ms = 1000\n[network]\nloss = 2.0").is_err());
        assert!(Scenario::from_toml("duration_ms = 1000\n[cpu]\nverify_mb_per_s = 0").is_err());
        assert!(Scenario::from_toml("duration_ms = 1000\n[cpu]\nread_us = -1").is_err());
        assert!(Scenario::from_toml("duration_ms = 1000\n[cpu]\ntransfer_mb_per_s = nan").is_err());
        assert!(
            Scenario::from_toml(
                "duration_ms = 1000\n[cpu]\ntransfer_mb_per_s = 93.0\nread_us = 4400"
            )
            .is_ok()
        );
    }

    #[test]
    fn default_shards_follow_the_protocol() {
        let s = Scenario::from_toml("duration_ms = 1\n[nodes]\ncount = 2").unwrap();
        assert_eq!(s.shards(), 4);
        let s = Scenario::from_toml("duration_ms = 1\n[nodes]\ncount = 5000").unwrap();
        assert_eq!(s.shards(), 1000);
    }

    #[test]
    fn sweep_paths_set_nested_values() {
        let mut t: toml::Table = "duration_ms = 1\n[nodes]\ncount = 3".parse().unwrap();
        set_path(&mut t, "nodes.count", toml::Value::Integer(9)).unwrap();
        set_path(&mut t, "byzantine.fraction", toml::Value::Float(0.25)).unwrap();
        set_path(
            &mut t,
            "byzantine.behaviour",
            toml::Value::String("withhold".into()),
        )
        .unwrap();
        let s = Scenario::from_table(t.clone()).unwrap();
        assert_eq!(s.nodes.count, 9);
        assert_eq!(s.byzantine.unwrap().behaviour, Behaviour::Withhold);
        assert!(set_path(&mut t, "duration_ms.x", toml::Value::Integer(1)).is_err());
    }
}
