//! Recovery and service objectives: what the user must be able to prove to an auditor.
//! The operator measures each one and reports it beside its target in the status.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::duration::Duration;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("double(self.availability) <= 100.0").field_path(".availability").message(
    "objectives.availability is a percentage and must not exceed 100"
))]
#[x_kube(validation = Rule::new("duration(self.rto) > duration('0s')").field_path(".rto").message(
    "objectives.rto must be greater than 0s"
))]
#[x_kube(validation = Rule::new("duration(self.latency.p99) > duration('0s')").field_path(".latency.p99").message(
    "objectives.latency.p99 must be greater than 0s"
))]
#[x_kube(validation = Rule::new("duration(self.latency.writeP99) > duration('0s')").field_path(".latency.writeP99").message(
    "objectives.latency.writeP99 must be greater than 0s"
))]
#[x_kube(validation = Rule::new("duration(self.availabilityWindow) >= duration('1h') && duration(self.availabilityWindow) <= duration('2160h')").field_path(".availabilityWindow").message(
    "objectives.availabilityWindow must be between 1h and 2160h (90 days)"
))]
pub struct Objectives {
    /// Maximum data loss on an unplanned failover. `0s` requires synchronous replication. The
    /// default of every component; `postgres.objectives.rpo`, `redis.objectives.rpo` and
    /// `kafka.objectives.rpo` override it. Redis replication is asynchronous: while this is
    /// `0s` and `redis.objectives.rpo` is not set, Redis takes `redis.minReplicasMaxLag`
    /// seconds (10s by default), the loss its rendered configuration bounds.
    #[serde(default = "default_rpo")]
    pub rpo: Duration,
    /// Maximum write unavailability after losing a primary; the components' `objectives.rto`
    /// override it.
    #[serde(default = "default_rto")]
    pub rto: Duration,
    /// Critical-path probe latency (reads, and committed writes); the components'
    /// `objectives.latency` override it.
    #[serde(default)]
    pub latency: LatencyObjective,
    /// Target success ratio of write probes, in percent (for example `"99.99"`), over
    /// `availabilityWindow`.
    #[serde(default = "default_availability")]
    #[schemars(regex(pattern = r"^(100|[0-9]{1,2})(\.[0-9]{1,4})?$"), length(max = 8))]
    pub availability: String,
    /// The rolling window the availability objective is measured over, and its error budget
    /// spent in (from 1h to 2160h; default 720h, 30 days).
    #[serde(default = "default_availability_window")]
    pub availability_window: Duration,
    /// Disaster recovery from the object store (`spec.backup`).
    #[serde(default)]
    pub dr: DrObjectives,
}

/// Disaster-recovery objectives, measured when `spec.backup` is set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DrObjectives {
    /// The most committed data a restore from the object store may lose: the age of the last
    /// archived WAL segment must stay below it.
    #[serde(default = "default_dr_rpo")]
    pub rpo: Duration,
}

fn default_dr_rpo() -> Duration {
    Duration::from_secs(60)
}

impl Default for DrObjectives {
    fn default() -> Self {
        DrObjectives {
            rpo: default_dr_rpo(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LatencyObjective {
    /// 99th percentile of the read probes: a PostgreSQL `SELECT 1` and a Redis `GET`, through
    /// HAProxy.
    #[serde(default = "default_p99")]
    pub p99: Duration,
    /// 99th percentile of the committed-write probes: a PostgreSQL commit (which waits for the
    /// synchronous standbys), a Redis `SET` (with `WAIT` when the Redis RPO needs it) and a
    /// Kafka produce with `acks=all`. A commit is a network round trip more than a read, and a
    /// disk flush on the standby or the in-sync replicas, so its default is not the reads'.
    #[serde(default = "default_write_p99")]
    pub write_p99: Duration,
}

fn default_rpo() -> Duration {
    Duration::ZERO
}
fn default_rto() -> Duration {
    Duration::from_secs(30)
}
fn default_p99() -> Duration {
    Duration::from_millis(1)
}
fn default_write_p99() -> Duration {
    Duration::from_millis(10)
}
fn default_availability() -> String {
    "99.99".to_owned()
}
fn default_availability_window() -> Duration {
    Duration::from_secs(30 * 24 * 3600)
}

impl Default for Objectives {
    fn default() -> Self {
        Objectives {
            rpo: default_rpo(),
            rto: default_rto(),
            latency: LatencyObjective::default(),
            availability: default_availability(),
            availability_window: default_availability_window(),
            dr: DrObjectives::default(),
        }
    }
}

impl Default for LatencyObjective {
    fn default() -> Self {
        LatencyObjective {
            p99: default_p99(),
            write_p99: default_write_p99(),
        }
    }
}

impl Objectives {
    /// The availability target as a ratio in `0.0..=1.0`, when it parses.
    pub fn availability_ratio(&self) -> Option<f64> {
        let percent: f64 = self.availability.parse().ok()?;
        (0.0..=100.0).contains(&percent).then_some(percent / 100.0)
    }
}

/// A component's own objectives: each one set overrides the cluster-wide `spec.objectives`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.rto) || duration(self.rto) > duration('0s')").field_path(".rto").message(
    "a component's objectives.rto must be greater than 0s"
))]
#[x_kube(validation = Rule::new("!has(self.latency) || !has(self.latency.p99) || duration(self.latency.p99) > duration('0s')").field_path(".latency.p99").message(
    "a component's objectives.latency.p99 must be greater than 0s"
))]
#[x_kube(validation = Rule::new("!has(self.latency) || !has(self.latency.writeP99) || duration(self.latency.writeP99) > duration('0s')").field_path(".latency.writeP99").message(
    "a component's objectives.latency.writeP99 must be greater than 0s"
))]
pub struct ComponentObjectives {
    /// Maximum data loss of this component on an unplanned failover.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpo: Option<Duration>,
    /// Maximum write unavailability of this component after losing its primary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rto: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<ComponentLatencyObjective>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComponentLatencyObjective {
    /// 99th percentile of this component's read probes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99: Option<Duration>,
    /// 99th percentile of this component's committed-write probes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_p99: Option<Duration>,
}

/// A component that has objectives of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ObjectiveComponent {
    Postgres,
    Redis,
    Kafka,
}

impl ObjectiveComponent {
    pub const ALL: [ObjectiveComponent; 3] = [
        ObjectiveComponent::Postgres,
        ObjectiveComponent::Redis,
        ObjectiveComponent::Kafka,
    ];

    /// How messages name it.
    pub fn title(self) -> &'static str {
        match self {
            ObjectiveComponent::Postgres => "PostgreSQL",
            ObjectiveComponent::Redis => "Redis",
            ObjectiveComponent::Kafka => "Kafka",
        }
    }

    /// Its key under `spec` (and in metric labels).
    pub fn key(self) -> &'static str {
        match self {
            ObjectiveComponent::Postgres => "postgres",
            ObjectiveComponent::Redis => "redis",
            ObjectiveComponent::Kafka => "kafka",
        }
    }
}

/// Where an effective target was set, so that a message can name the field to change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetSource {
    /// The component's own `spec.<component>.objectives.<objective>`.
    Component,
    /// The cluster-wide `spec.objectives.<objective>`.
    Cluster,
    /// Redis's own default RPO (`redis.minReplicasMaxLag` seconds), taken while the
    /// cluster-wide RPO is `0s`, which asynchronous Redis replication cannot meet.
    RedisDefault,
}

/// One component's targets after the overrides: what its conditions are judged against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EffectiveTargets {
    pub component: ObjectiveComponent,
    pub rpo: Duration,
    pub rpo_source: TargetSource,
    pub rto: Duration,
    pub latency_p99: Duration,
    pub latency_write_p99: Duration,
}

impl EffectiveTargets {
    /// The field that sets this component's RPO target (for "set ... to ..." advice).
    pub fn rpo_field(&self) -> String {
        format!("spec.{}.objectives.rpo", self.component.key())
    }
}

/// `component`'s targets after its overrides (see `ShanraqClusterSpec::objective_targets`).
pub fn effective_targets(
    spec: &crate::ShanraqClusterSpec,
    component: ObjectiveComponent,
) -> EffectiveTargets {
    let own = match component {
        ObjectiveComponent::Postgres => spec.postgres.objectives.as_ref(),
        ObjectiveComponent::Redis => spec.redis.objectives.as_ref(),
        ObjectiveComponent::Kafka => spec.kafka.objectives.as_ref(),
    };
    let cluster = &spec.objectives;
    let (rpo, rpo_source) = match own.and_then(|o| o.rpo) {
        Some(rpo) => (rpo, TargetSource::Component),
        None if component == ObjectiveComponent::Redis && cluster.rpo.is_zero() => {
            (redis_default_rpo(&spec.redis), TargetSource::RedisDefault)
        }
        None => (cluster.rpo, TargetSource::Cluster),
    };
    EffectiveTargets {
        component,
        rpo,
        rpo_source,
        rto: own.and_then(|o| o.rto).unwrap_or(cluster.rto),
        latency_p99: own
            .and_then(|o| o.latency.as_ref())
            .and_then(|l| l.p99)
            .unwrap_or(cluster.latency.p99),
        latency_write_p99: own
            .and_then(|o| o.latency.as_ref())
            .and_then(|l| l.write_p99)
            .unwrap_or(cluster.latency.write_p99),
    }
}

/// The RPO Redis takes while the cluster-wide one is `0s`: `minReplicasMaxLag` seconds, the
/// loss the rendered `min-replicas-max-lag` bounds.
pub fn redis_default_rpo(redis: &crate::redis::RedisSpec) -> Duration {
    Duration::from_secs(u64::try_from(redis.min_replicas_max_lag.max(1)).unwrap_or(1))
}

/// The append-only file the Redis nodes run with: `spec.redis.persistence`, with `auto`
/// decided here and nowhere else. A full outage (every redis-server down at once) loses what
/// the nodes had not yet written to disk, so `auto` takes the cheapest fsync policy whose worst
/// case fits Redis's RPO target (`spec.redis.objectives.rpo`, else the cluster's, else Redis's
/// default, as `effective_targets` decides): `everysec`, which can lose up to
/// `EVERYSEC_WORST_LOSS`, when the target allows that much; `always` below it. Under `auto`,
/// the deprecated `appendonly: false` and `appendfsync: always` a cluster was written with
/// before `persistence` existed are kept, so an operator upgrade changes nothing on disk.
pub fn redis_append_only(spec: &crate::ShanraqClusterSpec) -> crate::redis::AppendOnly {
    use crate::redis::{AppendOnly, EVERYSEC_WORST_LOSS, LegacyAppendfsync, RedisPersistence};
    match spec.redis.persistence {
        RedisPersistence::None => AppendOnly::Off,
        RedisPersistence::Everysec => AppendOnly::Everysec,
        RedisPersistence::Always => AppendOnly::Always,
        RedisPersistence::Auto if spec.redis.appendonly == Some(false) => AppendOnly::Off,
        RedisPersistence::Auto if spec.redis.appendfsync == Some(LegacyAppendfsync::Always) => {
            AppendOnly::Always
        }
        RedisPersistence::Auto => {
            let rpo = effective_targets(spec, ObjectiveComponent::Redis).rpo;
            if rpo.as_std() < EVERYSEC_WORST_LOSS.as_std() {
                AppendOnly::Always
            } else {
                AppendOnly::Everysec
            }
        }
    }
}

/// An objective the chosen settings cannot meet, whatever is measured: said at once, with the
/// field to change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unattainable {
    pub component: ObjectiveComponent,
    /// The field to change.
    pub field: String,
    pub reason: String,
}

/// The RPO targets the spec cannot meet, one entry per enabled component that has one.
///
/// PostgreSQL with `synchronous.dataDurability: preferred` is not among them, even at rpo 0:
/// while its quorum streams it holds RPO 0 exactly as `required` does. Once it falls back
/// (too few standbys for a detection period), a failover may lose the commits made since;
/// that is measured, not predicted: RPOMet turns False with the fallback named, and True again
/// once `ANY number` is restored.
pub fn unattainable_rpo(spec: &crate::ShanraqClusterSpec) -> Vec<Unattainable> {
    use crate::redis::RedisMode;
    let mut found = Vec::new();
    for component in spec.objective_components() {
        let targets = effective_targets(spec, component);
        let rpo_field = targets.rpo_field();
        let entry = match component {
            ObjectiveComponent::Postgres if spec.postgres.instances < 2 => Some((
                "spec.postgres.instances".to_owned(),
                format!(
                    "a single PostgreSQL instance has no replica to fail over to, so an unplanned failover can lose everything: no RPO target ({}) can be met; set spec.postgres.instances to 2 or more",
                    targets.rpo
                ),
            )),
            ObjectiveComponent::Redis if targets.rpo.is_zero() => Some((
                rpo_field.clone(),
                format!(
                    "Redis replication is asynchronous: a failover can lose writes its replicas had not received, so rpo 0s cannot be met; set {rpo_field} to 1s or more (the rendered min-replicas-max-lag follows it)"
                ),
            )),
            ObjectiveComponent::Redis
                if spec.redis.mode == RedisMode::Replication && spec.redis.instances < 2 =>
            {
                Some((
                    "spec.redis.instances".to_owned(),
                    format!(
                        "a single Redis node has no replica to fail over to: no RPO target ({}) can be met; set spec.redis.instances to 2 or more",
                        targets.rpo
                    ),
                ))
            }
            ObjectiveComponent::Redis
                if spec.redis.mode == RedisMode::Replication
                    && spec.redis.min_replicas_to_write < 1 =>
            {
                Some((
                    "spec.redis.minReplicasToWrite".to_owned(),
                    format!(
                        "with minReplicasToWrite 0 the Redis master keeps taking writes with no replica attached, so a failover can lose any amount: the RPO target ({}) cannot be met; set spec.redis.minReplicasToWrite to 1 or more",
                        targets.rpo
                    ),
                ))
            }
            // A full outage is an unplanned failure too: what it loses is what the nodes had
            // not written to disk, whatever the replicas held.
            ObjectiveComponent::Redis
                if redis_append_only(spec)
                    .full_outage_loss()
                    .is_none_or(|loss| loss.as_std() > targets.rpo.as_std()) =>
            {
                let persistence = redis_append_only(spec);
                Some((
                    "spec.redis.persistence".to_owned(),
                    match persistence.full_outage_loss() {
                        None => format!(
                            "with persistence none the Redis nodes keep nothing on disk: a full outage (every redis-server down at once) loses every write, acknowledged or not, so no RPO target ({}) can be met; set spec.redis.persistence to auto, everysec or always",
                            targets.rpo
                        ),
                        Some(loss) => format!(
                            "with persistence {} a full outage (every redis-server down at once) can lose up to {loss} of acknowledged writes, over the RPO target ({}); set spec.redis.persistence to always (or auto), or {rpo_field} to {loss} or more",
                            persistence.spec_value(),
                            targets.rpo
                        ),
                    },
                ))
            }
            ObjectiveComponent::Kafka if spec.kafka.min_insync_replicas < 2 => Some((
                "spec.kafka.minInsyncReplicas".to_owned(),
                format!(
                    "with minInsyncReplicas {} an acks=all write may be on one broker only, and that broker's loss loses it: the RPO target ({}) cannot be met; set spec.kafka.minInsyncReplicas to 2 or more",
                    spec.kafka.min_insync_replicas, targets.rpo
                ),
            )),
            _ => None,
        };
        if let Some((field, reason)) = entry {
            found.push(Unattainable {
                component,
                field,
                reason,
            });
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ShanraqClusterSpec;

    fn spec(yaml: &str) -> ShanraqClusterSpec {
        serde_saphyr::from_str(yaml).expect("spec parses")
    }

    #[test]
    fn components_inherit_the_cluster_targets_and_override_them_one_by_one() {
        let spec = spec(
            "objectives: { rpo: 5s, rto: 20s, latency: { p99: 2ms } }\n\
             redis: { objectives: { rpo: 1s, latency: { p99: 500ms } } }\n\
             kafka: { objectives: { rto: 60s } }\n",
        );
        let postgres = spec.objective_targets(ObjectiveComponent::Postgres);
        assert_eq!(
            (postgres.rpo, postgres.rto, postgres.latency_p99),
            (
                Duration::from_secs(5),
                Duration::from_secs(20),
                Duration::from_millis(2)
            )
        );
        assert_eq!(postgres.rpo_source, TargetSource::Cluster);
        let redis = spec.objective_targets(ObjectiveComponent::Redis);
        assert_eq!(
            (redis.rpo, redis.rto, redis.latency_p99),
            (
                Duration::from_secs(1),
                Duration::from_secs(20),
                Duration::from_millis(500)
            )
        );
        assert_eq!(redis.rpo_source, TargetSource::Component);
        let kafka = spec.objective_targets(ObjectiveComponent::Kafka);
        assert_eq!(
            (kafka.rpo, kafka.rto),
            (Duration::from_secs(5), Duration::from_secs(60))
        );
    }

    #[test]
    fn preferred_durability_can_meet_rpo_zero_while_its_quorum_streams() {
        let preferred = spec("postgres: { synchronous: { number: 1, dataDurability: preferred } }");
        assert!(
            preferred
                .objective_targets(ObjectiveComponent::Postgres)
                .rpo
                .is_zero()
        );
        assert_eq!(unattainable_rpo(&preferred), vec![]);
    }

    #[test]
    fn redis_does_not_inherit_a_zero_rpo_it_cannot_meet() {
        let defaults = spec("{}");
        let redis = defaults.objective_targets(ObjectiveComponent::Redis);
        assert_eq!(redis.rpo, Duration::from_secs(10));
        assert_eq!(redis.rpo_source, TargetSource::RedisDefault);
        assert_eq!(
            defaults.objective_targets(ObjectiveComponent::Postgres).rpo,
            Duration::ZERO
        );
        assert_eq!(unattainable_rpo(&defaults), vec![]);
        let tighter = spec("redis: { minReplicasMaxLag: 3 }");
        assert_eq!(
            tighter.objective_targets(ObjectiveComponent::Redis).rpo,
            Duration::from_secs(3)
        );
    }

    #[test]
    fn auto_persistence_follows_the_redis_rpo_and_never_makes_it_unattainable() {
        use crate::redis::AppendOnly;
        // (spec, what auto renders)
        let cases = [
            // Redis's default RPO (minReplicasMaxLag, 10s) allows everysec's 2s.
            ("{}", AppendOnly::Everysec),
            ("redis: { objectives: { rpo: 2s } }", AppendOnly::Everysec),
            ("redis: { objectives: { rpo: 1999ms } }", AppendOnly::Always),
            ("redis: { objectives: { rpo: 1s } }", AppendOnly::Always),
            // The cluster-wide RPO applies to Redis when it is not 0s.
            (
                "objectives: { rpo: 1s }\npostgres: { synchronous: { number: 0 } }",
                AppendOnly::Always,
            ),
            ("redis: { minReplicasMaxLag: 1 }", AppendOnly::Always),
            // An explicit choice is kept.
            (
                "redis: { persistence: everysec, objectives: { rpo: 60s } }",
                AppendOnly::Everysec,
            ),
            ("redis: { persistence: always }", AppendOnly::Always),
            ("redis: { persistence: none }", AppendOnly::Off),
            // A cluster written before `persistence` keeps what it chose through an upgrade.
            ("redis: { appendonly: false }", AppendOnly::Off),
            ("redis: { appendfsync: always }", AppendOnly::Always),
            (
                "redis: { appendfsync: no, objectives: { rpo: 60s } }",
                AppendOnly::Everysec,
            ),
            (
                "redis: { appendonly: false, persistence: always }",
                AppendOnly::Always,
            ),
        ];
        for (yaml, expected) in cases {
            let spec = spec(yaml);
            assert_eq!(redis_append_only(&spec), expected, "{yaml}");
            if !yaml.contains("persistence") && !yaml.contains("appendonly") {
                assert_eq!(unattainable_rpo(&spec), vec![], "{yaml}");
            }
        }
    }

    #[test]
    fn targets_the_settings_cannot_meet_name_the_field_to_change() {
        let cases = [
            (
                "redis: { objectives: { rpo: 0s } }",
                "spec.redis.objectives.rpo",
                "asynchronous",
            ),
            (
                "objectives: { rpo: 5s }\nredis: { instances: 1, minReplicasToWrite: 0 }",
                "spec.redis.instances",
                "no replica",
            ),
            (
                "objectives: { rpo: 5s }\nredis: { minReplicasToWrite: 0 }",
                "spec.redis.minReplicasToWrite",
                "no replica attached",
            ),
            (
                "objectives: { rpo: 5s }\nkafka: { minInsyncReplicas: 1 }",
                "spec.kafka.minInsyncReplicas",
                "one broker only",
            ),
            (
                "objectives: { rpo: 5s }\npostgres: { instances: 1, synchronous: { number: 0 } }",
                "spec.postgres.instances",
                "single PostgreSQL instance",
            ),
        ];
        for (yaml, field, words) in cases {
            let found = unattainable_rpo(&spec(yaml));
            assert_eq!(found.len(), 1, "{yaml}: {found:#?}");
            assert_eq!(found[0].field, field, "{yaml}");
            assert!(
                found[0].reason.contains(words),
                "{yaml}: {}",
                found[0].reason
            );
        }
        let persistence = [
            ("redis: { persistence: none }", "keep nothing on disk"),
            (
                "redis: { persistence: everysec, objectives: { rpo: 1s } }",
                "up to 2s",
            ),
            (
                "redis: { mode: cluster, instances: 6, persistence: none }",
                "every write",
            ),
        ];
        for (yaml, words) in persistence {
            let found = unattainable_rpo(&spec(yaml));
            assert_eq!(found.len(), 1, "{yaml}: {found:#?}");
            assert_eq!(found[0].field, "spec.redis.persistence", "{yaml}");
            assert!(
                found[0].reason.contains(words),
                "{yaml}: {}",
                found[0].reason
            );
        }
        // A disabled component is not judged.
        assert_eq!(
            unattainable_rpo(&spec("redis: { enabled: false, objectives: { rpo: 0s } }")),
            vec![]
        );
    }
}
