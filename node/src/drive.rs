//! The one drive loop of the node's protocol machines (write, streamed write, read, repair). A driver spawns
//! each effect's IO as a task that reports back on the driver's channel, and waits for the next report or its
//! machine's timer, whichever comes first; the caller feeds either to the machine with the time and handles
//! the effects that come back. The timer rule is the protocol's (`write::Timer`: the earliest request wins, and
//! a fired timer is forgotten), the same for every machine and for the simulator.
//!
//! This module owns the waiting, not the decisions: what each effect means stays with the machine's caller.

use std::future::Future;
use std::time::{Duration, Instant};

use floe_protocol::write::{Millis, Timer};
use tokio::sync::mpsc;

/// What woke a driver.
#[derive(Debug)]
pub(crate) enum Wake<R> {
    /// A task reported.
    Report(R),
    /// The machine's timer fired, at this time.
    Timer(Millis),
}

/// Drives one protocol machine: its IO tasks' reports and its timer. `R` is what a task reports.
pub(crate) struct Driver<R> {
    epoch: Instant,
    timer: Timer,
    tx: mpsc::UnboundedSender<R>,
    rx: mpsc::UnboundedReceiver<R>,
}

impl<R: Send + 'static> Driver<R> {
    /// A driver on the node's millisecond clock, which counts from `epoch`.
    pub(crate) fn new(epoch: Instant) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Self {
            epoch,
            timer: Timer::default(),
            tx,
            rx,
        }
    }

    /// Runs `work` as a task and reports its output.
    pub(crate) fn spawn(&self, work: impl Future<Output = R> + Send + 'static) {
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let _ = tx.send(work.await);
        });
    }

    /// A sender for reports from work the driver does not spawn itself (a blocking thread, say).
    pub(crate) fn reporter(&self) -> mpsc::UnboundedSender<R> {
        self.tx.clone()
    }

    /// Reports `report` at once, as if a task had finished.
    pub(crate) fn report(&self, report: R) {
        let _ = self.tx.send(report);
    }

    /// The machine asked to be woken at `at`.
    pub(crate) fn set_timer(&mut self, at: Millis) {
        self.timer.request(at);
    }

    /// Waits for the next report or the timer. Never ends otherwise: the driver keeps a sender itself.
    pub(crate) async fn next(&mut self) -> Wake<R> {
        tokio::select! {
            Some(report) = self.rx.recv() => Wake::Report(report),
            _ = sleep_until(self.epoch, self.timer.deadline()) => {
                self.timer.fire();
                Wake::Timer(now(self.epoch))
            }
        }
    }
}

/// Milliseconds since `epoch`.
pub(crate) fn now(epoch: Instant) -> Millis {
    Millis::try_from(epoch.elapsed().as_millis()).unwrap_or(Millis::MAX)
}

/// Sleeps until `at` on the clock that counts from `epoch`; for ever when `at` is `None`.
pub(crate) async fn sleep_until(epoch: Instant, at: Option<Millis>) {
    match at {
        Some(at) => tokio::time::sleep_until((epoch + Duration::from_millis(at)).into()).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_earliest_timer_wins_fires_once_and_reports_wake_the_driver() {
        let epoch = Instant::now();
        let mut driver = Driver::<u32>::new(epoch);
        driver.set_timer(now(epoch) + 60);
        driver.set_timer(now(epoch) + 20);
        match driver.next().await {
            Wake::Timer(at) => assert!((20..60).contains(&at), "{at}"),
            Wake::Report(report) => panic!("no report was sent, got {report}"),
        }
        // Fired and forgotten: nothing wakes the driver until a task reports.
        let idle = tokio::time::timeout(Duration::from_millis(80), driver.next()).await;
        assert!(idle.is_err(), "a fired timer fires again");
        driver.spawn(async { 7 });
        driver.report(8);
        let mut got = Vec::new();
        for _ in 0..2 {
            if let Wake::Report(report) = driver.next().await {
                got.push(report);
            }
        }
        got.sort_unstable();
        assert_eq!(got, [7, 8]);
        let reporter = driver.reporter();
        std::thread::spawn(move || reporter.send(9))
            .join()
            .unwrap()
            .unwrap();
        assert!(matches!(driver.next().await, Wake::Report(9)));
    }
}
