//! Server-side assignors of KIP-848 consumer groups (`group.consumer.assignors`): `uniform`
//! (Kafka's default, sticky) and `range`. Pure functions of the members' subscriptions, the
//! topics' partition counts and the previous target assignment.

use std::collections::{BTreeMap, BTreeSet};

/// Partitions by topic name.
pub type Assignment = BTreeMap<String, BTreeSet<i32>>;

/// The assignors this broker has, by Kafka's names.
pub const ASSIGNORS: &[&str] = &["uniform", "range"];

/// Per member, the partitions assigned by `assignor` (`uniform` for any other name).
/// `subscriptions`: each member's topics; `topics`: partition counts of the topics that exist;
/// `previous`: the current target, which `uniform` keeps as far as balance allows.
pub fn assign(
    assignor: &str,
    subscriptions: &BTreeMap<String, BTreeSet<String>>,
    topics: &BTreeMap<String, i32>,
    previous: &BTreeMap<String, Assignment>,
) -> BTreeMap<String, Assignment> {
    match assignor {
        "range" => range(subscriptions, topics),
        _ => uniform(subscriptions, topics, previous),
    }
}

/// Per topic, the members subscribed to it (by member id) get contiguous ranges; the first
/// `partitions % members` get one more.
fn range(
    subscriptions: &BTreeMap<String, BTreeSet<String>>,
    topics: &BTreeMap<String, i32>,
) -> BTreeMap<String, Assignment> {
    let mut out: BTreeMap<String, Assignment> = subscriptions
        .keys()
        .map(|m| (m.clone(), Assignment::new()))
        .collect();
    for (topic, count) in topics {
        let members: Vec<&String> = subscriptions
            .iter()
            .filter(|(_, s)| s.contains(topic))
            .map(|(m, _)| m)
            .collect();
        if members.is_empty() {
            continue;
        }
        let n = members.len() as i32;
        let (per, extra) = (count / n, count % n);
        let mut next = 0;
        for (i, m) in members.into_iter().enumerate() {
            let take = per + i32::from((i as i32) < extra);
            if take > 0 {
                if let Some(a) = out.get_mut(m) {
                    a.entry(topic.clone())
                        .or_default()
                        .extend(next..next + take);
                }
            }
            next += take;
        }
    }
    out
}

/// Balanced and sticky: every member keeps what it had (still subscribed, still existing) up
/// to its quota; the rest go one by one to the eligible member with the fewest partitions.
fn uniform(
    subscriptions: &BTreeMap<String, BTreeSet<String>>,
    topics: &BTreeMap<String, i32>,
    previous: &BTreeMap<String, Assignment>,
) -> BTreeMap<String, Assignment> {
    let mut out: BTreeMap<String, Assignment> = subscriptions
        .keys()
        .map(|m| (m.clone(), Assignment::new()))
        .collect();
    let all: Vec<(String, i32)> = topics
        .iter()
        .filter(|(t, _)| subscriptions.values().any(|s| s.contains(*t)))
        .flat_map(|(t, n)| (0..*n).map(move |p| (t.clone(), p)))
        .collect();
    let members = subscriptions.values().filter(|s| !s.is_empty()).count();
    if members == 0 || all.is_empty() {
        return out;
    }
    let floor = all.len() / members;
    let mut extra_left = all.len() % members;
    let mut taken: BTreeSet<(String, i32)> = BTreeSet::new();
    let mut counts: BTreeMap<&String, usize> = subscriptions.keys().map(|m| (m, 0)).collect();
    // Sticky pass: members keep up to `floor`, then (while any remain) one extra each.
    for (m, subs) in subscriptions {
        let Some(prev) = previous.get(m) else {
            continue;
        };
        let keep: Vec<(String, i32)> = prev
            .iter()
            .filter(|(t, _)| subs.contains(*t))
            .flat_map(|(t, ps)| ps.iter().map(move |p| (t.clone(), *p)))
            .filter(|(t, p)| topics.get(t).is_some_and(|n| p < n))
            .collect();
        let mut quota = floor;
        if keep.len() > floor && extra_left > 0 {
            quota += 1;
            extra_left -= 1;
        }
        for tp in keep.into_iter().take(quota) {
            if taken.insert(tp.clone()) {
                out.entry(m.clone())
                    .or_default()
                    .entry(tp.0)
                    .or_default()
                    .insert(tp.1);
                *counts.entry(m).or_default() += 1;
            }
        }
    }
    for (t, p) in all {
        if taken.contains(&(t.clone(), p)) {
            continue;
        }
        let best = subscriptions
            .iter()
            .filter(|(_, s)| s.contains(&t))
            .map(|(m, _)| m)
            .min_by_key(|m| (counts.get(*m).copied().unwrap_or(0), (*m).clone()));
        if let Some(m) = best {
            out.entry(m.clone())
                .or_default()
                .entry(t)
                .or_default()
                .insert(p);
            *counts.entry(m).or_default() += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subs(members: &[(&str, &[&str])]) -> BTreeMap<String, BTreeSet<String>> {
        members
            .iter()
            .map(|(m, ts)| (m.to_string(), ts.iter().map(|t| t.to_string()).collect()))
            .collect()
    }

    fn count(a: &Assignment) -> usize {
        a.values().map(|p| p.len()).sum()
    }

    #[test]
    fn range_splits_each_topic_in_ranges() {
        let s = subs(&[("a", &["t"]), ("b", &["t"])]);
        let topics = BTreeMap::from([("t".to_string(), 5)]);
        let out = assign("range", &s, &topics, &BTreeMap::new());
        assert_eq!(out["a"]["t"], BTreeSet::from([0, 1, 2]));
        assert_eq!(out["b"]["t"], BTreeSet::from([3, 4]));
    }

    #[test]
    fn uniform_is_balanced_and_sticky() {
        let topics = BTreeMap::from([("t".to_string(), 6)]);
        let two = subs(&[("a", &["t"]), ("b", &["t"])]);
        let first = assign("uniform", &two, &topics, &BTreeMap::new());
        assert_eq!((count(&first["a"]), count(&first["b"])), (3, 3));
        let three = subs(&[("a", &["t"]), ("b", &["t"]), ("c", &["t"])]);
        let second = assign("uniform", &three, &topics, &first);
        for m in ["a", "b", "c"] {
            assert_eq!(count(&second[m]), 2, "{m}");
        }
        // a and b only lost partitions: nothing moved between them.
        for m in ["a", "b"] {
            assert!(second[m]["t"].is_subset(&first[m]["t"]), "{m}");
        }
    }
}
