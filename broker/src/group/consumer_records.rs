//! The stored form of a consumer-protocol group (KIP-848) in `__consumer_offsets`: key version
//! 3 (`version int16, group string`, the shape of Kafka's `ConsumerGroupMetadataKey`) with
//! Sluice's own value, version [`CONSUMER_GROUP_VALUE_VERSION`], holding the whole group:
//!
//! `group_epoch int32, assignment_epoch int32, topics [name string, id 16 bytes,
//! partitions int32], members [member_id string, instance_id nullable string, rack_id
//! nullable string, client_id string, client_host string, rebalance_timeout int32,
//! server_assignor nullable string, subscribed_topics [string], subscribed_regex nullable
//! string, member_epoch int32,
//! previous_member_epoch int32, assigned A, pending_revocation A, target A]` where
//! `A = [topic string, partitions [int32]]`.
//!
//! Kafka writes one record per member, per target and per current assignment (key versions
//! 3-8); Sluice writes the group whole whenever its stored part changes, which is simpler and
//! fine for the group sizes a single broker serves.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use uuid::Uuid;

use super::assignor::Assignment;
use super::consumer::{ConsumerGroup, ConsumerMember};
use super::records::{Reader, RecordError};

/// Key version 3: a consumer-protocol group.
pub const CONSUMER_GROUP_KEY_VERSION: i16 = 3;
/// Far from Kafka's value versions, so that no reader mistakes it for Kafka's layout.
pub const CONSUMER_GROUP_VALUE_VERSION: i16 = 100;

/// Array elements a stored group may list; more is corruption.
const STORED_COUNT_MAX: i32 = 1 << 20;

fn put_str(b: &mut BytesMut, s: &str) {
    let len = s.len().min(i16::MAX as usize);
    b.put_i16(len as i16);
    b.put_slice(&s.as_bytes()[..len]);
}

fn put_opt(b: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => put_str(b, s),
        None => b.put_i16(-1),
    }
}

fn put_assignment(b: &mut BytesMut, a: &Assignment) {
    b.put_i32(a.len() as i32);
    for (t, ps) in a {
        put_str(b, t);
        b.put_i32(ps.len() as i32);
        for p in ps {
            b.put_i32(*p);
        }
    }
}

pub fn consumer_group_key(group: &str) -> Bytes {
    let mut b = BytesMut::with_capacity(4 + group.len());
    b.put_i16(CONSUMER_GROUP_KEY_VERSION);
    put_str(&mut b, group);
    b.freeze()
}

pub fn consumer_group_value(g: &ConsumerGroup) -> Bytes {
    let mut b = BytesMut::with_capacity(128);
    b.put_i16(CONSUMER_GROUP_VALUE_VERSION);
    b.put_i32(g.group_epoch);
    b.put_i32(g.assignment_epoch);
    b.put_i32(g.topics.len() as i32);
    for (name, (id, n)) in &g.topics {
        put_str(&mut b, name);
        b.put_slice(id.as_bytes());
        b.put_i32(*n);
    }
    b.put_i32(g.members.len() as i32);
    for m in g.members.values() {
        put_str(&mut b, &m.member_id);
        put_opt(&mut b, m.instance_id.as_deref());
        put_opt(&mut b, m.rack_id.as_deref());
        put_str(&mut b, &m.client_id);
        put_str(&mut b, &m.client_host);
        b.put_i32(m.rebalance_timeout_ms);
        put_opt(&mut b, m.server_assignor.as_deref());
        b.put_i32(m.subscribed_topics.len() as i32);
        for t in &m.subscribed_topics {
            put_str(&mut b, t);
        }
        put_opt(&mut b, m.subscribed_regex.as_deref());
        b.put_i32(m.member_epoch);
        b.put_i32(m.previous_member_epoch);
        put_assignment(&mut b, &m.assigned);
        put_assignment(&mut b, &m.pending_revocation);
        put_assignment(&mut b, &m.target);
    }
    b.freeze()
}

/// The consumer-group reads on top of the shared record [`Reader`].
trait ConsumerReads {
    fn count(&mut self) -> Result<i32, RecordError>;
    fn uuid(&mut self) -> Result<Uuid, RecordError>;
    fn assignment(&mut self) -> Result<Assignment, RecordError>;
}

impl ConsumerReads for Reader<'_> {
    fn count(&mut self) -> Result<i32, RecordError> {
        let n = self.i32()?;
        if !(0..=STORED_COUNT_MAX).contains(&n) {
            return Err(RecordError::Truncated);
        }
        Ok(n)
    }
    fn uuid(&mut self) -> Result<Uuid, RecordError> {
        self.need(16)?;
        let mut id = [0u8; 16];
        self.0.copy_to_slice(&mut id);
        Ok(Uuid::from_bytes(id))
    }
    fn assignment(&mut self) -> Result<Assignment, RecordError> {
        let mut a = Assignment::new();
        for _ in 0..self.count()? {
            let t = self.str()?;
            let ps = a.entry(t).or_default();
            for _ in 0..self.count()? {
                ps.insert(self.i32()?);
            }
        }
        Ok(a)
    }
}

pub fn decode_consumer_group_value(v: &[u8]) -> Result<ConsumerGroup, RecordError> {
    let mut r = Reader(v);
    let version = r.i16()?;
    if version != CONSUMER_GROUP_VALUE_VERSION {
        return Err(RecordError::UnknownVersion {
            what: "consumer group value",
            version,
        });
    }
    let mut g = ConsumerGroup {
        group_epoch: r.i32()?,
        assignment_epoch: r.i32()?,
        ..Default::default()
    };
    for _ in 0..r.count()? {
        let name = r.str()?;
        let id = r.uuid()?;
        let n = r.i32()?;
        g.topics.insert(name, (id, n));
    }
    for _ in 0..r.count()? {
        let mut m = ConsumerMember {
            member_id: r.str()?,
            instance_id: r.nullable_str()?,
            rack_id: r.nullable_str()?,
            client_id: r.str()?,
            client_host: r.str()?,
            rebalance_timeout_ms: r.i32()?,
            server_assignor: r.nullable_str()?,
            ..Default::default()
        };
        for _ in 0..r.count()? {
            m.subscribed_topics.insert(r.str()?);
        }
        m.subscribed_regex = r.nullable_str()?;
        m.member_epoch = r.i32()?;
        m.previous_member_epoch = r.i32()?;
        m.assigned = r.assignment()?;
        m.pending_revocation = r.assignment()?;
        m.target = r.assignment()?;
        g.members.insert(m.member_id.clone(), m);
    }
    Ok(g)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn consumer_groups_round_trip() -> Result<(), RecordError> {
        let mut g = ConsumerGroup {
            group_epoch: 4,
            assignment_epoch: 3,
            ..Default::default()
        };
        g.topics.insert("t".into(), (Uuid::from_u128(7), 6));
        g.members.insert(
            "m".into(),
            ConsumerMember {
                member_id: "m".into(),
                instance_id: Some("i".into()),
                client_id: "c".into(),
                rebalance_timeout_ms: 300_000,
                subscribed_topics: BTreeSet::from(["t".to_string()]),
                subscribed_regex: Some("t.*".into()),
                member_epoch: 3,
                previous_member_epoch: 2,
                assigned: Assignment::from([("t".to_string(), BTreeSet::from([0, 1]))]),
                target: Assignment::from([("t".to_string(), BTreeSet::from([0, 1, 2]))]),
                ..Default::default()
            },
        );
        let v = consumer_group_value(&g);
        assert_eq!(decode_consumer_group_value(&v)?, g);
        assert!(decode_consumer_group_value(&v[..v.len() - 1]).is_err());
        Ok(())
    }
}
