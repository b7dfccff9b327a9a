//! The node's recent warnings and errors, kept in memory for the status page (`/v1/node/status`,
//! `recentErrors`): an operator sees what went wrong lately without reading logs.
//!
//! A `tracing` layer copies each WARN or ERROR event (its message and fields) into a small ring, newest last;
//! the oldest fall out. It owns only that ring and must not block: events come from every task.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::{Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

/// Events kept.
const KEPT: usize = 32;
/// Longest message kept, in characters.
const MAX_MESSAGE: usize = 512;

/// One warning or error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecentError {
    /// When, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// `WARN` or `ERROR`.
    pub level: &'static str,
    /// The message and its fields (`key=value`).
    pub message: String,
}

fn ring() -> &'static Mutex<VecDeque<RecentError>> {
    static RING: OnceLock<Mutex<VecDeque<RecentError>>> = OnceLock::new();
    RING.get_or_init(|| Mutex::new(VecDeque::with_capacity(KEPT)))
}

/// The events kept, oldest first.
pub fn snapshot() -> Vec<RecentError> {
    ring()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .cloned()
        .collect()
}

/// The layer that fills the ring; add it to the process's subscriber.
#[derive(Debug, Clone, Copy, Default)]
pub struct RecentErrorsLayer;

/// An event's message and its other fields, apart.
#[derive(Default)]
struct Message {
    message: String,
    fields: String,
}

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.fields, " {}={value}", field.name());
        }
    }
}

impl<S: Subscriber> Layer<S> for RecentErrorsLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let level = *event.metadata().level();
        if level > Level::WARN {
            return;
        }
        let mut message = Message::default();
        event.record(&mut message);
        let text: String = format!("{}{}", message.message, message.fields)
            .chars()
            .take(MAX_MESSAGE)
            .collect();
        let at_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let entry = RecentError {
            at_ms,
            level: if level == Level::ERROR {
                "ERROR"
            } else {
                "WARN"
            },
            message: format!("{}: {text}", event.metadata().target()),
        };
        let mut ring = ring().lock().unwrap_or_else(|p| p.into_inner());
        if ring.len() == KEPT {
            ring.pop_front();
        }
        ring.push_back(entry);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt as _;

    #[test]
    fn warnings_and_errors_are_kept_newest_last_and_bounded() {
        let subscriber = tracing_subscriber::registry().with(RecentErrorsLayer);
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!("not kept");
            tracing::warn!(peer = "p1", "a warning");
            for i in 0..KEPT {
                tracing::error!(i, "error");
            }
            tracing::error!(blob = "b", "the last one");
        });
        let kept = snapshot();
        assert_eq!(kept.len(), KEPT);
        let last = kept.last().unwrap();
        assert_eq!(last.level, "ERROR");
        assert!(last.message.contains("the last one"), "{}", last.message);
        assert!(last.message.contains("blob=b"), "{}", last.message);
        assert!(kept.iter().all(|e| !e.message.contains("not kept")));
    }
}
