//! The faults the benchmark injects, as values: each one's name, how many failovers it may
//! cause, how long it is held, and how it is injected into the primary's side and healed.

use std::time::Duration;

use shanraq_testkit::topology::ENGINE_NODE;

use super::{BenchPlan, STEP_TIMEOUT};
use crate::error::DrillError;
use crate::local::LocalCluster;
use crate::scenario;

/// How long `replica-partition` keeps the primary cut from its replicas.
const REPLICA_PARTITION_HOLD: Duration = Duration::from_secs(10);
/// `lossy-link`: what every packet to and from the primary suffers.
const LOSSY_LOSS_PERCENT: u8 = 30;
const LOSSY_DELAY: Duration = Duration::from_millis(200);

/// A fault the benchmark injects. Adding one: a variant, its name, how many failovers it
/// may cause, whether it holds, and its `inject` and `heal` arms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    /// SIGKILL of the primary's whole instance (manager and every postgres process).
    Kill,
    /// Every packet between the engine and the primary dropped; clients and replicas still
    /// reach it.
    EnginePartition,
    /// Every packet to and from the primary dropped.
    PrimaryIsolated,
    /// Every packet between the primary and each replica dropped, for 10 s.
    ReplicaPartition,
    /// SIGSTOP of the primary's instance manager only; its postgres keeps serving.
    ManagerFreeze,
    /// 30 % loss and 200 ms delay on every packet to and from the primary, for a while.
    LossyLink,
}

/// How many unplanned failovers one run may cause.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExpectedFailovers {
    pub at_least: usize,
    pub at_most: usize,
}

impl ExpectedFailovers {
    const fn exactly(count: usize) -> ExpectedFailovers {
        ExpectedFailovers {
            at_least: count,
            at_most: count,
        }
    }

    /// Failovers beyond the most the scenario may cause.
    pub fn false_failovers(self, unplanned: usize) -> usize {
        unplanned.saturating_sub(self.at_most)
    }
}

/// What `inject` did, for `heal` to undo.
#[derive(Clone, Copy, Debug)]
pub enum Fault {
    Killed {
        member: usize,
    },
    /// Cuts, isolation or degradation in the lab; its `heal` undoes them all.
    Network,
    ManagerFrozen {
        member: usize,
    },
}

impl Scenario {
    pub const ALL: &'static [Scenario] = &[
        Scenario::Kill,
        Scenario::EnginePartition,
        Scenario::PrimaryIsolated,
        Scenario::ReplicaPartition,
        Scenario::ManagerFreeze,
        Scenario::LossyLink,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Kill => "kill",
            Scenario::EnginePartition => "engine-partition",
            Scenario::PrimaryIsolated => "primary-isolated",
            Scenario::ReplicaPartition => "replica-partition",
            Scenario::ManagerFreeze => "manager-freeze",
            Scenario::LossyLink => "lossy-link",
        }
    }

    /// Unplanned failovers one run must and may cause; any more are false failovers.
    pub fn expected_failovers(self) -> ExpectedFailovers {
        match self {
            Scenario::Kill
            | Scenario::EnginePartition
            | Scenario::PrimaryIsolated
            | Scenario::ManagerFreeze => ExpectedFailovers::exactly(1),
            Scenario::ReplicaPartition => ExpectedFailovers::exactly(0),
            Scenario::LossyLink => ExpectedFailovers {
                at_least: 0,
                at_most: 1,
            },
        }
    }

    /// Whether the scenario runs in a network lab (every scenario but `kill`).
    pub fn in_lab(self) -> bool {
        self != Scenario::Kill
    }

    /// How long the fault is held before the heal, for scenarios that do not wait for a
    /// failover.
    pub fn hold(self, plan: &BenchPlan) -> Option<Duration> {
        match self {
            Scenario::ReplicaPartition => Some(REPLICA_PARTITION_HOLD),
            Scenario::LossyLink => Some(plan.lossy_hold),
            Scenario::Kill
            | Scenario::EnginePartition
            | Scenario::PrimaryIsolated
            | Scenario::ManagerFreeze => None,
        }
    }

    /// Injects the fault; `primary` is the member the engine designates.
    pub async fn inject(
        self,
        cluster: &mut LocalCluster,
        primary: usize,
    ) -> Result<Fault, DrillError> {
        if self == Scenario::Kill {
            cluster.topology_mut().kill(primary)?;
            return Ok(Fault::Killed { member: primary });
        }
        if self == Scenario::ManagerFreeze {
            cluster.topology().freeze_manager(primary)?;
            return Ok(Fault::ManagerFrozen { member: primary });
        }
        let lab = self.lab(cluster)?;
        let node = cluster.node(primary)?;
        let node = node.as_str();
        match self {
            Scenario::EnginePartition => lab.cut(ENGINE_NODE, node)?,
            Scenario::PrimaryIsolated => lab.isolate(node)?,
            Scenario::ReplicaPartition => {
                for replica in (0..cluster.topology().len()).filter(|&index| index != primary) {
                    lab.cut(node, cluster.node(replica)?.as_str())?;
                }
            }
            Scenario::LossyLink => lab.degrade(node, LOSSY_LOSS_PERCENT, LOSSY_DELAY)?,
            Scenario::Kill | Scenario::ManagerFreeze => {}
        }
        Ok(Fault::Network)
    }

    fn lab(self, cluster: &LocalCluster) -> Result<&shanraq_testkit::NetLab, DrillError> {
        cluster
            .topology()
            .lab()
            .ok_or_else(|| DrillError::InvalidOption {
                option: "scenario",
                reason: format!("{} needs a network lab", self.name()),
            })
    }

    /// Undoes `fault` and waits until every member of `all` streams from the primary.
    pub async fn heal(
        self,
        cluster: &mut LocalCluster,
        fault: Fault,
        all: &[usize],
    ) -> Result<(), DrillError> {
        match fault {
            Fault::Killed { member } => {
                scenario::rejoin(cluster, member, all, STEP_TIMEOUT).await?;
                return Ok(());
            }
            Fault::Network => self.lab(cluster)?.heal()?,
            Fault::ManagerFrozen { member } => cluster.topology().thaw_manager(member)?,
        }
        cluster.wait_converged(all, STEP_TIMEOUT).await?;
        Ok(())
    }
}

/// A scenario's name, or `all` for every scenario in turn.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScenarioSelection(pub Vec<Scenario>);

/// `--scenario` named no scenario; the message lists them.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown scenario {text:?}: use {} or all", scenario_names())]
pub struct UnknownScenario {
    pub text: String,
}

fn scenario_names() -> String {
    let names: Vec<&str> = Scenario::ALL.iter().map(|s| s.name()).collect();
    names.join(", ")
}

impl std::str::FromStr for ScenarioSelection {
    type Err = UnknownScenario;

    fn from_str(text: &str) -> Result<ScenarioSelection, UnknownScenario> {
        if text == "all" {
            return Ok(ScenarioSelection(Scenario::ALL.to_vec()));
        }
        Scenario::ALL
            .iter()
            .find(|scenario| scenario.name() == text)
            .map(|scenario| ScenarioSelection(vec![*scenario]))
            .ok_or_else(|| UnknownScenario {
                text: text.to_owned(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenarios_are_chosen_by_name_or_all() {
        for scenario in Scenario::ALL {
            assert_eq!(
                scenario.name().parse::<ScenarioSelection>(),
                Ok(ScenarioSelection(vec![*scenario]))
            );
        }
        let all = "all".parse::<ScenarioSelection>().expect("all");
        assert_eq!(all.0.first(), Some(&Scenario::Kill), "kill runs first");
        assert_eq!(all.0.len(), 6);
        let error = "nope".parse::<ScenarioSelection>().expect_err("unknown");
        let message = error.to_string();
        assert!(
            message.contains("engine-partition") && message.contains("lossy-link"),
            "{message}"
        );
    }

    #[test]
    fn failovers_beyond_the_most_a_scenario_may_cause_are_false() {
        let false_failovers =
            |scenario: Scenario, seen: usize| scenario.expected_failovers().false_failovers(seen);
        assert_eq!(false_failovers(Scenario::Kill, 1), 0);
        assert_eq!(false_failovers(Scenario::EnginePartition, 2), 1);
        assert_eq!(false_failovers(Scenario::ReplicaPartition, 1), 1);
        assert_eq!(false_failovers(Scenario::LossyLink, 0), 0);
        assert_eq!(false_failovers(Scenario::LossyLink, 1), 0);
        assert_eq!(false_failovers(Scenario::LossyLink, 3), 2);
        let must_fail_over: Vec<&str> = Scenario::ALL
            .iter()
            .filter(|scenario| scenario.expected_failovers().at_least > 0)
            .map(|scenario| scenario.name())
            .collect();
        assert_eq!(
            must_fail_over,
            [
                "kill",
                "engine-partition",
                "primary-isolated",
                "manager-freeze"
            ]
        );
    }
}
