//! KIP-227 incremental fetch sessions: the broker remembers a consumer's partition set and
//! answers later fetches with only the partitions that changed.

use std::collections::HashMap;

use uuid::Uuid;

/// Kafka's session epoch values.
pub const INITIAL_EPOCH: i32 = 0;
pub const FINAL_EPOCH: i32 = -1;

/// A partition in a session, with what the client was last told about it.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionPartition {
    pub topic: String,
    pub topic_id: Uuid,
    pub partition: i32,
    pub fetch_offset: i64,
    pub max_bytes: i32,
    pub current_leader_epoch: i32,
    /// Last high watermark / log start offset sent, to detect changes; None: never sent.
    pub sent_high_watermark: Option<i64>,
    pub sent_log_start_offset: Option<i64>,
}

#[derive(Debug)]
pub struct Session {
    pub epoch: i32,
    pub partitions: Vec<SessionPartition>,
    pub last_used_ms: i64,
}

/// Bounded cache of sessions (`max.incremental.fetch.session.cache.slots`); when full, the
/// least recently used session is evicted.
#[derive(Debug)]
pub struct FetchSessionCache {
    sessions: HashMap<i32, Session>,
    slots: usize,
}

impl FetchSessionCache {
    pub fn new(slots: usize) -> Self {
        FetchSessionCache {
            sessions: HashMap::new(),
            slots,
        }
    }

    /// Stores a new session and returns its id (0 when sessions are disabled).
    pub fn create(&mut self, partitions: Vec<SessionPartition>, now_ms: i64) -> i32 {
        if self.slots == 0 {
            return 0;
        }
        if self.sessions.len() >= self.slots {
            if let Some((&oldest, _)) = self.sessions.iter().min_by_key(|(_, s)| s.last_used_ms) {
                self.sessions.remove(&oldest);
            }
        }
        let mut id: i32 = rand::random::<i32>() & 0x7fff_ffff;
        while id == 0 || self.sessions.contains_key(&id) {
            id = rand::random::<i32>() & 0x7fff_ffff;
        }
        self.sessions.insert(
            id,
            Session {
                epoch: 1,
                partitions,
                last_used_ms: now_ms,
            },
        );
        id
    }

    pub fn get_mut(&mut self, id: i32) -> Option<&mut Session> {
        self.sessions.get_mut(&id)
    }

    pub fn remove(&mut self, id: i32) -> Option<Session> {
        self.sessions.remove(&id)
    }
}
