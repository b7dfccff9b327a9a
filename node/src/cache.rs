//! The hot-blob cache: whole blobs this node recently read or wrote, and the decoded segments readers ask for
//! most (a popular range of a large blob: a video's start, a quilt's head), kept in memory so the gateway serves
//! them without asking k holders again.
//!
//! A blob ID commits to every byte, so a cached blob can never go stale: it was verified when it was read (or
//! encoded here when it was written), and nothing is checked again. The cache owns only memory, bounded by its
//! byte budget; it evicts the least recently used entries first and never holds one larger than an eighth of
//! the budget, so one large read cannot flush everything that is hot. A segment comes in on its second request
//! only, so one download of a large blob does not either.
//!
//! Beside it, [`CheckedSegments`] remembers which segments this node has already found consistently encoded
//! (the re-encode check of a read), so a blob that is read again, or range by range, is not checked again.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use floe_protocol::{BlobId, BlobMetadata};

/// What an entry costs besides the blob's bytes (its metadata, the maps' entries), a generous estimate.
const ENTRY_OVERHEAD: u64 = 1024;

/// What an entry is: a whole blob, or one decoded segment of a blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    Blob(BlobId),
    Segment(BlobId, u64),
}

enum Value {
    Blob(BlobBytes),
    Segment(Bytes),
}

impl Value {
    fn len(&self) -> u64 {
        let len = match self {
            Value::Blob(blob) => blob.bytes.len(),
            Value::Segment(bytes) => bytes.len(),
        };
        u64::try_from(len).unwrap_or(u64::MAX)
    }
}

struct Entry {
    value: Value,
    last_used: u64,
}

/// A blob's bytes (whole, or a range) with its metadata and media type (empty: none).
#[derive(Debug, Clone)]
pub struct BlobBytes {
    /// The blob's metadata.
    pub metadata: BlobMetadata,
    /// The media type its writer gave it (`floe_protocol::content_type`), empty for none.
    pub content_type: String,
    /// The bytes.
    pub bytes: Bytes,
    /// The epoch it is stored until (`floe_protocol::lifetime`): past it, the cache does not serve it.
    pub end_epoch: u64,
}

/// Segment requests counted before one is let in: a segment is cached on its second request, so a single scan
/// through a large blob (a download) does not flush what many readers ask for.
const ADMIT_SEGMENT_AFTER: u32 = 2;
/// Segments whose requests are counted; beyond it the counts start over.
const COUNTED_SEGMENTS: usize = 65_536;

#[derive(Default)]
struct Inner {
    entries: HashMap<Key, Entry>,
    /// Use tick → entry, oldest first.
    order: BTreeMap<u64, Key>,
    bytes: u64,
    tick: u64,
    /// Requests of segments not cached, for admission.
    requested: HashMap<(BlobId, u64), u32>,
}

impl Inner {
    fn touch(&mut self, key: Key) -> Option<&Entry> {
        self.tick += 1;
        let tick = self.tick;
        let entry = self.entries.get_mut(&key)?;
        let previous = std::mem::replace(&mut entry.last_used, tick);
        self.order.remove(&previous);
        self.order.insert(tick, key);
        self.entries.get(&key)
    }

    fn remove(&mut self, key: Key) {
        if let Some(gone) = self.entries.remove(&key) {
            self.order.remove(&gone.last_used);
            self.bytes = self
                .bytes
                .saturating_sub(gone.value.len().saturating_add(ENTRY_OVERHEAD));
        }
    }

    /// Keeps `value` under `key`, evicting the least recently used entries to make room within `budget`.
    fn insert(&mut self, key: Key, value: Value, budget: u64) {
        let len = value.len().saturating_add(ENTRY_OVERHEAD);
        if len > budget / 8 || self.entries.contains_key(&key) {
            return;
        }
        while self.bytes.saturating_add(len) > budget {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            if let Some(gone) = self.entries.remove(&oldest) {
                self.bytes = self
                    .bytes
                    .saturating_sub(gone.value.len().saturating_add(ENTRY_OVERHEAD));
            }
        }
        self.tick += 1;
        let tick = self.tick;
        self.order.insert(tick, key);
        self.bytes = self.bytes.saturating_add(len);
        self.entries.insert(
            key,
            Entry {
                value,
                last_used: tick,
            },
        );
    }
}

/// The cache. Cheap to share behind an `Arc`; every method takes a short lock.
#[derive(Default)]
pub struct BlobCache {
    budget: u64,
    inner: Mutex<Inner>,
    /// Gets served whole from the cache.
    pub hits: AtomicU64,
    /// Segments a read took from the cache instead of the holders.
    pub segment_hits: AtomicU64,
    /// Segments a read had to fetch from the holders.
    pub segment_misses: AtomicU64,
    /// Bytes answered from the cache (whole blobs, ranges of them, and cached segments).
    pub bytes_served: AtomicU64,
}

impl std::fmt::Debug for BlobCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobCache")
            .field("budget", &self.budget)
            .finish_non_exhaustive()
    }
}

impl BlobCache {
    /// A cache holding at most `budget` bytes of blobs and segments (0 disables it).
    pub fn new(budget: u64) -> Self {
        Self {
            budget,
            ..Self::default()
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The whole blob with its metadata, if cached; counts a hit.
    pub fn get(&self, blob_id: &BlobId) -> Option<BlobBytes> {
        let found = match &self.lock().touch(Key::Blob(*blob_id))?.value {
            Value::Blob(blob) => blob.clone(),
            Value::Segment(_) => return None,
        };
        self.hits.fetch_add(1, Ordering::Relaxed);
        Some(found)
    }

    /// Keeps a whole, verified blob, evicting the least recently used entries to make room.
    pub fn insert(&self, blob: &BlobBytes) {
        let blob_len = u64::try_from(blob.bytes.len()).unwrap_or(u64::MAX);
        if Some(blob_len) != Some(blob.metadata.params().blob_length()) {
            return;
        }
        let key = Key::Blob(blob.metadata.blob_id());
        self.lock()
            .insert(key, Value::Blob(blob.clone()), self.budget);
    }

    /// Segment `segment` of a blob, decoded, if cached; counts the request either way (for admission) and a hit
    /// or a miss.
    pub fn segment(&self, blob_id: &BlobId, segment: u64) -> Option<Bytes> {
        let mut inner = self.lock();
        if let Some(entry) = inner.touch(Key::Segment(*blob_id, segment))
            && let Value::Segment(bytes) = &entry.value
        {
            let bytes = bytes.clone();
            drop(inner);
            self.segment_hits.fetch_add(1, Ordering::Relaxed);
            return Some(bytes);
        }
        if inner.requested.len() >= COUNTED_SEGMENTS {
            inner.requested.clear();
        }
        let count = inner.requested.entry((*blob_id, segment)).or_insert(0);
        *count = count.saturating_add(1);
        drop(inner);
        self.segment_misses.fetch_add(1, Ordering::Relaxed);
        None
    }

    /// Whether segment `segment` of a blob is cached (no request is counted).
    pub fn has_segment(&self, blob_id: &BlobId, segment: u64) -> bool {
        self.lock()
            .entries
            .contains_key(&Key::Segment(*blob_id, segment))
    }

    /// Offers a decoded, verified segment: kept if it has been asked for often enough (see
    /// [`ADMIT_SEGMENT_AFTER`]) and fits.
    pub fn offer_segment(&self, blob_id: &BlobId, segment: u64, bytes: &Bytes) {
        let mut inner = self.lock();
        let asked = inner
            .requested
            .get(&(*blob_id, segment))
            .copied()
            .unwrap_or(0);
        if asked < ADMIT_SEGMENT_AFTER {
            return;
        }
        inner.requested.remove(&(*blob_id, segment));
        inner.insert(
            Key::Segment(*blob_id, segment),
            Value::Segment(bytes.clone()),
            self.budget,
        );
    }

    /// Counts bytes answered from the cache.
    pub fn served(&self, bytes: usize) {
        self.bytes_served
            .fetch_add(u64::try_from(bytes).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// Forgets a blob and its segments (it was deleted): the next get asks the holders, whose records say so.
    pub fn remove(&self, blob_id: &BlobId) {
        let mut inner = self.lock();
        inner.remove(Key::Blob(*blob_id));
        let segments: Vec<Key> = inner
            .entries
            .keys()
            .filter(|k| matches!(k, Key::Segment(id, _) if id == blob_id))
            .copied()
            .collect();
        for key in segments {
            inner.remove(key);
        }
    }

    /// Bytes held.
    pub fn bytes(&self) -> u64 {
        self.lock().bytes
    }
}

/// Segments (blob ID, segment index) whose encoding this node has checked: k slivers decoded, re-encoded, and
/// every sliver's leaf reproduced the segment root. That verdict is a fact about the blob ID, so it never goes
/// stale; reads of a checked segment decode from verified slivers without the re-encode. Bounded: the oldest
/// entries are forgotten first (which costs only a repeated check).
pub struct CheckedSegments {
    capacity: usize,
    inner: Mutex<CheckedInner>,
}

#[derive(Default)]
struct CheckedInner {
    set: std::collections::HashSet<(BlobId, u64)>,
    order: std::collections::VecDeque<(BlobId, u64)>,
}

impl CheckedSegments {
    /// Remembers up to `capacity` segments (about 80 bytes each).
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            inner: Mutex::new(CheckedInner::default()),
        }
    }

    /// Whether `segment` of `blob_id` was found consistent here.
    pub fn contains(&self, blob_id: &BlobId, segment: u64) -> bool {
        self.inner
            .lock()
            .is_ok_and(|inner| inner.set.contains(&(*blob_id, segment)))
    }

    /// Records that `segment` of `blob_id` passed the re-encode check.
    pub fn insert(&self, blob_id: &BlobId, segment: u64) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        if self.capacity == 0 || !inner.set.insert((*blob_id, segment)) {
            return;
        }
        inner.order.push_back((*blob_id, segment));
        while inner.order.len() > self.capacity {
            if let Some(oldest) = inner.order.pop_front() {
                inner.set.remove(&oldest);
            }
        }
    }

    /// Segments remembered.
    pub fn len(&self) -> usize {
        self.inner.lock().map_or(0, |inner| inner.set.len())
    }

    /// Whether none are.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Segment decoders kept between reads and repairs, with their work buffers: a read (or a repair's run) takes one
/// and gives it back, so a first read's consistency check and a rebuild do not pay for a fresh codec and fresh
/// buffers (page faults) every time. Bounded: at most `keep` decoders wait here; a taker that finds none makes
/// its own.
pub struct Decoders {
    idle: Mutex<Vec<floe_protocol::SegmentDecoder>>,
    keep: usize,
    threads: usize,
}

impl Decoders {
    /// A pool keeping up to `keep` idle decoders that hash on `threads` threads.
    pub fn new(keep: usize, threads: usize) -> Self {
        Self {
            idle: Mutex::new(Vec::new()),
            keep,
            threads,
        }
    }

    /// A decoder for blobs with `params`.
    pub fn take(&self, params: floe_protocol::BlobParams) -> floe_protocol::SegmentDecoder {
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        match idle {
            Some(mut decoder) => {
                decoder.restart(params);
                decoder
            }
            None => floe_protocol::SegmentDecoder::new(params).with_hash_threads(self.threads),
        }
    }

    /// Gives a decoder back for a later read.
    pub fn give(&self, decoder: floe_protocol::SegmentDecoder) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < self.keep {
            idle.push(decoder);
        }
    }

    /// Decoders waiting.
    pub fn idle(&self) -> usize {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::cast_possible_truncation)]
mod tests {
    use super::*;
    use floe_protocol::BlobParams;
    use floe_protocol::encoder::EncodedBlob;
    use floe_protocol::encoding::{DEFAULT_SEGMENT_SIZE, EncodingType};

    fn blob(seed: u8, len: usize) -> BlobBytes {
        let data: Vec<u8> = (0..len).map(|i| (i % 256) as u8 ^ seed).collect();
        let params = BlobParams::new(
            EncodingType::RsSimd,
            4,
            DEFAULT_SEGMENT_SIZE,
            u64::try_from(len).unwrap(),
        )
        .unwrap();
        let encoded = EncodedBlob::encode(params, &data).unwrap();
        BlobBytes {
            metadata: encoded.metadata,
            content_type: "text/plain".into(),
            bytes: Bytes::from(data),
            end_epoch: floe_protocol::lifetime::FOREVER,
        }
    }

    #[test]
    fn segments_come_in_on_their_second_request_and_go_with_their_blob() {
        let cache = BlobCache::new(8 * (1000 + ENTRY_OVERHEAD));
        let id = blob(1, 10).metadata.blob_id();
        let bytes = Bytes::from(vec![7u8; 1000]);
        // Asked once: not kept.
        assert!(cache.segment(&id, 3).is_none());
        cache.offer_segment(&id, 3, &bytes);
        assert!(!cache.has_segment(&id, 3));
        // Asked again: kept, and the next request is a hit.
        assert!(cache.segment(&id, 3).is_none());
        cache.offer_segment(&id, 3, &bytes);
        assert!(cache.has_segment(&id, 3));
        assert_eq!(cache.segment(&id, 3), Some(bytes.clone()));
        assert_eq!(cache.segment_hits.load(Ordering::Relaxed), 1);
        assert_eq!(cache.segment_misses.load(Ordering::Relaxed), 2);
        // Segments share the budget and the order with whole blobs.
        for seed in 20..28 {
            cache.insert(&blob(seed, 1000));
        }
        assert!(!cache.has_segment(&id, 3), "the oldest entry goes first");
        assert!(cache.bytes() <= 8 * (1000 + ENTRY_OVERHEAD));
        // A deleted blob's segments go with it.
        for _ in 0..2 {
            cache.segment(&id, 4);
        }
        cache.offer_segment(&id, 4, &bytes);
        assert!(cache.has_segment(&id, 4));
        cache.remove(&id);
        assert!(!cache.has_segment(&id, 4));
    }

    #[test]
    fn least_recently_used_blobs_go_first_and_big_ones_never_come_in() {
        let cache = BlobCache::new(8 * (1000 + ENTRY_OVERHEAD));
        let (a, b, c) = (blob(1, 1000), blob(3, 1000), blob(5, 1000));
        cache.insert(&a);
        cache.insert(&b);
        assert_eq!(cache.get(&a.metadata.blob_id()).unwrap().bytes, a.bytes);
        // Full at 8 entries: the seventh newcomer evicts b, used before a.
        for seed in 7..14 {
            let x = blob(seed, 1000);
            cache.insert(&x);
        }
        assert!(cache.get(&b.metadata.blob_id()).is_none());
        assert!(cache.bytes() <= 8 * (1000 + ENTRY_OVERHEAD));
        cache.insert(&c);
        let hit = cache.get(&c.metadata.blob_id()).unwrap();
        assert_eq!(
            (hit.bytes, hit.content_type.as_str()),
            (c.bytes, "text/plain")
        );
        let big = blob(9, 1001);
        cache.insert(&big);
        assert!(cache.get(&big.metadata.blob_id()).is_none());
        // A blob whose bytes do not match its length is refused.
        cache.insert(&BlobBytes {
            bytes: Bytes::from_static(b"short"),
            ..a.clone()
        });
        assert!(cache.hits.load(Ordering::Relaxed) >= 2);
        assert!(BlobCache::new(0).get(&a.metadata.blob_id()).is_none());
    }

    #[test]
    fn checked_segments_are_remembered_up_to_their_capacity_oldest_forgotten_first() {
        let checked = CheckedSegments::new(3);
        let (a, b) = (
            blob(1, 10).metadata.blob_id(),
            blob(2, 10).metadata.blob_id(),
        );
        assert!(checked.is_empty() && !checked.contains(&a, 0));
        checked.insert(&a, 0);
        checked.insert(&a, 1);
        checked.insert(&a, 0); // already there: not a second entry
        checked.insert(&b, 0);
        assert_eq!(checked.len(), 3);
        assert!(checked.contains(&a, 0) && checked.contains(&a, 1) && checked.contains(&b, 0));
        assert!(!checked.contains(&b, 1));
        checked.insert(&b, 1);
        assert_eq!(checked.len(), 3);
        assert!(!checked.contains(&a, 0), "the oldest goes first");
        assert!(checked.contains(&a, 1) && checked.contains(&b, 1));
        let none = CheckedSegments::new(0);
        none.insert(&a, 0);
        assert!(none.is_empty());
    }

    #[test]
    fn decoders_are_reused_up_to_the_bound() {
        use floe_protocol::{BlobParams, EncodingType};
        let pool = Decoders::new(2, 1);
        let small = BlobParams::new(EncodingType::RsSimd, 4, 1024, 3000).unwrap();
        let large = BlobParams::new(EncodingType::RsSimd, 10, 4096, 90_000).unwrap();
        let (a, b, c) = (pool.take(small), pool.take(small), pool.take(large));
        assert_eq!(pool.idle(), 0);
        pool.give(a);
        pool.give(b);
        pool.give(c);
        assert_eq!(pool.idle(), 2, "one over the bound is dropped");
        // A reused decoder decodes blobs of other parameters.
        let data = vec![5u8; 90_000];
        let encoded = floe_protocol::EncodedBlob::encode(large, &data).unwrap();
        let blob_id = encoded.metadata.blob_id();
        let mut decoder = pool.take(large);
        let mut out = Vec::new();
        for segment in 0..large.segment_count() {
            let slivers: Vec<_> = (0..large.source_shards())
                .map(|i| {
                    floe_protocol::VerifiedSliver::new(
                        encoded.sliver(segment, i).unwrap(),
                        &blob_id,
                    )
                    .unwrap()
                })
                .collect();
            out.extend(
                decoder
                    .decode(segment, &slivers, floe_protocol::Consistency::Full)
                    .unwrap(),
            );
        }
        assert_eq!(out, data);
    }
}
