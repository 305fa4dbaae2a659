//! Monitoring for clusters that run the Prometheus Operator: PodMonitors for the exporters, a
//! PrometheusRule with the objectives, availability burn-rate and component alerts, and a
//! Grafana dashboard ConfigMap for Grafana's sidecar. PodMonitors and the rule are rendered only
//! when their CRDs exist; the dashboard ConfigMap needs no CRD.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::core::{ApiResource, DynamicObject};
use serde::Serialize;
use serde_json::json;
use shanraq_api::ValidCluster;
use shanraq_api::names::Component;
use shanraq_api::redis::RedisMode;

use crate::child::{pod_monitor_resource, prometheus_rule_resource};
use crate::meta;
use crate::{Child, Inputs, RenderError, haproxy};

const DASHBOARD_TEMPLATE: &str = include_str!("dashboards/shanraq.json");

/// Labels of every monitoring object: the spec's extra labels (e.g. `release:` for
/// kube-prometheus-stack), then the operator's, which win so the objects stay findable.
fn monitoring_meta(cluster: &ValidCluster, name: &str) -> ObjectMeta {
    let mut metadata = meta::object_meta(cluster, name, Component::Monitoring);
    let mut labels = cluster.spec.monitoring.labels.clone();
    labels.extend(cluster.names.labels(Component::Monitoring));
    metadata.labels = Some(labels);
    metadata
}

pub fn render(cluster: &ValidCluster, inputs: &Inputs) -> Result<Vec<Child>, RenderError> {
    let spec = &cluster.spec.monitoring;
    let mut children = Vec::new();
    if inputs.monitoring_available && spec.pod_monitors {
        let mut monitors = Vec::new();
        if cluster.spec.postgres.enabled {
            monitors.push((Component::Postgres, "metrics", "/metrics"));
        }
        if cluster.spec.redis.enabled {
            monitors.push((Component::Redis, "metrics", "/metrics"));
        }
        if cluster.spec.haproxy.enabled {
            monitors.push((Component::HAProxy, "stats", "/metrics"));
        }
        if cluster.spec.kafka.enabled {
            // The JMX exporter agent in every Kafka pod.
            monitors.push((Component::KafkaController, "metrics", "/metrics"));
            monitors.push((Component::KafkaBroker, "metrics", "/metrics"));
        }
        for (component, port, path) in monitors {
            children.push(Child::PodMonitor(pod_monitor(
                cluster, component, port, path,
            )?));
        }
    }
    if inputs.monitoring_available && spec.prometheus_rules {
        children.push(Child::PrometheusRule(prometheus_rule(cluster)?));
    }
    if spec.grafana_dashboards {
        children.push(Child::ConfigMap(dashboards(cluster)?));
    }
    Ok(children)
}

fn dynamic(
    cluster: &ValidCluster,
    resource: &ApiResource,
    name: &str,
    spec: serde_json::Value,
) -> DynamicObject {
    let mut object = DynamicObject::new(name, resource);
    object.metadata = monitoring_meta(cluster, name);
    object.data = json!({ "spec": spec });
    object
}

fn pod_monitor(
    cluster: &ValidCluster,
    component: Component,
    port: &str,
    path: &str,
) -> Result<DynamicObject, RenderError> {
    let name = cluster.names.workload(component);
    let spec = json!({
        "selector": { "matchLabels": cluster.names.selector(component) },
        "podMetricsEndpoints": [{
            "port": port,
            "path": path,
            "interval": "15s",
            // Every series carries the cluster's name, which the rules and dashboards select on
            // (the Prometheus Operator adds `namespace` and `pod` itself).
            "relabelings": [{
                "action": "replace",
                "targetLabel": "cluster",
                "replacement": cluster.name,
            }],
        }],
    });
    Ok(dynamic(cluster, &pod_monitor_resource(), &name, spec))
}

/// One Prometheus rule (alerting or recording), in the rules-file layout the PrometheusRule
/// spec shares.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Rule {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alert: Option<String>,
    pub expr: String,
    #[serde(rename = "for", skip_serializing_if = "Option::is_none")]
    pub for_: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RuleGroup {
    pub name: String,
    pub rules: Vec<Rule>,
}

/// The PrometheusRule's `spec` (and, as it is, a valid Prometheus rules file).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RuleSpec {
    pub groups: Vec<RuleGroup>,
}

/// The burn-rate windows of the availability alerts: (long, short, share of the error budget
/// in percent that the long window may spend, severity). From the multi-window,
/// multi-burn-rate alerts of the SRE workbook: over a 30-day SLO window they fire at burn rates
/// 14.4, 6, 3 and 1; the burn rate follows `objectives.availabilityWindow`
/// (`share x window / long`), and a window pair whose rate would be below 1 (a long window too
/// close to the SLO window) is left out.
const BURN_WINDOWS: &[(&str, &str, u64, &str)] = &[
    ("1h", "5m", 2, "critical"),
    ("6h", "30m", 5, "critical"),
    ("1d", "2h", 10, "warning"),
    ("3d", "6h", 10, "warning"),
];

/// The failure-ratio threshold of one burn window, in units of 1e-12: the error budget
/// (millionths) x the burn rate `share / 100 x slo_window / long`; `None` when that rate is
/// below 1.
fn burn_threshold_picos(
    budget_millionths: u64,
    share_percent: u64,
    slo_window: u64,
    long: u64,
) -> Option<u128> {
    let (budget, share, slo_window, long) = (
        u128::from(budget_millionths),
        u128::from(share_percent),
        u128::from(slo_window),
        u128::from(long.max(1)),
    );
    // rate >= 1  <=>  share x slo_window >= 100 x long
    (share * slo_window >= 100 * long)
        .then(|| budget * share * slo_window * 1_000_000 / (100 * long))
}

/// `100 - availability` percent as a ratio in millionths, read exactly from the decimal text.
fn error_budget_millionths(availability: &str) -> u64 {
    let (whole, fraction) = availability.split_once('.').unwrap_or((availability, ""));
    let whole: u64 = whole.parse().unwrap_or(100);
    let mut fraction = fraction.to_owned();
    fraction.truncate(4);
    while fraction.len() < 4 {
        fraction.push('0');
    }
    let fraction: u64 = fraction.parse().unwrap_or(0);
    let availability_millionths = (whole * 10_000 + fraction).min(1_000_000);
    1_000_000 - availability_millionths
}

/// A decimal with `scale` digits after the point, trailing zeros dropped.
fn decimal(value: u64, scale: u32) -> String {
    let unit = 10_u64.pow(scale);
    let whole = value / unit;
    let fraction = value % unit;
    if fraction == 0 {
        return whole.to_string();
    }
    let digits = format!("{fraction:0width$}", width = scale as usize);
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
        .collect()
}

fn alert(
    name: &str,
    expr: String,
    for_: &str,
    severity: &str,
    cluster: &ValidCluster,
    summary: String,
    description: String,
) -> Rule {
    Rule {
        record: None,
        alert: Some(name.to_owned()),
        expr,
        for_: Some(for_.to_owned()),
        labels: labels(&[
            ("severity", severity),
            ("cluster", &cluster.name),
            ("namespace", &cluster.namespace),
        ]),
        annotations: labels(&[("summary", &summary), ("description", &description)]),
    }
}

fn failure_ratio_record(window: &str) -> String {
    format!("shanraq:probe_write_failure_ratio:rate{window}")
}

/// The rules of one cluster.
pub fn rule_spec(cluster: &ValidCluster) -> RuleSpec {
    let sel = format!(
        "cluster=\"{}\", namespace=\"{}\"",
        cluster.name, cluster.namespace
    );
    let who = format!("{}/{}", cluster.namespace, cluster.name);

    let objectives = RuleGroup {
        name: format!("shanraq-{}-objectives", cluster.name),
        rules: vec![alert(
            "ShanraqObjectiveViolated",
            format!("shanraq_objective_met{{{sel}}} == 0"),
            "1m",
            "critical",
            cluster,
            format!("Objective {{{{ $labels.objective }}}} is not met on ShanraqCluster {who}"),
            format!(
                "The operator measures objective {{{{ $labels.objective }}}} of {who} as not met. `kubectl describe shanraqcluster -n {} {}` shows the measured value next to the target.",
                cluster.namespace, cluster.name
            ),
        )],
    };

    let budget = error_budget_millionths(&cluster.spec.objectives.availability);
    let slo_window = cluster
        .spec
        .objectives
        .availability_window
        .as_std()
        .as_secs();
    // (long, short, threshold, severity) of the pairs that apply to this SLO window.
    let burns: Vec<(&str, &str, String, &str)> = BURN_WINDOWS
        .iter()
        .filter_map(|(long, short, share, severity)| {
            let picos = burn_threshold_picos(budget, *share, slo_window, window_seconds(long))?;
            Some((
                *long,
                *short,
                decimal(u64::try_from(picos).unwrap_or(u64::MAX), 12),
                *severity,
            ))
        })
        .collect();
    let mut windows: Vec<&str> = burns
        .iter()
        .flat_map(|(long, short, _, _)| [*long, *short])
        .collect();
    windows.sort_by_key(|window| window_seconds(window));
    windows.dedup();
    let mut availability_rules: Vec<Rule> = windows
        .iter()
        .map(|window| Rule {
            record: Some(failure_ratio_record(window)),
            alert: None,
            expr: format!(
                "sum by (cluster, namespace) (rate(shanraq_probe_total{{{sel}, kind=\"write\", result=\"failure\"}}[{window}])) / sum by (cluster, namespace) (rate(shanraq_probe_total{{{sel}, kind=\"write\"}}[{window}]))"
            ),
            for_: None,
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
        })
        .collect();
    for (severity, name, speed) in [
        ("critical", "ShanraqAvailabilityBudgetBurnFast", "fast"),
        ("warning", "ShanraqAvailabilityBudgetBurnSlow", "slow"),
    ] {
        let conditions: Vec<String> = burns
            .iter()
            .filter(|(_, _, _, level)| *level == severity)
            .map(|(long, short, threshold, _)| {
                format!(
                    "({long_rec}{{{sel}}} > {threshold} and {short_rec}{{{sel}}} > {threshold})",
                    long_rec = failure_ratio_record(long),
                    short_rec = failure_ratio_record(short),
                )
            })
            .collect();
        if conditions.is_empty() {
            continue;
        }
        availability_rules.push(alert(
            name,
            conditions.join(" or "),
            "2m",
            severity,
            cluster,
            format!("Write availability of {who} burns its error budget too {speed}"),
            format!(
                "Failed write probes would exhaust the {}% availability objective's error budget over {}; see the operator's shanraq_probe_total, and status.objectives.errorBudgetRemaining.",
                cluster.spec.objectives.availability, cluster.spec.objectives.availability_window
            ),
        ));
    }
    let availability = RuleGroup {
        name: format!("shanraq-{}-availability", cluster.name),
        rules: availability_rules,
    };

    let mut component_rules = Vec::new();
    if cluster.spec.postgres.enabled {
        let pg_pods = format!("{}-[0-9]+", cluster.names.workload(Component::Postgres));
        component_rules.push(alert(
            "ShanraqPostgresNoPrimary",
            format!("absent(pg_replication_is_replica{{{sel}}} == 0)"),
            "1m",
            "critical",
            cluster,
            format!("No PostgreSQL primary in {who}"),
            "No PostgreSQL instance reports being out of recovery: writes are unavailable."
                .to_owned(),
        ));
        component_rules.push(alert(
            "ShanraqPostgresReplicaLag",
            format!(
                "pg_replication_lag_seconds{{{sel}}} > 30 and on (pod) pg_replication_is_replica{{{sel}}} == 1"
            ),
            "2m",
            "warning",
            cluster,
            format!("PostgreSQL replica {{{{ $labels.pod }}}} of {who} lags"),
            "The replica is more than 30 seconds behind the primary; a failover to it could not meet a tight RPO.".to_owned(),
        ));
        component_rules.push(alert(
            "ShanraqPostgresInstanceDown",
            format!("pg_up{{{sel}}} == 0 or up{{{sel}, pod=~\"{pg_pods}\"}} == 0"),
            "1m",
            "warning",
            cluster,
            format!("PostgreSQL instance {{{{ $labels.pod }}}} of {who} is down"),
            "The instance does not answer its exporter; the cluster runs with less redundancy."
                .to_owned(),
        ));
    }
    if cluster.spec.redis.enabled {
        match cluster.spec.redis.mode {
            RedisMode::Replication => component_rules.push(alert(
                "ShanraqRedisMasterDown",
                format!("absent(redis_instance_info{{{sel}, role=\"master\"}})"),
                "1m",
                "critical",
                cluster,
                format!("No Redis master in {who}"),
                "No Redis node reports the master role: cache writes are unavailable.".to_owned(),
            )),
            RedisMode::Cluster => {
                // Every shard needs a master; fewer masters than shards leaves slots unserved.
                // (redis_exporter reports each node's role in `redis_instance_info`.)
                let per_shard = cluster.spec.redis.replicas_per_shard.max(0) + 1;
                let shards = cluster.spec.redis.instances / per_shard;
                component_rules.push(alert(
                    "ShanraqRedisClusterDown",
                    format!(
                        "(count(redis_instance_info{{{sel}, role=\"master\"}}) or vector(0)) < {shards}"
                    ),
                    "1m",
                    "critical",
                    cluster,
                    format!("Redis Cluster of {who} has fewer than {shards} masters"),
                    "Fewer nodes report the master role than the cluster has shards: the slots of a shard without a master are unavailable.".to_owned(),
                ));
            }
        }
    }
    if cluster.spec.kafka.enabled {
        component_rules.push(alert(
            "ShanraqKafkaBrokersNotReady",
            format!(
                "shanraq_component_ready_instances{{{sel}, component=\"kafka-broker\"}} < shanraq_component_desired_instances{{{sel}, component=\"kafka-broker\"}}"
            ),
            "5m",
            "warning",
            cluster,
            format!("Kafka brokers of {who} are not all ready"),
            "Fewer Kafka brokers are ready than desired for five minutes: partitions may be under-replicated.".to_owned(),
        ));
        component_rules.push(alert(
            "ShanraqKafkaUnderReplicatedPartitions",
            format!("sum(kafka_server_replicamanager_underreplicatedpartitions{{{sel}}}) > 0"),
            "5m",
            "warning",
            cluster,
            format!("Kafka partitions of {who} are under-replicated"),
            "Some partitions have fewer in-sync replicas than replicas for five minutes: one more broker loss may stop acks=all writes.".to_owned(),
        ));
        component_rules.push(alert(
            "ShanraqKafkaOfflinePartitions",
            format!("max(kafka_controller_kafkacontroller_offlinepartitionscount{{{sel}}}) > 0"),
            "1m",
            "critical",
            cluster,
            format!("Kafka partitions of {who} are offline"),
            "Some partitions have no leader: reads and writes to them fail.".to_owned(),
        ));
    }
    if cluster.spec.postgres.enabled && cluster.spec.backup.is_some() {
        component_rules.push(alert(
            "ShanraqWALArchivingFailing",
            format!("shanraq_wal_archiving{{{sel}}} == 0"),
            "5m",
            "critical",
            cluster,
            format!("PostgreSQL WAL archiving of {who} is failing"),
            "The primary's archive_command (pgBackRest archive-push) has failed for five minutes: WAL accumulates on the primary and a restore from the object store would lose everything since the last archived segment. The ContinuousArchiving condition and the instance's log give pgBackRest's error.".to_owned(),
        ));
        component_rules.push(alert(
            "ShanraqDisasterRecoveryRPOExceeded",
            format!(
                "shanraq_objective_measured_seconds{{{sel}, objective=\"dr_rpo\"}} > on (cluster, namespace, objective) shanraq_objective_target_seconds{{{sel}, objective=\"dr_rpo\"}}"
            ),
            "2m",
            "critical",
            cluster,
            format!("The disaster-recovery RPO of {who} exceeds its target"),
            "The last archived WAL segment is older than objectives.dr.rpo while the primary has WAL waiting: a restore from the object store would lose more than the target allows.".to_owned(),
        ));
    }
    let backends = haproxy::critical_backends(cluster);
    if cluster.spec.haproxy.enabled && !backends.is_empty() {
        component_rules.push(alert(
            "ShanraqHAProxyBackendDown",
            format!(
                "max by (cluster, namespace, proxy) (haproxy_backend_active_servers{{{sel}, proxy=~\"{regex}\"}} + haproxy_backend_backup_servers{{{sel}, proxy=~\"{regex}\"}}) == 0",
                regex = backends.join("|")
            ),
            "30s",
            "critical",
            cluster,
            format!("HAProxy backend {{{{ $labels.proxy }}}} of {who} has no server up"),
            "Every server of the backend fails its health check: clients of this route get no answer.".to_owned(),
        ));
    }

    let mut groups = vec![objectives, availability];
    if !component_rules.is_empty() {
        groups.push(RuleGroup {
            name: format!("shanraq-{}-components", cluster.name),
            rules: component_rules,
        });
    }
    RuleSpec { groups }
}

fn window_seconds(window: &str) -> u64 {
    let (number, unit) = window.split_at(window.len() - 1);
    let number: u64 = number.parse().unwrap_or(0);
    number
        * match unit {
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            _ => 1,
        }
}

fn prometheus_rule(cluster: &ValidCluster) -> Result<DynamicObject, RenderError> {
    let spec =
        serde_json::to_value(rule_spec(cluster)).map_err(|source| RenderError::Serialise {
            what: format!("PrometheusRule {}", cluster.names.prometheus_rule()),
            source,
        })?;
    Ok(dynamic(
        cluster,
        &prometheus_rule_resource(),
        &cluster.names.prometheus_rule(),
        spec,
    ))
}

/// The dashboard for this cluster: the template with its own uid, title and constant
/// `cluster`/`namespace` variables.
pub fn dashboard_json(cluster: &ValidCluster) -> Result<String, RenderError> {
    let invalid = |source| RenderError::Serialise {
        what: "dashboards/shanraq.json".to_owned(),
        source,
    };
    let mut dashboard: serde_json::Value =
        serde_json::from_str(DASHBOARD_TEMPLATE).map_err(invalid)?;
    let id = meta::config_hash(&[(
        "dashboard",
        &format!("{}/{}", cluster.namespace, cluster.name),
    )]);
    dashboard["uid"] = json!(format!("shanraq-{}", &id[..12]));
    dashboard["title"] = json!(format!("Shanraq / {}/{}", cluster.namespace, cluster.name));
    if let Some(variables) = dashboard["templating"]["list"].as_array_mut() {
        for variable in variables {
            let value = match variable["name"].as_str() {
                Some("cluster") => cluster.name.clone(),
                Some("namespace") => cluster.namespace.clone(),
                _ => continue,
            };
            variable["query"] = json!(value);
            variable["current"] = json!({ "text": value, "value": value });
        }
    }
    let mut text = serde_json::to_string_pretty(&dashboard).map_err(invalid)?;
    text.push('\n');
    Ok(text)
}

fn dashboards(cluster: &ValidCluster) -> Result<ConfigMap, RenderError> {
    let mut metadata = monitoring_meta(cluster, &cluster.names.dashboards());
    if let Some(labels) = metadata.labels.as_mut() {
        labels.insert("grafana_dashboard".to_owned(), "1".to_owned());
    }
    Ok(ConfigMap {
        metadata,
        data: Some(BTreeMap::from([(
            format!("shanraq-{}-{}.json", cluster.namespace, cluster.name),
            dashboard_json(cluster)?,
        )])),
        ..ConfigMap::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_budget_is_exact() {
        assert_eq!(error_budget_millionths("99.99"), 100);
        assert_eq!(error_budget_millionths("99.9"), 1000);
        assert_eq!(error_budget_millionths("100"), 0);
        assert_eq!(error_budget_millionths("99.9995"), 5);
        assert_eq!(decimal(100 * 144, 7), "0.00144");
        assert_eq!(decimal(100 * 10, 7), "0.0001");
        assert_eq!(decimal(0, 7), "0");
    }

    fn with_objectives(yaml: &str) -> ValidCluster {
        let spec: shanraq_api::ShanraqClusterSpec =
            serde_saphyr::from_str(yaml).expect("spec parses");
        let mut object = shanraq_api::ShanraqCluster::new("payments", spec);
        object.metadata.namespace = Some("fintech".to_owned());
        shanraq_api::validate(&object, &shanraq_api::LiveState::default()).expect("valid")
    }

    /// The burn-rate thresholds of each alert, as (long window, threshold).
    fn burn_thresholds(cluster: &ValidCluster, alert_name: &str) -> Vec<(String, String)> {
        let rules = rule_spec(cluster);
        let Some(rule) = rules
            .groups
            .iter()
            .flat_map(|g| g.rules.iter())
            .find(|r| r.alert.as_deref() == Some(alert_name))
        else {
            return Vec::new();
        };
        rule.expr
            .split(" or ")
            .map(|part| {
                let long = part
                    .split("rate")
                    .nth(1)
                    .and_then(|rest| rest.split('{').next())
                    .unwrap_or_default()
                    .to_owned();
                let threshold = part
                    .split(" > ")
                    .nth(1)
                    .and_then(|rest| rest.split(' ').next())
                    .unwrap_or_default()
                    .to_owned();
                (long, threshold)
            })
            .collect()
    }

    #[test]
    fn burn_rates_follow_the_availability_window() {
        // 30 days, 99.99%: the SRE workbook's 14.4, 6, 3 and 1 times the 0.01% budget.
        let default = with_objectives("{}");
        assert_eq!(
            burn_thresholds(&default, "ShanraqAvailabilityBudgetBurnFast"),
            vec![
                ("1h".to_owned(), "0.00144".to_owned()),
                ("6h".to_owned(), "0.0006".to_owned())
            ]
        );
        assert_eq!(
            burn_thresholds(&default, "ShanraqAvailabilityBudgetBurnSlow"),
            vec![
                ("1d".to_owned(), "0.0003".to_owned()),
                ("3d".to_owned(), "0.0001".to_owned())
            ]
        );
        // 7 days, 99.9%: 2% of the budget in 1h is a burn rate of 3.36, 5% in 6h of 1.4; the
        // slow pairs would alert below a burn rate of 1 and are left out.
        let week =
            with_objectives("objectives: { availability: \"99.9\", availabilityWindow: 168h }");
        assert_eq!(
            burn_thresholds(&week, "ShanraqAvailabilityBudgetBurnFast"),
            vec![
                ("1h".to_owned(), "0.00336".to_owned()),
                ("6h".to_owned(), "0.0014".to_owned())
            ]
        );
        assert_eq!(
            burn_thresholds(&week, "ShanraqAvailabilityBudgetBurnSlow"),
            vec![]
        );
        let rules = rule_spec(&week);
        let records: Vec<&str> = rules
            .groups
            .iter()
            .flat_map(|g| g.rules.iter())
            .filter_map(|r| r.record.as_deref())
            .collect();
        assert_eq!(
            records,
            vec![
                "shanraq:probe_write_failure_ratio:rate5m",
                "shanraq:probe_write_failure_ratio:rate30m",
                "shanraq:probe_write_failure_ratio:rate1h",
                "shanraq:probe_write_failure_ratio:rate6h"
            ],
            "only the windows the alerts read are recorded"
        );
    }

    #[test]
    fn the_dashboard_shows_the_error_budget_and_the_slo_ratio() {
        let text = dashboard_json(&with_objectives("{}")).expect("dashboard");
        let dashboard: serde_json::Value = serde_json::from_str(&text).expect("json");
        let exprs: Vec<String> = dashboard["panels"]
            .as_array()
            .expect("panels")
            .iter()
            .flat_map(|panel| panel["targets"].as_array().cloned().unwrap_or_default())
            .filter_map(|target| target["expr"].as_str().map(str::to_owned))
            .collect();
        for series in [
            "shanraq_objective_error_budget_remaining_ratio{cluster=\"$cluster\", namespace=\"$namespace\"}",
            "shanraq_objective_availability_ratio{cluster=\"$cluster\", namespace=\"$namespace\"}",
        ] {
            assert!(
                exprs.iter().any(|expr| expr == series),
                "no panel reads {series}: {exprs:#?}"
            );
        }
    }
}
