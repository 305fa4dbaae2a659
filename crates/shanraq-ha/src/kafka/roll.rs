//! Which Kafka node may restart now, or why none may: the decision of an ISR-safe rolling
//! restart, as Strimzi's KafkaRoller makes it, with no IO and no clock. The caller observes
//! the cluster (brokers registered, every partition's replicas and ISR, the controllers' raft
//! state), remembers the node it restarted last, and executes the step.
//!
//! The rules:
//! - one node at a time: a restarted broker must be registered again and back in the ISR of
//!   every partition it replicates, a restarted controller back in the quorum and caught up,
//!   before anything else restarts;
//! - a broker restarts only when every partition it is in sync for keeps at least
//!   `min.insync.replicas` in-sync replicas without it, and every other broker is registered;
//! - a controller restarts only when the other voters, up and caught up, still form a majority;
//! - the active controller goes last.

use std::collections::BTreeSet;
use std::fmt;

/// A node of the KRaft cluster by its `node.id`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KafkaNode {
    Controller(i32),
    Broker(i32),
}

impl KafkaNode {
    pub fn id(self) -> i32 {
        match self {
            KafkaNode::Controller(id) | KafkaNode::Broker(id) => id,
        }
    }
}

impl fmt::Display for KafkaNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KafkaNode::Controller(id) => write!(f, "controller {id}"),
            KafkaNode::Broker(id) => write!(f, "broker {id}"),
        }
    }
}

/// One partition as the metadata shows it, with the topic's effective `min.insync.replicas`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionView {
    pub topic: String,
    pub partition: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub min_isr: i32,
}

/// One controller as its raft metrics show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControllerView {
    pub id: i32,
    /// It answered (its process runs and its metrics were read).
    pub up: bool,
    /// Its metadata log is within the caller's bound of the leader's high watermark.
    pub caught_up: bool,
}

/// What the caller saw, one instant.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RollObservation {
    /// Every broker the cluster should have.
    pub brokers: Vec<i32>,
    /// The brokers in the cluster's metadata.
    pub registered: BTreeSet<i32>,
    pub partitions: Vec<PartitionView>,
    pub controllers: Vec<ControllerView>,
    /// The quorum's leader, when known.
    pub active_controller: Option<i32>,
}

/// What to do now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RollStep {
    /// Restart this node (delete its pod; stop and start its process).
    Restart(KafkaNode),
    /// The last restarted node is not back yet.
    WaitFor { node: KafkaNode, reason: String },
    /// A node needs a restart but none may go now; retry later.
    Blocked { reason: String },
    /// Nothing left to restart.
    Done,
}

impl RollStep {
    /// The reason a roll cannot proceed now, for `KafkaReady`'s message.
    pub fn reason(&self) -> Option<&str> {
        match self {
            RollStep::WaitFor { reason, .. } | RollStep::Blocked { reason } => Some(reason),
            _ => None,
        }
    }
}

/// A partition named as `topic-partition`.
fn name(partition: &PartitionView) -> String {
    format!("{}-{}", partition.topic, partition.partition)
}

/// The first reason `broker` is not back yet: not registered, or missing from the ISR of a
/// partition it replicates.
pub fn broker_not_back(seen: &RollObservation, broker: i32) -> Option<String> {
    if !seen.registered.contains(&broker) {
        return Some(format!("broker {broker} is not registered yet"));
    }
    let missing: Vec<String> = seen
        .partitions
        .iter()
        .filter(|p| p.replicas.contains(&broker) && !p.isr.contains(&broker))
        .map(name)
        .collect();
    if missing.is_empty() {
        None
    } else {
        Some(format!(
            "broker {broker} is not back in the ISR of {} partition(s) ({})",
            missing.len(),
            first_few(&missing)
        ))
    }
}

fn controller_not_back(seen: &RollObservation, id: i32) -> Option<String> {
    match seen.controllers.iter().find(|c| c.id == id) {
        Some(c) if c.up && c.caught_up => None,
        Some(c) if c.up => Some(format!("controller {id} has not caught up with the quorum")),
        _ => Some(format!("controller {id} is not up yet")),
    }
}

/// Why `broker` may not restart now, or `None` when it may.
pub fn broker_blocker(seen: &RollObservation, broker: i32) -> Option<String> {
    let unregistered: Vec<i32> = seen
        .brokers
        .iter()
        .copied()
        .filter(|b| *b != broker && !seen.registered.contains(b))
        .collect();
    if !unregistered.is_empty() {
        return Some(format!(
            "broker {broker} waits: broker(s) {unregistered:?} are not registered"
        ));
    }
    let short: Vec<String> = seen
        .partitions
        .iter()
        .filter(|p| p.replicas.contains(&broker))
        .filter(|p| {
            let without = p.isr.iter().filter(|r| **r != broker).count();
            i32::try_from(without).unwrap_or(i32::MAX) < p.min_isr
        })
        .map(|p| {
            format!(
                "{} (ISR {:?}, min.insync.replicas {})",
                name(p),
                p.isr,
                p.min_isr
            )
        })
        .collect();
    if short.is_empty() {
        None
    } else {
        Some(format!(
            "broker {broker} waits: without it {} partition(s) would fall below min.insync.replicas: {}",
            short.len(),
            first_few(&short)
        ))
    }
}

/// Why controller `id` may not restart now, or `None` when it may.
pub fn controller_blocker(seen: &RollObservation, id: i32) -> Option<String> {
    let voters = seen.controllers.len();
    let majority = voters / 2 + 1;
    let healthy_others = seen
        .controllers
        .iter()
        .filter(|c| c.id != id && c.up && c.caught_up)
        .count();
    if healthy_others >= majority {
        None
    } else {
        Some(format!(
            "controller {id} waits: without it {healthy_others} of {voters} voters are up and caught up, a majority needs {majority}"
        ))
    }
}

fn first_few(items: &[String]) -> String {
    const SHOWN: usize = 3;
    let mut text = items
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > SHOWN {
        text.push_str(&format!(" and {} more", items.len() - SHOWN));
    }
    text
}

/// The order of a roll: the controllers that do not lead, the brokers, then the active
/// controller, each group by id.
pub fn roll_order(pending: &BTreeSet<KafkaNode>, active_controller: Option<i32>) -> Vec<KafkaNode> {
    let rank = |node: &KafkaNode| match node {
        KafkaNode::Controller(id) if Some(*id) == active_controller => 2,
        KafkaNode::Controller(_) => 0,
        KafkaNode::Broker(_) => 1,
    };
    let mut order: Vec<KafkaNode> = pending.iter().copied().collect();
    order.sort_by_key(|node| (rank(node), node.id()));
    order
}

/// The next step of a roll of `pending` (the nodes that still need a restart), given the node
/// restarted last (`in_flight`, until it is back).
pub fn next_step(
    seen: &RollObservation,
    pending: &BTreeSet<KafkaNode>,
    in_flight: Option<KafkaNode>,
) -> RollStep {
    if let Some(node) = in_flight {
        let not_back = match node {
            KafkaNode::Broker(id) => broker_not_back(seen, id),
            KafkaNode::Controller(id) => controller_not_back(seen, id),
        };
        if let Some(reason) = not_back {
            return RollStep::WaitFor { node, reason };
        }
    }
    let order = roll_order(pending, seen.active_controller);
    let Some(first) = order.first().copied() else {
        return RollStep::Done;
    };
    // Strictly in order: the active controller must not go before the others just because
    // they are blocked, and a broker that is blocked holds the ones after it (they would
    // usually be blocked by the same partitions).
    let blocker = match first {
        KafkaNode::Broker(id) => broker_blocker(seen, id),
        KafkaNode::Controller(id) => controller_blocker(seen, id),
    };
    match blocker {
        None => RollStep::Restart(first),
        Some(reason) => RollStep::Blocked { reason },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partition(topic: &str, index: i32, replicas: &[i32], isr: &[i32]) -> PartitionView {
        PartitionView {
            topic: topic.to_owned(),
            partition: index,
            replicas: replicas.to_vec(),
            isr: isr.to_vec(),
            min_isr: 2,
        }
    }

    fn controller(id: i32, up: bool, caught_up: bool) -> ControllerView {
        ControllerView { id, up, caught_up }
    }

    /// 3 controllers (1 leads), 3 brokers, two partitions fully in sync.
    fn healthy() -> RollObservation {
        RollObservation {
            brokers: vec![100, 101, 102],
            registered: BTreeSet::from([100, 101, 102]),
            partitions: vec![
                partition("payments", 0, &[100, 101, 102], &[100, 101, 102]),
                partition("payments", 1, &[101, 102, 100], &[101, 102, 100]),
            ],
            controllers: vec![
                controller(0, true, true),
                controller(1, true, true),
                controller(2, true, true),
            ],
            active_controller: Some(1),
        }
    }

    fn everything() -> BTreeSet<KafkaNode> {
        BTreeSet::from([
            KafkaNode::Controller(0),
            KafkaNode::Controller(1),
            KafkaNode::Controller(2),
            KafkaNode::Broker(100),
            KafkaNode::Broker(101),
            KafkaNode::Broker(102),
        ])
    }

    #[test]
    fn order_is_followers_then_brokers_then_the_active_controller() {
        assert_eq!(
            roll_order(&everything(), Some(1)),
            vec![
                KafkaNode::Controller(0),
                KafkaNode::Controller(2),
                KafkaNode::Broker(100),
                KafkaNode::Broker(101),
                KafkaNode::Broker(102),
                KafkaNode::Controller(1),
            ]
        );
    }

    #[test]
    fn table() {
        struct Case {
            name: &'static str,
            seen: fn() -> RollObservation,
            pending: BTreeSet<KafkaNode>,
            in_flight: Option<KafkaNode>,
            want: Result<RollStep, &'static str>,
        }
        let brokers = || {
            BTreeSet::from([
                KafkaNode::Broker(100),
                KafkaNode::Broker(101),
                KafkaNode::Broker(102),
            ])
        };
        let cases = vec![
            Case {
                name: "healthy cluster: the first follower controller goes",
                seen: healthy,
                pending: everything(),
                in_flight: None,
                want: Ok(RollStep::Restart(KafkaNode::Controller(0))),
            },
            Case {
                name: "nothing pending is done",
                seen: healthy,
                pending: BTreeSet::new(),
                in_flight: None,
                want: Ok(RollStep::Done),
            },
            Case {
                name: "a healthy broker may go",
                seen: healthy,
                pending: brokers(),
                in_flight: None,
                want: Ok(RollStep::Restart(KafkaNode::Broker(100))),
            },
            Case {
                name: "a partition already down to min ISR blocks its in-sync brokers",
                seen: || {
                    let mut seen = healthy();
                    seen.partitions[1].isr = vec![100, 101];
                    seen
                },
                pending: brokers(),
                in_flight: None,
                want: Err("payments-1 (ISR [100, 101], min.insync.replicas 2)"),
            },
            Case {
                name: "the out-of-sync broker itself may go: the partition keeps its ISR",
                seen: || {
                    let mut seen = healthy();
                    seen.partitions[1].isr = vec![100, 101];
                    seen
                },
                pending: BTreeSet::from([KafkaNode::Broker(102)]),
                in_flight: None,
                want: Ok(RollStep::Restart(KafkaNode::Broker(102))),
            },
            Case {
                name: "an unregistered broker blocks the others",
                seen: || {
                    let mut seen = healthy();
                    seen.registered.remove(&102);
                    seen
                },
                pending: BTreeSet::from([KafkaNode::Broker(100)]),
                in_flight: None,
                want: Err("broker(s) [102] are not registered"),
            },
            Case {
                name: "a restarted broker not yet back in every ISR holds the roll",
                seen: || {
                    let mut seen = healthy();
                    seen.partitions[0].isr = vec![101, 102];
                    seen
                },
                pending: BTreeSet::from([KafkaNode::Broker(101), KafkaNode::Broker(102)]),
                in_flight: Some(KafkaNode::Broker(100)),
                want: Err("broker 100 is not back in the ISR of 1 partition(s) (payments-0)"),
            },
            Case {
                name: "a restarted broker not registered holds the roll",
                seen: || {
                    let mut seen = healthy();
                    seen.registered.remove(&100);
                    seen
                },
                pending: BTreeSet::from([KafkaNode::Broker(101)]),
                in_flight: Some(KafkaNode::Broker(100)),
                want: Err("broker 100 is not registered yet"),
            },
            Case {
                name: "a restarted broker back in every ISR lets the next go",
                seen: healthy,
                pending: BTreeSet::from([KafkaNode::Broker(101), KafkaNode::Broker(102)]),
                in_flight: Some(KafkaNode::Broker(100)),
                want: Ok(RollStep::Restart(KafkaNode::Broker(101))),
            },
            Case {
                name: "a controller waits while another voter is down (no majority without it)",
                seen: || {
                    let mut seen = healthy();
                    seen.controllers[2].up = false;
                    seen
                },
                pending: BTreeSet::from([KafkaNode::Controller(0)]),
                in_flight: None,
                want: Err("without it 1 of 3 voters are up and caught up, a majority needs 2"),
            },
            Case {
                name: "a lagging voter does not count towards the majority",
                seen: || {
                    let mut seen = healthy();
                    seen.controllers[2].caught_up = false;
                    seen
                },
                pending: BTreeSet::from([KafkaNode::Controller(0)]),
                in_flight: None,
                want: Err("a majority needs 2"),
            },
            Case {
                name: "a restarted controller not caught up holds the roll",
                seen: || {
                    let mut seen = healthy();
                    seen.controllers[0].caught_up = false;
                    seen
                },
                pending: BTreeSet::from([KafkaNode::Controller(2)]),
                in_flight: Some(KafkaNode::Controller(0)),
                want: Err("controller 0 has not caught up with the quorum"),
            },
            Case {
                name: "the active controller goes after every broker",
                seen: healthy,
                pending: BTreeSet::from([KafkaNode::Controller(1), KafkaNode::Broker(102)]),
                in_flight: None,
                want: Ok(RollStep::Restart(KafkaNode::Broker(102))),
            },
            Case {
                name: "the active controller goes last",
                seen: healthy,
                pending: BTreeSet::from([KafkaNode::Controller(1)]),
                in_flight: Some(KafkaNode::Broker(102)),
                want: Ok(RollStep::Restart(KafkaNode::Controller(1))),
            },
            Case {
                name: "a single-replica partition can never lose its broker",
                seen: || {
                    let mut seen = healthy();
                    seen.partitions.push(PartitionView {
                        min_isr: 1,
                        ..partition("scratch", 0, &[100], &[100])
                    });
                    seen
                },
                pending: BTreeSet::from([KafkaNode::Broker(100)]),
                in_flight: None,
                want: Err("scratch-0 (ISR [100], min.insync.replicas 1)"),
            },
        ];
        for case in cases {
            let step = next_step(&(case.seen)(), &case.pending, case.in_flight);
            match case.want {
                Ok(want) => assert_eq!(step, want, "{}", case.name),
                Err(fragment) => {
                    let reason = step.reason().unwrap_or_default();
                    assert!(
                        matches!(step, RollStep::Blocked { .. } | RollStep::WaitFor { .. })
                            && reason.contains(fragment),
                        "{}: {step:?} should say {fragment:?}",
                        case.name
                    );
                }
            }
        }
    }

    #[test]
    fn many_short_partitions_are_summarised() {
        let mut seen = healthy();
        seen.partitions = (0..12)
            .map(|i| partition("transactions", i, &[100, 101, 102], &[100, 101]))
            .collect();
        let reason = broker_blocker(&seen, 100).expect("blocked");
        assert!(reason.contains("12 partition(s)"), "{reason}");
        assert!(reason.contains("and 9 more"), "{reason}");
    }
}
