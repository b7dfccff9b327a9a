//! Fair use: per-client budgets at the gateway, so that no single client can take a node's gateway (its CPU,
//! disk and swarm bandwidth) for itself, and a client over its budget is told when to come back.
//!
//! A client is an IP address (an IPv6 address by its /64, as the server's connection caps count), or an API key
//! sent in `X-Floe-Api-Key` and listed in `--api-keys`, which has its own budget of [`API_KEY_FACTOR`] times the
//! per-address one. Each client has three limits:
//! - **requests**: a token bucket of `requests_per_second` sustained, with bursts of [`BURST_SECONDS`] of it;
//! - **bytes** (request bodies read plus answer bodies sent): a bucket of `bytes_per_second` sustained and
//!   [`BURST_SECONDS`] of burst, charged as the bytes move. A body's size is not known before it moves, so a
//!   request may overdraw the bucket: it completes, and the client's next requests wait until the debt is paid;
//! - **requests in flight** at once.
//!
//! Over a limit, a request is answered 429 in the error envelope, with `Retry-After` (whole seconds until its
//! budget allows it), before any handler runs. An unknown API key is answered 401. Addresses in `--http-exempt`
//! (default the loopback host, 127.0.0.1 and ::1: the operator's own CLI and scripts) have no limits. A
//! connection from an address in `--http-trusted-proxies` is judged by the client address its proxy appended
//! last to `X-Forwarded-For`.
//!
//! Memory stays bounded: a client whose buckets are full and that has nothing in flight is forgotten (a new
//! budget starts full, so forgetting forgives nothing), and once [`MAX_CLIENTS`] clients still owe, new clients
//! share one budget.
//!
//! The module owns budgets and their answers; what a request does is the router's business.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use ipnet::IpNet;

use super::errors::error;
use crate::budget::{BURST_SECONDS, Bucket, whole_seconds};

/// A client with an API key gets this many times the budget of an address.
pub const API_KEY_FACTOR: u64 = 10;
/// Clients tracked at most while they owe; past this, new clients share one budget.
pub const MAX_CLIENTS: usize = 100_000;
/// The header carrying an API key (not `Authorization`, which Walrus clients may send for their own publisher).
pub const API_KEY_HEADER: &str = "x-floe-api-key";
/// Clients tracked before settled ones are forgotten (at most once a second).
const PRUNE_AT: usize = 4_096;

/// The limits, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FairUseConfig {
    /// Requests per second a client may sustain (0: unlimited).
    pub requests_per_second: u64,
    /// Bytes per second a client may move, both ways together (0: unlimited).
    pub bytes_per_second: u64,
    /// Requests a client may have in flight at once (0: unlimited).
    pub max_in_flight: u32,
    /// Addresses with no limits.
    pub exempt: Vec<IpNet>,
    /// Reverse proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<IpNet>,
    /// API keys with their own, larger budgets.
    pub api_keys: Vec<String>,
}

impl Default for FairUseConfig {
    fn default() -> Self {
        Self {
            requests_per_second: 50,
            bytes_per_second: 64 << 20,
            max_in_flight: 16,
            exempt: default_exempt(),
            trusted_proxies: Vec::new(),
            api_keys: Vec::new(),
        }
    }
}

/// The loopback host, IPv4 and IPv6 (not all of 127.0.0.0/8: tests and benchmarks play clients from there).
pub fn default_exempt() -> Vec<IpNet> {
    vec![
        IpNet::from(IpAddr::from([127, 0, 0, 1])),
        IpNet::from(IpAddr::from(std::net::Ipv6Addr::LOCALHOST)),
    ]
}

/// Why a list of networks does not parse.
#[derive(Debug, thiserror::Error)]
#[error("{entry:?} is neither an IP address nor a network like 10.0.0.0/8 or 2001:db8::/32")]
pub struct BadNetwork {
    entry: String,
}

/// Parses a comma-separated list of addresses and networks; `none` (or nothing) is the empty list.
pub fn parse_networks(list: &str) -> Result<Vec<IpNet>, BadNetwork> {
    let list = list.trim();
    if list.is_empty() || list.eq_ignore_ascii_case("none") {
        return Ok(Vec::new());
    }
    list.split(',')
        .map(str::trim)
        .map(|entry| {
            entry
                .parse::<IpNet>()
                .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| BadNetwork {
                    entry: entry.to_owned(),
                })
        })
        .collect()
}

/// Reads an API key file: one key per line, blank lines and `#` comments ignored.
pub fn parse_api_keys(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

/// Refusals and clients, for the metrics.
#[derive(Debug, Default)]
pub struct FairUseCounters {
    /// Requests refused for the request rate.
    pub over_requests: AtomicU64,
    /// Requests refused for the byte budget.
    pub over_bytes: AtomicU64,
    /// Requests refused for the in-flight limit.
    pub over_in_flight: AtomicU64,
    /// Requests refused for an unknown API key.
    pub unknown_keys: AtomicU64,
    /// Body bytes charged to clients.
    pub bytes_charged: AtomicU64,
}

/// One client, as budgets are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Client {
    Address(IpAddr),
    Key(blake3::Hash),
    /// Everyone who arrived while [`MAX_CLIENTS`] others still owed.
    Overflow,
}

/// A client's budget.
#[derive(Debug)]
struct Budget {
    requests: Bucket,
    bytes: Bucket,
    in_flight: u32,
    /// Its rates, the configured ones times its factor.
    rates: Rates,
}

#[derive(Debug, Clone, Copy)]
struct Rates {
    requests: u64,
    bytes: u64,
    in_flight: u32,
}

impl Budget {
    fn new(rates: Rates, now: Instant) -> Self {
        Self {
            requests: Bucket::full(rates.requests, now),
            bytes: Bucket::full(rates.bytes, now),
            in_flight: 0,
            rates,
        }
    }

    fn refill(&mut self, now: Instant) {
        self.requests.refill(self.rates.requests, now);
        self.bytes.refill(self.rates.bytes, now);
    }

    /// Nothing owed and nothing in flight: forgetting it loses nothing.
    fn settled(&self) -> bool {
        self.in_flight == 0
            && self.requests.is_full(self.rates.requests)
            && self.bytes.is_full(self.rates.bytes)
    }
}

type Shared = Arc<Mutex<Budget>>;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere while holding a budget leaves numbers, not broken invariants: carry on.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Every client's budget.
#[derive(Debug)]
pub struct FairUse {
    config: FairUseConfig,
    keys: HashSet<blake3::Hash>,
    clients: Mutex<Clients>,
    /// Refusals and bytes, for the metrics.
    pub counters: FairUseCounters,
}

#[derive(Debug, Default)]
struct Clients {
    budgets: HashMap<Client, Shared>,
    pruned: Option<Instant>,
}

/// Which limit a refused request ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// The request rate.
    Requests,
    /// The byte budget.
    Bytes,
    /// Requests in flight.
    InFlight,
}

/// A request the gateway does not serve now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The client is over a limit; it may come back after `retry_after`.
    Over {
        /// The limit.
        limit: Limit,
        /// The client, for the message.
        client: String,
        /// The limit's value for this client.
        allowed: u64,
        /// When to come back.
        retry_after: Duration,
    },
    /// `X-Floe-Api-Key` names no key this node knows.
    UnknownKey,
}

impl Refusal {
    /// The answer: 429 with `Retry-After`, or 401, in the error envelope.
    pub fn response(&self) -> Response {
        match self {
            Self::UnknownKey => error(
                StatusCode::UNAUTHORIZED,
                format!(
                    "unknown API key in {API_KEY_HEADER}; leave the header out to be served as an address \
                     (docs/operators.md, \"Fair use\")"
                ),
            ),
            Self::Over {
                limit,
                client,
                allowed,
                retry_after,
            } => {
                let seconds = whole_seconds(*retry_after);
                let what = match limit {
                    Limit::Requests => format!(
                        "{client} is over its request rate of {allowed} per second (bursts of {})",
                        allowed.saturating_mul(BURST_SECONDS)
                    ),
                    Limit::Bytes => format!(
                        "{client} is over its transfer budget of {allowed} bytes per second (bursts of {})",
                        allowed.saturating_mul(BURST_SECONDS)
                    ),
                    Limit::InFlight => {
                        format!("{client} already has {allowed} requests in flight")
                    }
                };
                let mut response = error(
                    StatusCode::TOO_MANY_REQUESTS,
                    format!("{what}; retry in {seconds} s"),
                );
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
                response
            }
        }
    }
}

/// An admitted request's hold on its client's budget: bodies charge bytes through it, and its drop ends the
/// request's time in flight.
#[derive(Debug)]
pub struct Ticket {
    budget: Option<Shared>,
    fair_use: Option<Arc<FairUse>>,
}

impl Ticket {
    fn unlimited() -> Self {
        Self {
            budget: None,
            fair_use: None,
        }
    }

    /// Charges `bytes` moved for this request.
    pub fn charge(&self, bytes: usize) {
        let (Some(budget), Some(fair_use)) = (&self.budget, &self.fair_use) else {
            return;
        };
        let bytes = u64::try_from(bytes).unwrap_or(u64::MAX);
        fair_use
            .counters
            .bytes_charged
            .fetch_add(bytes, Ordering::Relaxed);
        let mut budget = lock(budget);
        if budget.rates.bytes > 0 {
            budget.bytes.take(bytes);
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Some(budget) = &self.budget {
            let mut budget = lock(budget);
            budget.in_flight = budget.in_flight.saturating_sub(1);
        }
    }
}

impl FairUse {
    /// Budgets for `config`.
    pub fn new(config: FairUseConfig) -> Self {
        let keys = config
            .api_keys
            .iter()
            .map(|key| blake3::hash(key.as_bytes()))
            .collect();
        Self {
            config,
            keys,
            clients: Mutex::new(Clients::default()),
            counters: FairUseCounters::default(),
        }
    }

    /// The limits.
    pub fn config(&self) -> &FairUseConfig {
        &self.config
    }

    /// Clients tracked now.
    pub fn clients(&self) -> usize {
        lock(&self.clients).budgets.len()
    }

    fn unlimited(&self) -> bool {
        self.config.requests_per_second == 0
            && self.config.bytes_per_second == 0
            && self.config.max_in_flight == 0
    }

    /// The client's address: the connection's, or for a trusted proxy the last address in `X-Forwarded-For`
    /// that is not itself a trusted proxy.
    fn client_address(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let trusted = |ip: &IpAddr| self.config.trusted_proxies.iter().any(|n| n.contains(ip));
        if !trusted(&peer) {
            return peer;
        }
        let entries: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .map(str::trim)
            .collect();
        for entry in entries.iter().rev() {
            let parsed = entry
                .parse::<IpAddr>()
                .ok()
                .or_else(|| entry.parse::<SocketAddr>().ok().map(|s| s.ip()));
            match parsed {
                Some(ip) if trusted(&ip) => continue,
                Some(ip) => return ip,
                // A malformed entry: whatever is left of it was written by the client, not the proxy.
                None => break,
            }
        }
        peer
    }

    /// Admits a request from `peer` with `headers` at `now`, or says why not.
    pub fn admit(
        self: &Arc<Self>,
        peer: IpAddr,
        headers: &HeaderMap,
        now: Instant,
    ) -> Result<Ticket, Refusal> {
        let address = unmapped(self.client_address(peer, headers));
        if self.unlimited() || self.config.exempt.iter().any(|n| n.contains(&address)) {
            return Ok(Ticket::unlimited());
        }
        let (client, factor) = match headers.get(API_KEY_HEADER) {
            Some(key) => {
                let hash = blake3::hash(key.as_bytes());
                if !self.keys.contains(&hash) {
                    self.counters.unknown_keys.fetch_add(1, Ordering::Relaxed);
                    return Err(Refusal::UnknownKey);
                }
                (Client::Key(hash), API_KEY_FACTOR)
            }
            None => (Client::Address(per_host(address)), 1),
        };
        let rates = Rates {
            requests: self.config.requests_per_second.saturating_mul(factor),
            bytes: self.config.bytes_per_second.saturating_mul(factor),
            in_flight: self
                .config
                .max_in_flight
                .saturating_mul(u32::try_from(factor).unwrap_or(u32::MAX)),
        };
        let (client, shared) = self.budget(client, rates, now);
        let mut budget = lock(&shared);
        budget.refill(now);
        let name = || match client {
            Client::Address(ip) => format!("client {ip}"),
            Client::Key(_) => "this API key".to_owned(),
            Client::Overflow => "the shared budget of new clients".to_owned(),
        };
        let over = |limit, allowed, retry_after| Refusal::Over {
            limit,
            client: name(),
            allowed,
            retry_after,
        };
        let refusal = if rates.in_flight > 0 && budget.in_flight >= rates.in_flight {
            Some((
                over(
                    Limit::InFlight,
                    u64::from(rates.in_flight),
                    Duration::from_secs(1),
                ),
                &self.counters.over_in_flight,
            ))
        } else if rates.requests > 0 && !budget.requests.has(1) {
            let wait = budget.requests.wait_for(1, rates.requests);
            Some((
                over(Limit::Requests, rates.requests, wait),
                &self.counters.over_requests,
            ))
        } else if rates.bytes > 0 && !budget.bytes.has(0) {
            let wait = budget.bytes.wait_for(0, rates.bytes);
            Some((
                over(Limit::Bytes, rates.bytes, wait),
                &self.counters.over_bytes,
            ))
        } else {
            None
        };
        if let Some((refusal, counter)) = refusal {
            counter.fetch_add(1, Ordering::Relaxed);
            return Err(refusal);
        }
        if rates.requests > 0 {
            budget.requests.take(1);
        }
        budget.in_flight = budget.in_flight.saturating_add(1);
        drop(budget);
        Ok(Ticket {
            budget: Some(shared),
            fair_use: Some(Arc::clone(self)),
        })
    }

    /// The budget `client` is kept under (itself, or the shared one when too many owe), made if new.
    fn budget(&self, client: Client, rates: Rates, now: Instant) -> (Client, Shared) {
        let mut clients = lock(&self.clients);
        if let Some(shared) = clients.budgets.get(&client) {
            return (client, Arc::clone(shared));
        }
        if clients.budgets.len() >= PRUNE_AT
            && clients
                .pruned
                .is_none_or(|at| now.saturating_duration_since(at) >= Duration::from_secs(1))
        {
            clients.pruned = Some(now);
            clients.budgets.retain(|_, shared| {
                let mut budget = lock(shared);
                budget.refill(now);
                !budget.settled()
            });
        }
        let client = if clients.budgets.len() >= MAX_CLIENTS {
            Client::Overflow
        } else {
            client
        };
        let shared = clients
            .budgets
            .entry(client)
            .or_insert_with(|| Arc::new(Mutex::new(Budget::new(rates, now))));
        (client, Arc::clone(shared))
    }
}

/// An IPv4-mapped IPv6 address is its IPv4 address.
fn unmapped(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// The address a client's budget is kept under: IPv4 as is, IPv6 by its /64 (one host gets a whole /64).
fn per_host(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            let mut segments = v6.segments();
            segments[4..].fill(0);
            IpAddr::V6(segments.into())
        }
    }
}

/// The middleware: admits the request or answers its refusal, and charges its bodies' bytes to its client. A
/// request without the server's connection info (the router driven directly, in tests) is not limited.
pub async fn limit(State(fair_use): State<Arc<FairUse>>, request: Request, next: Next) -> Response {
    let Some(ConnectInfo(peer)) = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .copied()
    else {
        return next.run(request).await;
    };
    let ticket = match fair_use.admit(peer.ip(), request.headers(), Instant::now()) {
        Ok(ticket) => Arc::new(ticket),
        Err(refusal) => {
            tracing::debug!(client = %peer.ip(), ?refusal, "gateway request over its client's budget");
            return refusal.response();
        }
    };
    let request = request.map(|body| {
        Body::new(Charged {
            body,
            ticket: Arc::clone(&ticket),
        })
    });
    next.run(request)
        .await
        .map(|body| Body::new(Charged { body, ticket }))
}

/// A body whose bytes are charged to a ticket as they move; the ticket goes when both bodies have.
struct Charged {
    body: Body,
    ticket: Arc<Ticket>,
}

impl http_body::Body for Charged {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            self.ticket.charge(data.len());
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fair_use(requests: u64, bytes: u64, in_flight: u32) -> Arc<FairUse> {
        Arc::new(FairUse::new(FairUseConfig {
            requests_per_second: requests,
            bytes_per_second: bytes,
            max_in_flight: in_flight,
            api_keys: vec!["sesame".into()],
            ..FairUseConfig::default()
        }))
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn over(result: Result<Ticket, Refusal>) -> (Limit, Duration) {
        match result {
            Err(Refusal::Over {
                limit, retry_after, ..
            }) => (limit, retry_after),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn requests_burst_then_follow_the_rate() {
        let limits = fair_use(5, 0, 0);
        let (client, none, start) = (ip("192.0.2.7"), HeaderMap::new(), Instant::now());
        for _ in 0..5 * BURST_SECONDS {
            drop(limits.admit(client, &none, start).unwrap());
        }
        let (limit, wait) = over(limits.admit(client, &none, start));
        assert_eq!((limit, wait), (Limit::Requests, Duration::from_millis(200)));
        // Another address has its own budget.
        assert!(limits.admit(ip("192.0.2.8"), &none, start).is_ok());
        // One fifth of a second later, one more.
        let later = start + Duration::from_millis(200);
        assert!(limits.admit(client, &none, later).is_ok());
        assert!(limits.admit(client, &none, later).is_err());
        assert_eq!(limits.counters.over_requests.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn an_overdrawn_byte_budget_holds_the_next_request_until_paid() {
        let limits = fair_use(0, 1_000, 0);
        let (client, none, start) = (ip("192.0.2.7"), HeaderMap::new(), Instant::now());
        let ticket = limits.admit(client, &none, start).unwrap();
        // The burst is 10,000 bytes; the request moves 15,000: it is not cut, but it leaves a debt of 5,000.
        ticket.charge(15_000);
        drop(ticket);
        let (limit, wait) = over(limits.admit(client, &none, start));
        assert_eq!((limit, wait), (Limit::Bytes, Duration::from_secs(5)));
        let answer = Refusal::Over {
            limit,
            client: "client 192.0.2.7".into(),
            allowed: 1_000,
            retry_after: wait,
        }
        .response();
        assert_eq!(answer.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(answer.headers()[header::RETRY_AFTER], "5");
        assert!(
            limits
                .admit(client, &none, start + Duration::from_secs(5))
                .is_ok()
        );
    }

    #[test]
    fn requests_in_flight_are_capped_until_their_bodies_end() {
        let limits = fair_use(0, 0, 2);
        let (client, none, now) = (ip("2001:db8::1"), HeaderMap::new(), Instant::now());
        let first = limits.admit(client, &none, now).unwrap();
        let _second = limits.admit(client, &none, now).unwrap();
        // Same /64, same client.
        let (limit, _) = over(limits.admit(ip("2001:db8::2"), &none, now));
        assert_eq!(limit, Limit::InFlight);
        assert!(limits.admit(ip("2001:db8:0:1::1"), &none, now).is_ok());
        drop(first);
        assert!(limits.admit(client, &none, now).is_ok());
    }

    #[test]
    fn keys_get_their_own_larger_budget_and_unknown_keys_are_refused() {
        let limits = fair_use(1, 0, 0);
        let now = Instant::now();
        let client = ip("198.51.100.9");
        let mut keyed = HeaderMap::new();
        keyed.insert(API_KEY_HEADER, HeaderValue::from_static("sesame"));
        for _ in 0..API_KEY_FACTOR * BURST_SECONDS {
            assert!(limits.admit(client, &keyed, now).is_ok());
        }
        assert!(limits.admit(client, &keyed, now).is_err());
        // The address's own budget is untouched.
        assert!(limits.admit(client, &HeaderMap::new(), now).is_ok());
        let mut wrong = HeaderMap::new();
        wrong.insert(API_KEY_HEADER, HeaderValue::from_static("guess"));
        assert_eq!(
            limits.admit(client, &wrong, now).unwrap_err(),
            Refusal::UnknownKey
        );
        assert_eq!(
            Refusal::UnknownKey.response().status(),
            StatusCode::UNAUTHORIZED
        );
    }

    #[test]
    fn the_loopback_host_is_exempt_and_proxies_are_trusted_only_when_listed() {
        let limits = Arc::new(FairUse::new(FairUseConfig {
            requests_per_second: 1,
            trusted_proxies: parse_networks("10.0.0.0/8").unwrap(),
            ..FairUseConfig::default()
        }));
        let now = Instant::now();
        let none = HeaderMap::new();
        for _ in 0..100 {
            assert!(limits.admit(ip("127.0.0.1"), &none, now).is_ok());
            assert!(limits.admit(ip("::ffff:127.0.0.1"), &none, now).is_ok());
        }
        let mut forwarded = HeaderMap::new();
        forwarded.insert(
            "x-forwarded-for",
            HeaderValue::from_static("203.0.113.5, 198.51.100.1, 10.1.1.1"),
        );
        // Through the trusted proxy, the client is the last untrusted entry, whatever the proxy's address.
        for _ in 0..BURST_SECONDS {
            assert!(limits.admit(ip("10.2.2.2"), &forwarded, now).is_ok());
        }
        assert!(limits.admit(ip("10.3.3.3"), &forwarded, now).is_err());
        assert!(limits.admit(ip("198.51.100.2"), &none, now).is_ok());
        // From an untrusted peer the header is the client's own claim and changes nothing.
        for _ in 0..BURST_SECONDS {
            assert!(limits.admit(ip("192.0.2.1"), &forwarded, now).is_ok());
        }
        assert!(limits.admit(ip("192.0.2.1"), &forwarded, now).is_err());
    }

    #[test]
    fn settled_clients_are_forgotten_and_owing_ones_kept() {
        let limits = fair_use(1, 0, 0);
        let none = HeaderMap::new();
        let start = Instant::now();
        let owing = ip("192.0.2.1");
        for _ in 0..BURST_SECONDS {
            drop(limits.admit(owing, &none, start).unwrap());
        }
        for i in 0..u32::try_from(PRUNE_AT).unwrap() {
            let address = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            drop(limits.admit(address, &none, start).unwrap());
        }
        // Two seconds on, the others have refilled their one request; the first still owes eight.
        let later = start + Duration::from_secs(2);
        drop(limits.admit(ip("192.0.2.2"), &none, later).unwrap());
        assert_eq!(limits.clients(), 2);
        assert!(limits.admit(owing, &none, later).is_ok());
        assert!(limits.admit(owing, &none, later).is_ok());
        assert!(limits.admit(owing, &none, later).is_err());
    }

    #[test]
    fn lists_of_networks_parse_or_say_which_entry_is_wrong() {
        assert_eq!(parse_networks("none").unwrap(), vec![]);
        assert_eq!(parse_networks(" ").unwrap(), vec![]);
        let nets = parse_networks("127.0.0.1, 10.0.0.0/8,::1").unwrap();
        assert_eq!(nets.len(), 3);
        assert!(nets[1].contains(&ip("10.9.9.9")));
        let wrong = parse_networks("10.0.0.0/8,localhost").unwrap_err();
        assert!(wrong.to_string().contains("\"localhost\""), "{wrong}");
        assert_eq!(
            parse_api_keys("# keys\n\nalpha\n  beta  \n"),
            vec!["alpha".to_owned(), "beta".to_owned()]
        );
    }
}
