//! Monitoring that measures: every metric name the generated PrometheusRule and Grafana
//! dashboard query is exported by something. The operator's names come from its own registry
//! (`shanraq_operator::metrics`), the exporters' from the checked-in lists in
//! `crates/shanraq-render/exporters/` (one per pinned exporter version, each naming its source),
//! plus Prometheus' own per-target `up`. A query of a series nobody exports would make an
//! alert that can never fire, or a panel that is always empty.

use std::collections::BTreeSet;
use std::path::Path;

use shanraq_api::{LiveState, ShanraqCluster, ValidCluster};
use shanraq_operator::metrics::{Metrics, encode};
use shanraq_render::monitoring;

/// Series Prometheus itself adds to every scrape target.
const PROMETHEUS_SYNTHETIC: &[&str] = &["up"];

/// PromQL words that are not metric names.
const KEYWORDS: &[&str] = &[
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "inf",
    "nan",
    // Aggregations, which may be followed by `by (...)` instead of their argument.
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
];
/// Modifiers followed by a parenthesised list of label names.
const LABEL_LISTS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// The metric names an expression selects (and no function, keyword, label or literal).
fn metric_names(expr: &str) -> BTreeSet<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    // Skips from an opening bracket to its closing one, strings included.
    let skip_block = |mut i: usize, open: char, close: char| -> usize {
        let mut depth = 0;
        let mut in_string = false;
        while i < chars.len() {
            let c = chars[i];
            if in_string {
                if c == '\\' {
                    i += 1;
                } else if c == '"' {
                    in_string = false;
                }
            } else if c == '"' {
                in_string = true;
            } else if c == open {
                depth += 1;
            } else if c == close {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            i += 1;
        }
        i
    };
    while i < chars.len() {
        let c = chars[i];
        if c == '{' {
            i = skip_block(i, '{', '}');
        } else if c == '[' {
            i = skip_block(i, '[', ']');
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
        } else if c.is_ascii_digit() || c == '.' {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let mut next = i;
            while next < chars.len() && chars[next].is_whitespace() {
                next += 1;
            }
            let called = chars.get(next) == Some(&'(');
            if LABEL_LISTS.contains(&word.as_str()) {
                if called {
                    i = skip_block(next, '(', ')');
                }
            } else if !called && !KEYWORDS.contains(&word.to_ascii_lowercase().as_str()) {
                names.insert(word);
            }
        } else {
            i += 1;
        }
    }
    names
}

/// The names the operator's `/metrics` can carry, from the encoded registry's `# TYPE` lines
/// after one series of every kind the operator publishes (an empty family is not encoded, so a
/// metric the operator never writes is not counted as exported).
fn operator_names() -> BTreeSet<String> {
    use shanraq_operator::metrics::{ComponentLabels, FailoverLabels, ObjectiveLabels};
    use std::time::Duration;

    let (metrics, registry) = Metrics::registered();
    metrics.count_reconcile(Duration::from_millis(5));
    metrics.count_error("apply");
    metrics.set_objective(
        ObjectiveLabels {
            cluster: "payments".into(),
            namespace: "fintech".into(),
            objective: "rto".into(),
        },
        Some(Duration::from_secs(30)),
        Some(true),
        Some(Duration::from_millis(900)),
    );
    metrics.set_availability_slo(
        &ObjectiveLabels {
            cluster: "payments".into(),
            namespace: "fintech".into(),
            objective: "availability".into(),
        },
        Some(0.99995),
        Some(0.5),
    );
    metrics.count_failover(
        FailoverLabels {
            cluster: "payments".into(),
            namespace: "fintech".into(),
            component: "postgres".into(),
            kind: "failover".into(),
        },
        Some(Duration::from_millis(900)),
    );
    metrics
        .probe_counter("payments", "fintech")
        .count("postgres-write", "write", true);
    metrics.set_probe_p99(
        "payments",
        "fintech",
        "postgres-write",
        Some(Duration::from_millis(2)),
    );
    metrics.set_component(
        ComponentLabels {
            cluster: "payments".into(),
            namespace: "fintech".into(),
            component: "kafka-broker".into(),
        },
        3,
        3,
    );
    let text = encode(&registry).expect("the registry encodes");
    let mut names = BTreeSet::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let mut parts = rest.split_whitespace();
        let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
            continue;
        };
        match kind {
            "counter" => {
                names.insert(format!("{name}_total"));
            }
            "histogram" => {
                for suffix in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{name}{suffix}"));
                }
            }
            _ => {
                names.insert(name.to_owned());
            }
        }
    }
    names
}

/// Every name of the checked-in exporter lists.
fn exporter_names() -> BTreeSet<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shanraq-render/exporters");
    let mut names = BTreeSet::new();
    let mut lists = 0;
    for entry in std::fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("{}: {error}", dir.display()))
        .flatten()
    {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "txt") {
            continue;
        }
        lists += 1;
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
        assert!(
            text.starts_with("# ") && text.contains("Source"),
            "{} must say which version it lists and where the names come from",
            path.display()
        );
        names.extend(
            text.lines()
                .map(str::trim)
                .filter(|line| !line.is_empty() && !line.starts_with('#'))
                .map(str::to_owned),
        );
    }
    assert_eq!(
        lists, 4,
        "one list per exporter: postgres, redis, haproxy, kafka (JMX)"
    );
    names
}

fn cluster(manifest: &str) -> ValidCluster {
    let object: ShanraqCluster = serde_saphyr::from_str(manifest).expect("manifest parses");
    shanraq_api::validate(&object, &LiveState::default()).expect("valid")
}

/// The production example (Redis Cluster) and a default cluster (Redis replication).
fn clusters() -> Vec<ValidCluster> {
    let production = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/examples/production.yaml"),
    )
    .expect("deploy/examples/production.yaml");
    vec![
        cluster(&production),
        cluster(
            "apiVersion: shanraq.org/v1alpha1\nkind: ShanraqCluster\nmetadata:\n  name: demo\n  namespace: fintech\nspec: {}\n",
        ),
    ]
}

/// `(where, expr)` of every query: alert and recording rules, and dashboard targets.
fn queries(cluster: &ValidCluster) -> (Vec<(String, String)>, BTreeSet<String>) {
    let mut found = Vec::new();
    let mut recorded = BTreeSet::new();
    for group in monitoring::rule_spec(cluster).groups {
        for rule in group.rules {
            let name = rule
                .alert
                .clone()
                .or_else(|| rule.record.clone())
                .unwrap_or_default();
            if let Some(record) = &rule.record {
                recorded.insert(record.clone());
            }
            found.push((format!("rule {name}"), rule.expr));
        }
    }
    let dashboard: serde_json::Value =
        serde_json::from_str(&monitoring::dashboard_json(cluster).expect("dashboard renders"))
            .expect("dashboard JSON");
    for panel in dashboard["panels"].as_array().cloned().unwrap_or_default() {
        for target in panel["targets"].as_array().cloned().unwrap_or_default() {
            if let Some(expr) = target["expr"].as_str() {
                found.push((format!("panel {:?}", panel["title"]), expr.to_owned()));
            }
        }
    }
    (found, recorded)
}

#[test]
fn the_extractor_finds_metric_names_and_nothing_else() {
    let expr = r#"histogram_quantile(0.99, sum by (le) (rate(shanraq_failover_duration_seconds_bucket{cluster="$cluster", name="x{y}"}[1h]))) > 0.5 and on (pod) pg_up offset 5m or (count(redis_instance_info{role="master"}) or vector(0)) < 3 unless shanraq:ratio:rate5m"#;
    let names: Vec<String> = metric_names(expr).into_iter().collect();
    assert_eq!(
        names,
        vec![
            "pg_up",
            "redis_instance_info",
            "shanraq:ratio:rate5m",
            "shanraq_failover_duration_seconds_bucket",
        ]
    );
}

#[test]
fn the_operator_exports_the_probe_counter_the_burn_rate_rules_query() {
    let names = operator_names();
    for name in [
        "shanraq_probe_total",
        "shanraq_objective_met",
        "shanraq_failover_duration_seconds_bucket",
        "shanraq_component_ready_instances",
        "shanraq_objective_availability_ratio",
        "shanraq_objective_error_budget_remaining_ratio",
    ] {
        assert!(names.contains(name), "{name} missing from {names:?}");
    }
}

#[test]
fn every_metric_the_rules_and_dashboards_query_is_exported() {
    let mut known = operator_names();
    known.extend(exporter_names());
    known.extend(PROMETHEUS_SYNTHETIC.iter().map(|n| (*n).to_owned()));
    let mut unknown = Vec::new();
    let mut checked = 0;
    for cluster in clusters() {
        let (queries, recorded) = queries(&cluster);
        assert!(
            queries.len() > 20,
            "too few queries found: {}",
            queries.len()
        );
        for (place, expr) in queries {
            let names = metric_names(&expr);
            assert!(!names.is_empty(), "{place}: no metric in {expr}");
            for name in names {
                checked += 1;
                let exported = if name.contains(':') {
                    recorded.contains(&name)
                } else {
                    known.contains(&name)
                };
                if !exported {
                    unknown.push(format!(
                        "{}/{}: {place}: {name}",
                        cluster.namespace, cluster.name
                    ));
                }
            }
        }
    }
    assert!(checked > 30, "only {checked} names checked");
    assert!(
        unknown.is_empty(),
        "queried but exported by nothing (add it to the exporter's list only after checking its source):\n{}",
        unknown.join("\n")
    );
}
