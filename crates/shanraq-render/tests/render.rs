//! What the controller and users rely on from rendering: which objects exist for a spec, their
//! labels and owner references, the role selectors, config hashes, parameter precedence and
//! determinism.

mod common;

use std::collections::BTreeMap;

use common::*;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PodSpec, PodTemplateSpec};
use pretty_assertions::assert_eq;
use shanraq_api::names::{
    ANNOTATION_CONFIG_HASH, LABEL_COMPONENT, LABEL_INSTANCE, LABEL_MANAGED_BY, LABEL_NAME,
    LABEL_ROLE,
};
use shanraq_render::{Child, Rendered, haproxy, kafka, postgres};

fn owned(names: &[&str]) -> Vec<String> {
    let mut names: Vec<String> = names.iter().map(|name| (*name).to_owned()).collect();
    names.sort();
    names
}

#[test]
fn empty_spec_renders_every_component_with_defaults() {
    let rendered = render(&minimal(), true);
    assert_eq!(
        kinds_and_names(&rendered),
        owned(&[
            "ConfigMap/demo-dashboards",
            "ConfigMap/demo-haproxy-config",
            "ConfigMap/demo-kafka-config",
            "ConfigMap/demo-pg-config",
            "ConfigMap/demo-redis-config",
            "Deployment/demo-haproxy",
            "PodDisruptionBudget/demo-haproxy",
            "PodDisruptionBudget/demo-kafka-broker",
            "PodDisruptionBudget/demo-kafka-controller",
            "PodDisruptionBudget/demo-pg",
            "PodDisruptionBudget/demo-redis",
            "PodMonitor/demo-haproxy",
            "PodMonitor/demo-kafka-broker",
            "PodMonitor/demo-kafka-controller",
            "PodMonitor/demo-pg",
            "PodMonitor/demo-redis",
            "PrometheusRule/demo-objectives",
            "Service/demo-haproxy",
            "Service/demo-kafka-bootstrap",
            "Service/demo-kafka-broker",
            "Service/demo-kafka-controller",
            "Service/demo-pg",
            "Service/demo-pg-r",
            "Service/demo-pg-ro",
            "Service/demo-pg-rw",
            "Service/demo-redis",
            "Service/demo-redis-master",
            "Service/demo-redis-replicas",
            "StatefulSet/demo-kafka-broker",
            "StatefulSet/demo-kafka-controller",
            "StatefulSet/demo-pg",
            "StatefulSet/demo-redis",
        ])
    );
    let secrets: Vec<&str> = rendered.secrets.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        secrets,
        vec![
            "demo-pg-superuser",
            "demo-pg-replication",
            "demo-pg-app",
            "demo-instance-token",
            "demo-redis-auth"
        ]
    );
}

#[test]
fn production_example_renders_the_cluster_mode_objects() {
    let rendered = render(&production(), true);
    let names = kinds_and_names(&rendered);
    let mut expected = owned(&[
        "ConfigMap/payments-dashboards",
        "ConfigMap/payments-haproxy-config",
        "ConfigMap/payments-kafka-config",
        "ConfigMap/payments-pg-config",
        "ConfigMap/payments-redis-config",
        "Deployment/payments-haproxy",
        "PodDisruptionBudget/payments-haproxy",
        "PodDisruptionBudget/payments-kafka-broker",
        "PodDisruptionBudget/payments-kafka-controller",
        "PodDisruptionBudget/payments-pg",
        "PodDisruptionBudget/payments-redis",
        "PodMonitor/payments-haproxy",
        "PodMonitor/payments-kafka-broker",
        "PodMonitor/payments-kafka-controller",
        "PodMonitor/payments-pg",
        "PodMonitor/payments-redis",
        "PrometheusRule/payments-objectives",
        "Service/payments-haproxy",
        "Service/payments-kafka-bootstrap",
        "Service/payments-kafka-broker",
        "Service/payments-kafka-controller",
        "Service/payments-pg",
        "Service/payments-pg-r",
        "Service/payments-pg-ro",
        "Service/payments-pg-rw",
        "Service/payments-redis",
        "StatefulSet/payments-kafka-broker",
        "StatefulSet/payments-kafka-controller",
        "StatefulSet/payments-pg",
        "StatefulSet/payments-redis",
    ]);
    let init_jobs: Vec<&String> = names
        .iter()
        .filter(|name| name.starts_with("Job/payments-redis-cluster-init-"))
        .collect();
    assert_eq!(init_jobs.len(), 1, "one Redis Cluster init Job: {names:?}");
    expected.push(init_jobs[0].clone());
    expected.sort();
    assert_eq!(names, expected);
    // Redis Cluster has no master: no role Services.
    assert!(!names.iter().any(|name| name.contains("redis-master")));
}

#[test]
fn disabled_components_render_nothing() {
    let cluster = with_spec(
        "  redis:\n    enabled: false\n  kafka:\n    enabled: false\n  haproxy:\n    enabled: false\n  monitoring:\n    podMonitors: false\n    prometheusRules: false\n    grafanaDashboards: false",
    );
    let rendered = render(&cluster, true);
    assert_eq!(
        kinds_and_names(&rendered),
        owned(&[
            "ConfigMap/demo-pg-config",
            "PodDisruptionBudget/demo-pg",
            "Service/demo-pg",
            "Service/demo-pg-r",
            "Service/demo-pg-ro",
            "Service/demo-pg-rw",
            "StatefulSet/demo-pg",
        ])
    );
    assert!(
        rendered
            .secrets
            .iter()
            .all(|s| s.name.starts_with("demo-pg") || s.name == "demo-instance-token")
    );
    // Without the exporter toggle the pg pod has no sidecar.
    assert_eq!(pod(&rendered, "demo-pg").containers.len(), 1);

    let no_postgres = with_spec("  objectives:\n    rpo: 5s\n  postgres:\n    enabled: false");
    let rendered = render(&no_postgres, true);
    assert!(
        !kinds_and_names(&rendered)
            .iter()
            .any(|name| name.contains("-pg")),
        "{:?}",
        kinds_and_names(&rendered)
    );
    assert!(!rendered.secrets.iter().any(|s| s.name.contains("-pg-")));
    let cfg = config_file(&rendered, "demo-haproxy-config", "haproxy.cfg");
    assert!(!cfg.contains("pg-rw"), "{cfg}");
}

#[test]
fn without_the_prometheus_operator_only_the_dashboards_are_rendered() {
    let rendered = render(&minimal(), false);
    let names = kinds_and_names(&rendered);
    assert!(
        !names
            .iter()
            .any(|n| n.starts_with("PodMonitor/") || n.starts_with("PrometheusRule/"))
    );
    assert!(names.contains(&"ConfigMap/demo-dashboards".to_owned()));
}

#[test]
fn every_child_has_the_cluster_labels_and_owner_reference() {
    for cluster in [minimal(), production()] {
        let rendered = render(&cluster, true);
        for child in &rendered.children {
            let what = format!("{}/{}", child.kind(), child.name());
            let meta = child.metadata();
            assert_eq!(
                meta.namespace.as_deref(),
                Some(cluster.namespace.as_str()),
                "{what}"
            );
            let labels = meta.labels.clone().unwrap_or_default();
            for key in [
                LABEL_NAME,
                LABEL_INSTANCE,
                LABEL_COMPONENT,
                LABEL_MANAGED_BY,
            ] {
                assert!(labels.contains_key(key), "{what} lacks label {key}");
            }
            assert_eq!(labels[LABEL_INSTANCE], cluster.name, "{what}");
            assert_eq!(labels[LABEL_MANAGED_BY], "shanraq-operator", "{what}");
            let owners = meta.owner_references.clone().unwrap_or_default();
            assert_eq!(owners.len(), 1, "{what}");
            let owner = &owners[0];
            assert_eq!(
                (
                    owner.api_version.as_str(),
                    owner.kind.as_str(),
                    owner.name.as_str(),
                    owner.uid.as_str(),
                    owner.controller,
                    owner.block_owner_deletion
                ),
                (
                    "shanraq.org/v1alpha1",
                    "ShanraqCluster",
                    cluster.name.as_str(),
                    UID,
                    Some(true),
                    Some(true)
                ),
                "{what}"
            );
            let json = child.to_json().expect("serialises");
            assert!(
                json["apiVersion"].is_string() && json["kind"].is_string(),
                "{what}"
            );
        }
        for secret in &rendered.secrets {
            assert_eq!(secret.labels[LABEL_INSTANCE], cluster.name);
        }
    }
}

#[test]
fn monitoring_objects_carry_the_spec_labels() {
    let rendered = render(&production(), true);
    for child in &rendered.children {
        if matches!(child, Child::PodMonitor(_) | Child::PrometheusRule(_))
            || child.name() == "payments-dashboards"
        {
            let labels = child.metadata().labels.clone().unwrap_or_default();
            assert_eq!(
                labels.get("release").map(String::as_str),
                Some("kube-prometheus-stack"),
                "{}",
                child.name()
            );
        }
    }
    let dashboards = find(&rendered, "ConfigMap", "payments-dashboards");
    let labels = dashboards.metadata().labels.clone().unwrap_or_default();
    assert_eq!(
        labels.get("grafana_dashboard").map(String::as_str),
        Some("1")
    );
}

fn service_selector(rendered: &Rendered, name: &str) -> BTreeMap<String, String> {
    match find(rendered, "Service", name) {
        Child::Service(service) => service
            .spec
            .as_ref()
            .and_then(|spec| spec.selector.clone())
            .unwrap_or_default(),
        _ => unreachable!(),
    }
}

#[test]
fn role_services_select_by_the_role_label() {
    let rendered = render(&minimal(), true);
    let base = minimal()
        .names
        .selector(shanraq_api::names::Component::Postgres);
    let with_role = |role: &str| {
        let mut selector = base.clone();
        selector.insert(LABEL_ROLE.to_owned(), role.to_owned());
        selector
    };
    assert_eq!(
        service_selector(&rendered, "demo-pg-rw"),
        with_role("primary")
    );
    assert_eq!(
        service_selector(&rendered, "demo-pg-ro"),
        with_role("replica")
    );
    assert_eq!(service_selector(&rendered, "demo-pg-r"), base);
    let redis_base = minimal()
        .names
        .selector(shanraq_api::names::Component::Redis);
    let mut master = redis_base.clone();
    master.insert(LABEL_ROLE.to_owned(), "master".to_owned());
    assert_eq!(service_selector(&rendered, "demo-redis-master"), master);

    // The StatefulSet's pod template never carries a role: the operator moves it.
    let template = pod_template(&rendered, "demo-pg");
    let labels = template.metadata.and_then(|m| m.labels).unwrap_or_default();
    assert!(!labels.contains_key(LABEL_ROLE));
    // Jobs' pods are never selected by the components' Services.
    let production = render(&production(), true);
    let redis_selector = service_selector(&production, "payments-redis");
    for child in &production.children {
        if let Child::Job(job) = child {
            let pod_labels = job
                .spec
                .as_ref()
                .and_then(|spec| spec.template.metadata.as_ref())
                .and_then(|meta| meta.labels.clone())
                .unwrap_or_default();
            assert!(
                !redis_selector
                    .iter()
                    .all(|(k, v)| pod_labels.get(k) == Some(v)),
                "{} pods would join the Redis Service",
                child.name()
            );
        }
    }
}

fn stateful_set<'a>(rendered: &'a Rendered, name: &str) -> &'a StatefulSet {
    match find(rendered, "StatefulSet", name) {
        Child::StatefulSet(set) => set,
        _ => unreachable!(),
    }
}

fn pod_template(rendered: &Rendered, name: &str) -> PodTemplateSpec {
    stateful_set(rendered, name).spec.template.clone()
}

fn pod(rendered: &Rendered, name: &str) -> PodSpec {
    pod_template(rendered, name).spec.expect("pod spec")
}

fn config_hash(rendered: &Rendered, name: &str) -> String {
    pod_template(rendered, name)
        .metadata
        .and_then(|m| m.annotations)
        .and_then(|a| a.get(ANNOTATION_CONFIG_HASH).cloned())
        .unwrap_or_else(|| panic!("{name} has no config hash"))
}

#[test]
fn config_hash_follows_the_config_and_only_the_config() {
    let base = render(&minimal(), true);
    let again = render(&minimal(), true);
    assert_eq!(
        config_hash(&base, "demo-pg"),
        config_hash(&again, "demo-pg")
    );
    assert_eq!(config_hash(&base, "demo-pg").len(), 64);

    // A parameter change rolls PostgreSQL, and nothing else.
    let tuned = render(
        &with_spec("  postgres:\n    parameters:\n      work_mem: 32MB"),
        true,
    );
    assert_ne!(
        config_hash(&base, "demo-pg"),
        config_hash(&tuned, "demo-pg")
    );
    assert_eq!(
        config_hash(&base, "demo-redis"),
        config_hash(&tuned, "demo-redis")
    );
    // Scaling PostgreSQL does not change its configuration.
    let scaled = render(&with_spec("  postgres:\n    instances: 5"), true);
    assert_eq!(
        config_hash(&base, "demo-pg"),
        config_hash(&scaled, "demo-pg")
    );
    // A Redis setting rolls Redis only.
    let redis = render(
        &with_spec("  redis:\n    maxmemoryPolicy: noeviction"),
        true,
    );
    assert_ne!(
        config_hash(&base, "demo-redis"),
        config_hash(&redis, "demo-redis")
    );
    assert_eq!(
        config_hash(&base, "demo-pg"),
        config_hash(&redis, "demo-pg")
    );
}

#[test]
fn user_parameters_override_defaults_but_never_reserved_settings() {
    let mut cluster = with_spec(
        "  postgres:\n    parameters:\n      max_connections: \"500\"\n      work_mem: 64MB\n      statement_timeout: 30s",
    );
    // Reserved keys are refused at admission; rendering must hold even if one slips through.
    for (key, value) in [
        ("wal_level", "minimal"),
        ("synchronous_standby_names", "*"),
        ("port", "6543"),
        ("include", "/etc/passwd"),
    ] {
        cluster
            .spec
            .postgres
            .parameters
            .insert(key.to_owned(), value.to_owned());
    }
    let conf = postgres::postgresql_conf(&cluster).expect("renders");
    let lines: Vec<&str> = conf.lines().collect();
    assert!(lines.contains(&"max_connections = '500'"), "{conf}");
    assert!(lines.contains(&"work_mem = '64MB'"), "{conf}");
    assert!(lines.contains(&"statement_timeout = '30s'"), "{conf}");
    assert!(
        !lines.contains(&"max_connections = '200'"),
        "default kept beside override:\n{conf}"
    );
    assert!(lines.contains(&"wal_level = 'replica'"), "{conf}");
    for reserved in [
        "wal_level = 'minimal'",
        "synchronous_standby_names",
        "port =",
        "include",
    ] {
        assert!(
            !lines.iter().any(|line| line.starts_with(reserved)),
            "{reserved} rendered:\n{conf}"
        );
    }
    assert_eq!(
        lines
            .iter()
            .filter(|line| line.starts_with("max_connections"))
            .count(),
        1
    );
}

#[test]
fn a_parameter_that_would_break_out_of_its_line_is_refused() {
    let mut cluster = minimal();
    cluster.spec.postgres.parameters.insert(
        "work_mem".to_owned(),
        "4MB\nlisten_addresses = '*'".to_owned(),
    );
    let error = postgres::postgresql_conf(&cluster).expect_err("newline refused");
    assert!(
        error
            .to_string()
            .contains("spec.postgres.parameters.work_mem"),
        "{error}"
    );
}

#[test]
fn typed_resources_size_memory_unless_the_user_overrides() {
    let cluster = with_spec("  postgres:\n    resources:\n      limits:\n        memory: 4Gi");
    let conf = postgres::postgresql_conf(&cluster).expect("renders");
    assert!(conf.contains("shared_buffers = '1024MB'"), "{conf}");
    assert!(conf.contains("effective_cache_size = '3072MB'"), "{conf}");
    let production_conf = postgres::postgresql_conf(&production()).expect("renders");
    assert!(
        production_conf.contains("shared_buffers = '2GB'"),
        "{production_conf}"
    );
    assert_eq!(production_conf.matches("shared_buffers").count(), 1);
}

#[test]
fn synchronous_standby_names_is_left_to_the_instance_manager() {
    let rendered = render(&production(), true);
    let conf = config_file(&rendered, "payments-pg-config", "postgresql.conf");
    assert!(!conf.contains("synchronous_standby_names"), "{conf}");
    let script = pod(&rendered, "payments-pg").containers[0]
        .command
        .clone()
        .unwrap_or_default()
        .join(" ");
    assert!(script.contains("--synchronous 'ANY 1 (*)'"), "{script}");
    assert!(
        script.contains("--upstream-host payments-pg-rw"),
        "{script}"
    );
    assert!(script.contains("${POD_NAME##*-}"), "{script}");

    let asynchronous =
        with_spec("  objectives:\n    rpo: 30s\n  postgres:\n    synchronous:\n      number: 0");
    let rendered = render(&asynchronous, true);
    let script = pod(&rendered, "demo-pg").containers[0]
        .command
        .clone()
        .unwrap_or_default()
        .join(" ");
    assert!(!script.contains("--synchronous"), "{script}");
}

#[test]
fn pods_run_under_restricted_pod_security() {
    let rendered = render(&production(), true);
    for child in &rendered.children {
        let template = match child {
            Child::StatefulSet(set) => set.spec.template.clone(),
            Child::Deployment(deployment) => deployment.spec.template.clone(),
            Child::Job(job) => job.spec.clone().expect("job spec").template,
            _ => continue,
        };
        let what = child.name();
        let spec = template.spec.expect("pod spec");
        let pod_security = spec.security_context.clone().expect("pod security context");
        assert_eq!(pod_security.run_as_non_root, Some(true), "{what}");
        assert_eq!(
            pod_security.seccomp_profile.map(|p| p.type_),
            Some("RuntimeDefault".to_owned()),
            "{what}"
        );
        for container in &spec.containers {
            let security = container
                .security_context
                .clone()
                .expect("container security");
            assert_eq!(security.allow_privilege_escalation, Some(false), "{what}");
            assert_eq!(security.run_as_non_root, Some(true), "{what}");
            assert!(security.run_as_user.is_some_and(|uid| uid > 0), "{what}");
            assert_eq!(
                security.capabilities.and_then(|c| c.drop),
                Some(vec!["ALL".to_owned()]),
                "{what}"
            );
        }
        if !matches!(child, Child::Job(_)) {
            let affinity = spec.affinity.expect("affinity");
            let terms = affinity
                .pod_anti_affinity
                .and_then(|a| a.preferred_during_scheduling_ignored_during_execution)
                .unwrap_or_default();
            assert_eq!(
                terms[0].pod_affinity_term.topology_key,
                "kubernetes.io/hostname"
            );
        }
    }
    // Resources come from the spec.
    let pg = pod(&rendered, "payments-pg");
    assert_eq!(
        pg.containers[0].resources,
        production().spec.postgres.resources
    );
}

#[test]
fn pods_run_only_the_images_their_spec_names() {
    for cluster in [minimal(), production()] {
        let spec = &cluster.spec;
        let rendered = render(&cluster, true);
        for child in &rendered.children {
            let (template, image) = match child {
                Child::StatefulSet(set) => {
                    let name = child.name();
                    let image = if name.ends_with("-pg") {
                        &spec.postgres.image
                    } else if name.ends_with("-redis") {
                        &spec.redis.image
                    } else {
                        &spec.kafka.image
                    };
                    (set.spec.template.clone(), image)
                }
                Child::Deployment(deployment) => {
                    (deployment.spec.template.clone(), &spec.haproxy.image)
                }
                // The Redis Cluster Job.
                Child::Job(job) => (
                    job.spec.clone().expect("job spec").template,
                    &spec.redis.image,
                ),
                _ => continue,
            };
            let pod = template.spec.expect("pod spec");
            // Nothing is fetched at start: no init container (the Kafka pods' JMX exporter
            // agent is in the Kafka image).
            assert!(
                pod.init_containers.as_ref().is_none_or(Vec::is_empty),
                "{} has init containers",
                child.name()
            );
            for container in &pod.containers {
                assert_eq!(
                    container.image.as_ref(),
                    Some(image),
                    "{} container {}: the exporters run from the image of what they watch",
                    child.name(),
                    container.name
                );
            }
        }
    }
    let rendered = render(&minimal(), true);
    let commands: BTreeMap<String, Vec<String>> = ["demo-pg", "demo-redis"]
        .iter()
        .flat_map(|name| pod(&rendered, name).containers)
        .filter(|container| container.name.ends_with("-exporter"))
        .map(|container| (container.name, container.command.unwrap_or_default()))
        .collect();
    assert_eq!(commands["postgres-exporter"][0], "postgres_exporter");
    assert_eq!(commands["redis-exporter"][0], "redis_exporter");
    let kafka = pod(&rendered, "demo-kafka-broker").containers[0].clone();
    let options = kafka
        .env
        .unwrap_or_default()
        .into_iter()
        .find(|var| var.name == "KAFKA_OPTS")
        .and_then(|var| var.value)
        .expect("KAFKA_OPTS");
    assert!(
        options.starts_with(&format!("-javaagent:{}=", kafka::JMX_AGENT_JAR)),
        "{options}"
    );
}

#[test]
fn postgres_pods_run_the_instance_manager_with_secrets_as_files() {
    let rendered = render(&production(), true);
    let set = stateful_set(&rendered, "payments-pg");
    assert_eq!(
        set.spec.pod_management_policy.as_deref(),
        Some("OrderedReady")
    );
    assert_eq!(set.spec.replicas, Some(3));
    let claims = set.spec.volume_claim_templates.clone().unwrap_or_default();
    assert_eq!(claims[0].metadata.name.as_deref(), Some("pgdata"));
    let size = claims[0]
        .spec
        .as_ref()
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .map(|q| q.0.clone());
    assert_eq!(size.as_deref(), Some("50Gi"));

    let container = &pod(&rendered, "payments-pg").containers[0];
    let env: BTreeMap<String, Option<String>> = container
        .env
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|e| (e.name, e.value))
        .collect();
    for key in [
        "SHANRAQ_SUPERUSER_PASSWORD_FILE",
        "SHANRAQ_REPLICATION_PASSWORD_FILE",
        "SHANRAQ_INSTANCE_TOKEN_FILE",
    ] {
        assert!(env.get(key).is_some_and(|v| v.is_some()), "{key} missing");
    }
    assert!(
        !env.contains_key("SHANRAQ_SUPERUSER_PASSWORD"),
        "password in env"
    );
    let readiness = container
        .readiness_probe
        .clone()
        .and_then(|p| p.http_get)
        .expect("readiness");
    assert_eq!(readiness.path.as_deref(), Some("/health"));
    let liveness = container
        .liveness_probe
        .clone()
        .and_then(|p| p.http_get)
        .expect("liveness");
    assert_eq!(liveness.path.as_deref(), Some("/status"));
    let ports: Vec<(String, i32)> = container
        .ports
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|p| (p.name.unwrap_or_default(), p.container_port))
        .collect();
    assert_eq!(
        ports,
        vec![("postgres".to_owned(), 5432), ("status".to_owned(), 8000)]
    );
}

#[test]
fn secrets_are_templates_with_generated_passwords() {
    let rendered = render(&production(), true);
    let by_name: BTreeMap<&str, &shanraq_render::SecretTemplate> = rendered
        .secrets
        .iter()
        .map(|s| (s.name.as_str(), s))
        .collect();
    let superuser = by_name["payments-pg-superuser"];
    assert_eq!(superuser.fixed["username"], "postgres");
    assert_eq!(superuser.generated["password"], 32);
    assert_eq!(
        by_name["payments-pg-replication"].fixed["username"],
        "streaming_replica"
    );
    let app = by_name["payments-pg-app"];
    assert_eq!(app.fixed["username"], "app");
    assert_eq!(app.fixed["dbname"], "app");
    assert!(
        by_name["payments-instance-token"]
            .generated
            .contains_key("token")
    );
    assert_eq!(by_name["payments-redis-auth"].generated["password"], 32);
    // No ConfigMap holds a password key.
    for child in &rendered.children {
        if let Child::ConfigMap(map) = child {
            for text in map.data.clone().unwrap_or_default().values() {
                assert!(!text.contains("requirepass \""), "{}", child.name());
            }
        }
    }
}

#[test]
fn kafka_nodes_have_distinct_ids_and_a_stable_cluster_id() {
    let cluster = production();
    let files = kafka::config_files(&cluster);
    let ids: Vec<String> = files
        .iter()
        .filter(|(name, _)| name.ends_with(".properties"))
        .map(|(_, text)| {
            text.lines()
                .find_map(|line| line.strip_prefix("node.id="))
                .expect("node.id")
                .to_owned()
        })
        .collect();
    let mut sorted = ids.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), ids.len(), "{ids:?}");
    assert_eq!(ids.len(), 6);
    assert!(files.contains_key("jmx-exporter.yaml"));

    let id = kafka::cluster_id(&cluster);
    assert_eq!(id.len(), 22);
    assert_eq!(id, "jT58Vi9LTRqbLl9qfI2eDw");
    let mut offline = cluster.clone();
    offline.uid = String::new();
    assert_eq!(kafka::cluster_id(&offline), kafka::OFFLINE_CLUSTER_ID);
}

#[test]
fn topics_are_left_to_the_operator_and_kafka_pods_roll_on_delete() {
    let rendered = render(
        &with_spec("  kafka:\n    topics:\n      - name: ledger\n        partitions: 6"),
        true,
    );
    let names = kinds_and_names(&rendered);
    assert!(
        !names.iter().any(|name| name.starts_with("Job/")),
        "topics go through the admin API, not a Job: {names:?}"
    );
    for child in &rendered.children {
        if let Child::StatefulSet(set) = child
            && set
                .metadata
                .name
                .as_deref()
                .is_some_and(|n| n.contains("-kafka-"))
        {
            let strategy = set.spec.update_strategy.as_ref();
            assert_eq!(
                strategy.and_then(|s| s.type_.as_deref()),
                Some("OnDelete"),
                "{}",
                child.name()
            );
        }
    }
}

/// A Kafka node may take minutes to start on a busy node: the startup probe waits that long,
/// and the liveness probe (which restarts the node) only watches it once it listened. Without
/// resources in the spec, the nodes request some, so that they are not BestEffort.
#[test]
fn kafka_nodes_get_time_to_start_and_requests_by_default() {
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    let kafka_container = |rendered: &Rendered, name: &str| {
        let Child::StatefulSet(set) = find(rendered, "StatefulSet", name) else {
            panic!("{name} is a StatefulSet");
        };
        set.spec
            .template
            .spec
            .as_ref()
            .and_then(|pod| pod.containers.iter().find(|c| c.name == "kafka").cloned())
            .expect("a kafka container")
    };
    let rendered = render(&minimal(), true);
    for name in ["demo-kafka-broker", "demo-kafka-controller"] {
        let container = kafka_container(&rendered, name);
        let startup = container.startup_probe.as_ref().expect("a startup probe");
        let allowed = startup.period_seconds.unwrap_or(10) * startup.failure_threshold.unwrap_or(3);
        assert_eq!(allowed, kafka::STARTUP_SECONDS, "{name}");
        let liveness = container.liveness_probe.as_ref().expect("a liveness probe");
        assert_eq!(liveness.initial_delay_seconds, None, "{name}");
        let requests = container
            .resources
            .as_ref()
            .and_then(|r| r.requests.clone())
            .expect("requests");
        assert_eq!(
            requests.get("cpu"),
            Some(&Quantity(kafka::DEFAULT_CPU_REQUEST.to_owned())),
            "{name}"
        );
        assert_eq!(
            requests.get("memory"),
            Some(&Quantity(kafka::DEFAULT_MEMORY_REQUEST.to_owned())),
            "{name}"
        );
    }
    let sized = render(
        &with_spec("  kafka:\n    resources:\n      requests: { cpu: \"2\", memory: 6Gi }"),
        true,
    );
    let requests = kafka_container(&sized, "demo-kafka-broker")
        .resources
        .and_then(|r| r.requests)
        .expect("requests");
    assert_eq!(requests.get("cpu"), Some(&Quantity("2".to_owned())));
    assert_eq!(requests.get("memory"), Some(&Quantity("6Gi".to_owned())));
}

/// HAProxy carries every client's and probe's request: without resources in the spec it
/// requests some, so that it is not BestEffort.
#[test]
fn haproxy_requests_resources_by_default() {
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    let rendered = render(&minimal(), true);
    let Child::Deployment(deployment) = find(&rendered, "Deployment", "demo-haproxy") else {
        panic!("demo-haproxy is a Deployment");
    };
    let requests = deployment
        .spec
        .template
        .spec
        .as_ref()
        .and_then(|pod| pod.containers.iter().find(|c| c.name == "haproxy"))
        .and_then(|c| c.resources.as_ref())
        .and_then(|r| r.requests.clone())
        .expect("requests");
    assert_eq!(
        requests.get("cpu"),
        Some(&Quantity(haproxy::DEFAULT_CPU_REQUEST.to_owned()))
    );
    assert_eq!(
        requests.get("memory"),
        Some(&Quantity(haproxy::DEFAULT_MEMORY_REQUEST.to_owned()))
    );
}

#[test]
fn rendering_is_deterministic() {
    for cluster in [minimal(), production()] {
        let first = render(&cluster, true);
        let second = render(&cluster, true);
        assert_eq!(first, second);
        let first_json: Vec<_> = first
            .children
            .iter()
            .map(|c| c.to_json().expect("json"))
            .collect();
        let second_json: Vec<_> = second
            .children
            .iter()
            .map(|c| c.to_json().expect("json"))
            .collect();
        assert_eq!(
            serde_json::to_string(&first_json).expect("text"),
            serde_json::to_string(&second_json).expect("text")
        );
    }
}

#[test]
fn postgres_pods_create_the_application_database_from_its_secret() {
    let cluster = with_spec("  postgres:\n    bootstrap: { database: ledger, owner: payments }");
    let rendered = render(&cluster, false);
    let pod = pod_template(&rendered, "demo-pg").spec.expect("pod spec");
    let container = &pod.containers[0];
    let env: Vec<(String, String)> = container
        .env
        .iter()
        .flatten()
        .filter_map(|var| var.value.clone().map(|value| (var.name.clone(), value)))
        .collect();
    assert!(
        env.contains(&("SHANRAQ_APP_DATABASE".to_owned(), "ledger".to_owned())),
        "{env:?}"
    );
    assert!(
        env.contains(&("SHANRAQ_APP_OWNER".to_owned(), "payments".to_owned())),
        "{env:?}"
    );
    let password_file = env
        .iter()
        .find(|(name, _)| name == "SHANRAQ_APP_PASSWORD_FILE")
        .expect("password file env")
        .1
        .clone();
    let mount = container
        .volume_mounts
        .iter()
        .flatten()
        .find(|mount| password_file.starts_with(&mount.mount_path))
        .expect("the password file is on a mounted volume");
    let volume = pod
        .volumes
        .iter()
        .flatten()
        .find(|volume| volume.name == mount.name)
        .expect("volume");
    assert_eq!(
        volume
            .secret
            .as_ref()
            .and_then(|secret| secret.secret_name.as_deref()),
        Some("demo-pg-app"),
        "the app password comes from the rendered -pg-app Secret"
    );
}

/// Runs the PostgreSQL container's entrypoint for pod `pod_name` with a stand-in `shanraq`
/// that prints its arguments and the rendered config ConfigMap as its mounted directory, and
/// returns the `--bootstrap` value it was given.
fn bootstrap_mode(rendered: &Rendered, pod_name: &str) -> String {
    use std::os::unix::fs::PermissionsExt;
    let command = pod(rendered, "payments-pg").containers[0]
        .command
        .clone()
        .expect("command");
    assert_eq!(command[0..2], ["sh".to_owned(), "-c".to_owned()]);
    let config = tempfile::tempdir().expect("temp dir");
    let config_map = rendered
        .children
        .iter()
        .find_map(|child| match child {
            shanraq_render::child::Child::ConfigMap(map)
                if map.metadata.name.as_deref() == Some("payments-pg-config") =>
            {
                Some(map.clone())
            }
            _ => None,
        })
        .expect("the PostgreSQL config ConfigMap");
    for (key, value) in config_map.data.unwrap_or_default() {
        std::fs::write(config.path().join(key), value).expect("mounted file");
    }
    let script = command[2].replace(
        "/etc/shanraq/postgres",
        &config.path().display().to_string(),
    );
    let bin = tempfile::tempdir().expect("temp dir");
    let stand_in = bin.path().join("shanraq");
    std::fs::write(&stand_in, "#!/bin/sh\nprintf '%s\\n' \"$@\"\n").expect("write stand-in");
    std::fs::set_permissions(&stand_in, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let path = format!(
        "{}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let output = std::process::Command::new("sh")
        .arg("-c")
        .arg(&script)
        .env("POD_NAME", pod_name)
        .env("PATH", path)
        .output()
        .expect("sh runs");
    assert!(output.status.success(), "{output:?}");
    let args: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    let at = args
        .iter()
        .position(|a| a == "--bootstrap")
        .unwrap_or_else(|| panic!("no --bootstrap in {args:?}"));
    args[at + 1].clone()
}

#[test]
fn only_a_new_cluster_bootstraps_a_primary_and_only_from_ordinal_0() {
    let fresh = render(&production(), true);
    assert_eq!(bootstrap_mode(&fresh, "payments-pg-0"), "primary");
    assert_eq!(bootstrap_mode(&fresh, "payments-pg-1"), "replica");

    // Once the cluster has had a primary, an emptied pod-0 volume clones; it never creates a
    // second, empty primary.
    let known = shanraq_render::build(
        &production(),
        &shanraq_render::Inputs {
            monitoring_available: true,
            postgres_primary: Some("payments-pg-1".to_owned()),
        },
    )
    .expect("renders");
    for pod_name in ["payments-pg-0", "payments-pg-1", "payments-pg-2"] {
        assert_eq!(bootstrap_mode(&known, pod_name), "replica", "{pod_name}");
    }
    // The pod template stays the same: with OnDelete, a template change no pod picks up would
    // leave the StatefulSet's pods on an old revision (never "updated") for good.
    assert_eq!(
        stateful_set(&fresh, "payments-pg").spec,
        stateful_set(&known, "payments-pg").spec,
        "the first primary does not change the PostgreSQL pod template"
    );
}

#[test]
fn postgres_pods_are_replaced_only_when_deleted() {
    let rendered = render(&production(), true);
    let strategy = stateful_set(&rendered, "payments-pg")
        .spec
        .update_strategy
        .clone()
        .expect("an update strategy");
    assert_eq!(strategy.type_.as_deref(), Some("OnDelete"));
}

#[test]
fn a_changed_redis_cluster_init_script_is_a_new_job() {
    fn init_job(spec: &str) -> String {
        kinds_and_names(&render(&with_spec(spec), false))
            .into_iter()
            .find(|name| name.starts_with("Job/demo-redis-cluster-init-"))
            .expect("cluster mode renders an init Job")
    }
    let six = init_job("  redis:\n    mode: cluster\n    instances: 6");
    assert_eq!(
        six,
        init_job("  redis:\n    mode: cluster\n    instances: 6"),
        "same spec, same Job"
    );
    let nine = init_job("  redis:\n    mode: cluster\n    instances: 9\n    replicasPerShard: 2");
    assert_ne!(
        six, nine,
        "a Job's pod template is immutable: a changed script needs a new name"
    );
    assert!(six.len() - "Job/".len() <= 63, "{six} fits a label value");
}

/// The dashboard has a row for every component, each with panels that query it: the
/// exporter's series (Kafka's JMX exporter, beside the operator's `shanraq_component_*`
/// gauges of its pods).
#[test]
fn the_dashboard_has_panels_for_every_component() {
    let text = shanraq_render::monitoring::dashboard_json(&production()).expect("dashboard");
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    let panels = dashboard["panels"].as_array().cloned().unwrap_or_default();
    for (row, queried) in [
        ("PostgreSQL", "pg_"),
        ("Redis", "redis_"),
        ("Kafka", "kafka"),
        ("HAProxy", "haproxy_"),
    ] {
        let start = panels
            .iter()
            .position(|p| p["type"] == "row" && p["title"] == row)
            .unwrap_or_else(|| panic!("no {row} row"));
        let under: Vec<&serde_json::Value> = panels[start + 1..]
            .iter()
            .take_while(|p| p["type"] != "row")
            .collect();
        assert!(!under.is_empty(), "the {row} row has no panels");
        for panel in under {
            let exprs: Vec<&str> = panel["targets"]
                .as_array()
                .map(|t| t.iter().filter_map(|t| t["expr"].as_str()).collect())
                .unwrap_or_default();
            assert!(
                !exprs.is_empty() && exprs.iter().all(|e| e.contains(queried)),
                "{row} panel {:?} does not query {queried}: {exprs:?}",
                panel["title"]
            );
        }
    }
}
