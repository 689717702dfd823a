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

/// Why a fetch's session could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionError {
    /// FETCH_SESSION_ID_NOT_FOUND: evicted, or never created.
    IdNotFound,
    /// INVALID_FETCH_SESSION_EPOCH: not the epoch the session expects next.
    InvalidEpoch,
}

/// Partitions an incremental fetch asks the session to drop: by name (before v13) or by id.
#[derive(Debug, Clone)]
pub struct Forgotten {
    pub topic: Option<String>,
    pub topic_id: Uuid,
    pub partitions: Vec<i32>,
}

/// The session a fetch runs in, and the partitions it answers for.
#[derive(Debug)]
pub struct Opened {
    /// 0: no session.
    pub id: i32,
    /// An incremental fetch answers only partitions with news.
    pub incremental: bool,
    pub partitions: Vec<SessionPartition>,
}

/// What a fetch sent for one partition, to tell the next incremental fetch what changed.
#[derive(Debug, Clone, Copy)]
pub struct Sent {
    pub has_records: bool,
    pub error: bool,
    pub high_watermark: i64,
    pub log_start_offset: i64,
}

fn same_partition(a: &SessionPartition, b: &SessionPartition) -> bool {
    a.topic_id == b.topic_id && a.topic == b.topic && a.partition == b.partition
}

impl FetchSessionCache {
    /// KIP-227: the session a fetch with `session_id` and `epoch` runs in. A full fetch
    /// (epoch 0) of a client that has sessions (`sessions_allowed`: Fetch v7+) opens one; an
    /// incremental fetch updates its session's partitions with `wanted` and drops `forgotten`.
    pub fn open(
        &mut self,
        (session_id, epoch): (i32, i32),
        sessions_allowed: bool,
        wanted: Vec<SessionPartition>,
        forgotten: &[Forgotten],
        now_ms: i64,
    ) -> Result<Opened, SessionError> {
        let full = |id| Opened {
            id,
            incremental: false,
            partitions: Vec::new(),
        };
        let opened = match (session_id, epoch) {
            (0, INITIAL_EPOCH) if sessions_allowed => full(self.create(wanted.clone(), now_ms)),
            (0, _) => full(0),
            (id, FINAL_EPOCH) => {
                self.remove(id);
                full(0)
            }
            (id, INITIAL_EPOCH) => {
                // A new full session replacing an old one.
                self.remove(id);
                full(self.create(wanted.clone(), now_ms))
            }
            (id, epoch) => return self.incremental(id, epoch, wanted, forgotten, now_ms),
        };
        Ok(Opened {
            partitions: wanted,
            ..opened
        })
    }

    fn incremental(
        &mut self,
        id: i32,
        epoch: i32,
        wanted: Vec<SessionPartition>,
        forgotten: &[Forgotten],
        now_ms: i64,
    ) -> Result<Opened, SessionError> {
        let session = self.get_mut(id).ok_or(SessionError::IdNotFound)?;
        if session.epoch != epoch {
            return Err(SessionError::InvalidEpoch);
        }
        session.epoch = session.epoch.wrapping_add(1).max(1);
        session.last_used_ms = now_ms;
        for w in wanted {
            match session
                .partitions
                .iter_mut()
                .find(|p| same_partition(p, &w))
            {
                Some(p) => {
                    p.fetch_offset = w.fetch_offset;
                    p.max_bytes = w.max_bytes;
                    p.current_leader_epoch = w.current_leader_epoch;
                }
                None => session.partitions.push(w),
            }
        }
        for f in forgotten {
            session.partitions.retain(|p| {
                let same_topic = match &f.topic {
                    Some(n) => &p.topic == n,
                    None => p.topic_id == f.topic_id,
                };
                !(same_topic && f.partitions.contains(&p.partition))
            });
        }
        Ok(Opened {
            id,
            incremental: true,
            partitions: session.partitions.clone(),
        })
    }

    /// Remembers what a fetch of session `id` sent for `partitions` (in the order it answered
    /// them); returns which of them the response includes (an incremental fetch: only those
    /// with records, an error, or a changed high watermark or log start offset).
    pub fn record_sent(
        &mut self,
        id: i32,
        incremental: bool,
        partitions: &[SessionPartition],
        sent: &[Sent],
    ) -> Vec<bool> {
        let mut include = vec![true; partitions.len()];
        let Some(session) = (id != 0).then(|| self.get_mut(id)).flatten() else {
            return include;
        };
        for (i, (w, s)) in partitions.iter().zip(sent).enumerate() {
            if let Some(p) = session.partitions.iter_mut().find(|p| same_partition(p, w)) {
                let changed = s.has_records
                    || s.error
                    || p.sent_high_watermark != Some(s.high_watermark)
                    || p.sent_log_start_offset != Some(s.log_start_offset);
                if incremental {
                    include[i] = changed;
                }
                p.sent_high_watermark = Some(s.high_watermark);
                p.sent_log_start_offset = Some(s.log_start_offset);
            }
        }
        include
    }
}
