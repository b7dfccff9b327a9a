//! The gateway's HTTP server: hyper's HTTP/1.1 under the router, with the limits an open gateway needs against
//! idle, slow and greedy clients.
//!
//! - A cap on connections in all and per client IP: one more gets a JSON 503 with `Retry-After` and is closed.
//! - Headers must arrive within `header_timeout`; a connection with no request in flight and no bytes moving for
//!   `idle_timeout` is closed (a request being served, a PUT being certified say, is never cut by it).
//! - A request body must keep up `min_body_rate` after a grace of one `header_timeout`, and never stall for
//!   longer than `idle_timeout`; otherwise it is answered 408.
//! - Closing lingers: after a refusal (a 413 answered before the body is read) the server reads and discards
//!   what the client still sends for a short while, so the client sees the answer rather than a reset.
//!
//! This module owns connections and bytes only; what a request means is the router's business.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::StatusCode;
use futures::StreamExt as _;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

use super::errors::raw_response;

/// The server's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeLimits {
    /// Time allowed for a request's headers (from the first byte the server waits for).
    pub header_timeout: Duration,
    /// A connection with no request in flight and no bytes moving is closed after this long; a request body
    /// that sends nothing for this long fails.
    pub idle_timeout: Duration,
    /// Connections at most.
    pub max_connections: usize,
    /// Connections at most from one IP address.
    pub max_connections_per_ip: usize,
    /// The slowest average rate a request body may arrive at (bytes per second), after a grace of one
    /// `header_timeout`.
    pub min_body_rate: u64,
}

impl Default for ServeLimits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 1024,
            max_connections_per_ip: 64,
            min_body_rate: 1024,
        }
    }
}

/// How long a closing connection reads and discards what the client still sends.
const LINGER: Duration = Duration::from_secs(2);
/// ... and at most this many bytes.
const LINGER_BYTES: u64 = 16 << 20;
/// Closing or refused sockets lingering at once, beyond the connection caps; past this a socket closes at once
/// (a flood of connections cannot hold file descriptors the store and libp2p need).
const MAX_LINGERING: usize = 256;
/// Bytes hyper buffers for one request's head: room for the 16 KiB of headers the router accepts (it answers 431
/// in the envelope past that), and no more held per connection.
const MAX_HEAD_BUFFER: usize = 64 << 10;
/// Time allowed to finish serving once shutdown starts.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Connection counts, in all and by client network (an IPv4 address, or an IPv6 /64: one host gets a whole /64).
#[derive(Default)]
struct Counts {
    total: AtomicUsize,
    by_ip: Mutex<HashMap<IpAddr, usize>>,
}

/// The key a client's connections are counted under.
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut segments = v6.segments();
                segments[4..].fill(0);
                IpAddr::V6(segments.into())
            }
        },
    }
}

/// One admitted connection; gives its place back when dropped.
struct Admitted {
    counts: Arc<Counts>,
    ip: IpAddr,
}

impl Counts {
    fn admit(self: &Arc<Self>, ip: IpAddr, limits: &ServeLimits) -> Option<Admitted> {
        let ip = client_key(ip);
        let mut by_ip = self.by_ip.lock().unwrap_or_else(|p| p.into_inner());
        let here = by_ip.entry(ip).or_insert(0);
        if *here >= limits.max_connections_per_ip
            || self.total.load(Ordering::Relaxed) >= limits.max_connections
        {
            if *here == 0 {
                by_ip.remove(&ip);
            }
            return None;
        }
        *here += 1;
        self.total.fetch_add(1, Ordering::Relaxed);
        Some(Admitted {
            counts: Arc::clone(self),
            ip,
        })
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut by_ip = self.counts.by_ip.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(here) = by_ip.get_mut(&self.ip) {
            *here = here.saturating_sub(1);
            if *here == 0 {
                by_ip.remove(&self.ip);
            }
        }
        self.counts.total.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves `app` on `listener` until `shutdown` completes, then lets open requests finish (for a while).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ServeLimits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let counts = Arc::new(Counts::default());
    let lingering = Arc::new(tokio::sync::Semaphore::new(MAX_LINGERING));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (done_tx, mut done_rx) = tokio::sync::mpsc::channel::<()>(1);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, say: wait for some to come back rather than spin.
                    tracing::warn!(error = %e, "gateway accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Some(admitted) = counts.admit(peer.ip(), &limits) else {
            refuse(stream, peer, &lingering);
            continue;
        };
        let (app, stop, done) = (app.clone(), stop_rx.clone(), done_tx.clone());
        let lingering = Arc::clone(&lingering);
        tokio::spawn(async move {
            connection(stream, peer, app, limits, stop, lingering).await;
            drop((admitted, done));
        });
    }
    let _ = stop_tx.send(true);
    drop(done_tx);
    // Every connection holds a sender: the channel closes when the last one ends.
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, done_rx.recv()).await;
    Ok(())
}

/// Answers a connection over the caps with a 503 and closes it: lingering for a second if the budget allows,
/// else at once after a write that does not wait.
fn refuse(stream: TcpStream, peer: SocketAddr, lingering: &Arc<tokio::sync::Semaphore>) {
    tracing::debug!(%peer, "gateway connection refused: too many connections");
    let answer = raw_response(
        StatusCode::SERVICE_UNAVAILABLE,
        "this node has too many open connections (from your address or in all); try again shortly",
    );
    match Arc::clone(lingering).try_acquire_owned() {
        Ok(permit) => {
            tokio::spawn(async move {
                let mut stream = stream;
                let _ =
                    tokio::time::timeout(Duration::from_secs(1), stream.write_all(&answer)).await;
                linger(stream, Duration::from_secs(1), permit).await;
            });
        }
        Err(_) => {
            let _ = stream.try_write(&answer);
        }
    }
}

/// Shuts the write side and discards what the client still sends, for at most `time` and [`LINGER_BYTES`]; the
/// permit is the socket's place in the lingering budget.
async fn linger(mut stream: TcpStream, time: Duration, _permit: tokio::sync::OwnedSemaphorePermit) {
    let _ = stream.shutdown().await;
    let mut sink = [0u8; 16 << 10];
    let mut discarded = 0u64;
    let _ = tokio::time::timeout(time, async {
        while discarded < LINGER_BYTES {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => discarded = discarded.saturating_add(u64::try_from(n).unwrap_or(0)),
            }
        }
    })
    .await;
}

/// Milliseconds since the connection opened, when a byte last moved.
struct Activity {
    opened: Instant,
    last: AtomicU64,
    in_flight: AtomicUsize,
}

impl Activity {
    fn touch(&self) {
        let ms = u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(ms, Ordering::Relaxed);
    }

    fn quiet_for(&self) -> Duration {
        let now = u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(now.saturating_sub(self.last.load(Ordering::Relaxed)))
    }
}

/// A request being served; the connection is not idle while one exists.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn enter(activity: &Arc<Activity>) -> Self {
        activity.in_flight.fetch_add(1, Ordering::Relaxed);
        Self(Arc::clone(activity))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.touch();
    }
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    limits: ServeLimits,
    mut stop: tokio::sync::watch::Receiver<bool>,
    lingering: Arc<tokio::sync::Semaphore>,
) {
    let _ = stream.set_nodelay(true);
    let activity = Arc::new(Activity {
        opened: Instant::now(),
        last: AtomicU64::new(0),
        in_flight: AtomicUsize::new(0),
    });
    let io = TrackedIo {
        stream: Some(stream),
        activity: Arc::clone(&activity),
        lingering,
    };
    let service_activity = Arc::clone(&activity);
    let service =
        hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
            let guard = InFlight::enter(&service_activity);
            let mut request = request.map(|body| rate_checked(Body::new(body), limits));
            // The client's address, for the per-client budgets (`fair_use`).
            request
                .extensions_mut()
                .insert(axum::extract::ConnectInfo(peer));
            let app = app.clone();
            async move {
                // The request is in flight until its answer's body ends, not when its handler returns: a
                // streamed read is still being served while its chunks go out.
                tower::ServiceExt::oneshot(app, request)
                    .await
                    .map(|response| {
                        response.map(|body| {
                            Body::new(GuardedBody {
                                body,
                                _guard: guard,
                            })
                        })
                    })
            }
        });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(MAX_HEAD_BUFFER);
    let conn = builder.serve_connection(TokioIo::new(io), service);
    let mut conn = std::pin::pin!(conn);
    let tick = (limits.idle_timeout / 4).clamp(Duration::from_millis(100), Duration::from_secs(5));
    let mut closing: Option<Instant> = None;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "gateway connection ended with an error");
                }
                return;
            }
            _ = stop.changed(), if closing.is_none() => {
                conn.as_mut().graceful_shutdown();
                closing = Some(Instant::now());
            }
            () = tokio::time::sleep(tick) => {
                match closing {
                    // A connection asked to finish that still moves nothing is dropped; one still sending an
                    // answer is left to finish it.
                    Some(since)
                        if since.elapsed() > limits.idle_timeout.max(SHUTDOWN_GRACE)
                            && activity.quiet_for() >= limits.idle_timeout =>
                    {
                        return;
                    }
                    Some(_) => {}
                    None if activity.in_flight.load(Ordering::Relaxed) == 0
                        && activity.quiet_for() >= limits.idle_timeout =>
                    {
                        conn.as_mut().graceful_shutdown();
                        closing = Some(Instant::now());
                    }
                    None => {}
                }
            }
        }
    }
}

/// The connection's socket, noting when bytes move; on drop it lingers (see the module doc).
struct TrackedIo {
    stream: Option<TcpStream>,
    activity: Arc<Activity>,
    lingering: Arc<tokio::sync::Semaphore>,
}

/// An answer's body that holds its request's [`InFlight`] guard until it ends or is dropped.
struct GuardedBody {
    body: Body,
    _guard: InFlight,
}

impl http_body::Body for GuardedBody {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

fn gone() -> std::io::Error {
    std::io::Error::from(std::io::ErrorKind::NotConnected)
}

impl AsyncRead for TrackedIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let Some(stream) = this.stream.as_mut() else {
            return Poll::Ready(Err(gone()));
        };
        let result = Pin::new(stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.activity.touch();
        }
        result
    }
}

impl AsyncWrite for TrackedIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        let Some(stream) = this.stream.as_mut() else {
            return Poll::Ready(Err(gone()));
        };
        let result = Pin::new(stream).poll_write(cx, buf);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.touch();
        }
        result
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.stream.as_mut() {
            Some(stream) => Pin::new(stream).poll_flush(cx),
            None => Poll::Ready(Err(gone())),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.stream.as_mut() {
            Some(stream) => Pin::new(stream).poll_shutdown(cx),
            None => Poll::Ready(Err(gone())),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        let Some(stream) = this.stream.as_mut() else {
            return Poll::Ready(Err(gone()));
        };
        let result = Pin::new(stream).poll_write_vectored(cx, bufs);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.touch();
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.stream
            .as_ref()
            .is_some_and(TcpStream::is_write_vectored)
    }
}

impl Drop for TrackedIo {
    fn drop(&mut self) {
        if let Some(stream) = self.stream.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
            && let Ok(permit) = Arc::clone(&self.lingering).try_acquire_owned()
        {
            runtime.spawn(linger(stream, LINGER, permit));
        }
    }
}

/// The error a too-slow request body ends with (answered 408).
#[derive(Debug, thiserror::Error)]
#[error("the request body arrived too slowly: {0}")]
pub struct BodyTooSlow(String);

/// Whether a body error is [`BodyTooSlow`].
pub fn is_too_slow(error: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if e.is::<BodyTooSlow>() {
            return true;
        }
        source = e.source();
    }
    false
}

/// `body`, failing with [`BodyTooSlow`] when it stalls for `idle_timeout`, or when a window of one
/// `header_timeout` (at least a second) brings less than `min_body_rate` per second: the rate is checked window
/// by window, so bytes sent fast early earn no credit for trickling later.
fn rate_checked(body: Body, limits: ServeLimits) -> Body {
    let window = limits.header_timeout.max(Duration::from_secs(1));
    let state = (body.into_data_stream(), Instant::now(), 0u64, false);
    let stream = futures::stream::unfold(
        state,
        move |(mut inner, window_start, in_window, failed)| async move {
            if failed {
                return None;
            }
            let too_slow = |why: String| Some(Err(axum::Error::new(BodyTooSlow(why))));
            let chunk = match tokio::time::timeout(limits.idle_timeout, inner.next()).await {
                Err(_) => {
                    let why = format!("nothing for {:?}", limits.idle_timeout);
                    return too_slow(why).map(|e| (e, (inner, window_start, in_window, true)));
                }
                Ok(None) => return None,
                Ok(Some(Err(e))) => return Some((Err(e), (inner, window_start, in_window, true))),
                Ok(Some(Ok(chunk))) => chunk,
            };
            let in_window =
                in_window.saturating_add(u64::try_from(chunk.len()).unwrap_or(u64::MAX));
            let elapsed = window_start.elapsed();
            if elapsed < window {
                return Some((Ok(chunk), (inner, window_start, in_window, false)));
            }
            let owed = u64::try_from(
                elapsed
                    .as_millis()
                    .saturating_mul(u128::from(limits.min_body_rate))
                    / 1000,
            )
            .unwrap_or(u64::MAX);
            if in_window < owed {
                let why = format!(
                    "{in_window} bytes in {elapsed:?}, below {} bytes/s",
                    limits.min_body_rate
                );
                return too_slow(why).map(|e| (e, (inner, window_start, in_window, true)));
            }
            Some((Ok(chunk), (inner, Instant::now(), 0, false)))
        },
    );
    Body::from_stream(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_capped_in_all_and_per_address() {
        let counts = Arc::new(Counts::default());
        let limits = ServeLimits {
            max_connections: 3,
            max_connections_per_ip: 2,
            ..ServeLimits::default()
        };
        let (a, b, c): (IpAddr, IpAddr, IpAddr) = (
            [127, 0, 0, 1].into(),
            [127, 0, 0, 2].into(),
            [127, 0, 0, 3].into(),
        );
        let a1 = counts.admit(a, &limits).unwrap();
        let _a2 = counts.admit(a, &limits).unwrap();
        assert!(counts.admit(a, &limits).is_none(), "third from one address");
        let _b1 = counts.admit(b, &limits).unwrap();
        assert!(counts.admit(c, &limits).is_none(), "fourth in all");
        drop(a1);
        let _c1 = counts.admit(c, &limits).unwrap();
        assert_eq!(counts.total.load(Ordering::Relaxed), 3);
    }

    #[tokio::test]
    async fn a_body_that_stalls_or_trickles_fails_as_too_slow() {
        let limits = ServeLimits {
            header_timeout: Duration::from_millis(50),
            idle_timeout: Duration::from_millis(200),
            min_body_rate: 10_000,
            ..ServeLimits::default()
        };
        // Stalls after one chunk.
        let stalled = futures::stream::iter([Ok::<_, std::io::Error>(
            axum::body::Bytes::from_static(b"x"),
        )])
        .chain(futures::stream::pending());
        let error = axum::body::to_bytes(rate_checked(Body::from_stream(stalled), limits), 1 << 20)
            .await
            .unwrap_err();
        assert!(is_too_slow(&error), "{error}");
        // One byte every 100 ms: under 10 kB/s once the grace is over.
        let trickle = futures::stream::unfold((), |()| async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            Some((
                Ok::<_, std::io::Error>(axum::body::Bytes::from_static(b"x")),
                (),
            ))
        });
        let error = axum::body::to_bytes(rate_checked(Body::from_stream(trickle), limits), 1 << 20)
            .await
            .unwrap_err();
        assert!(is_too_slow(&error), "{error}");
        // A prompt body passes whole.
        let body = Body::from(vec![7u8; 100_000]);
        let bytes = axum::body::to_bytes(rate_checked(body, limits), 1 << 20)
            .await
            .unwrap();
        assert_eq!(bytes.len(), 100_000);
    }
}
