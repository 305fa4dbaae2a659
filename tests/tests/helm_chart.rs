//! The Helm chart lints, renders objects the API server accepts, and grants the operator only
//! what it needs under the restricted Pod Security Standard, both cluster-wide and when it is
//! limited to a few namespaces.

use serde_json::Value;
use shanraq_repo_tests::{
    chart_dir, find, helm_template, kind, name, of_kind, run, run_ok, strings, tool,
    validate_objects,
};

/// Values for the namespaced mode with a ServiceMonitor, used by several tests.
const NAMESPACED: &[&str] = &[
    "--set",
    "watchNamespaces={payments,ledger}",
    "--set",
    "serviceMonitor.enabled=true",
    "--set",
    "serviceMonitor.labels.release=kube-prometheus-stack",
];

#[test]
fn lints_strictly_with_default_values() {
    let chart = chart_dir();
    run_ok(
        &tool("helm"),
        &["lint", "--strict", &chart.to_string_lossy()],
        None,
    );
}

#[test]
fn lints_strictly_with_watched_namespaces_and_service_monitor() {
    let chart = chart_dir();
    let mut args = vec!["lint", "--strict"];
    let chart = chart.to_string_lossy();
    args.push(&chart);
    args.extend_from_slice(NAMESPACED);
    run_ok(&tool("helm"), &args, None);
}

#[test]
fn default_render_validates_against_kubernetes_1_35() {
    let objects = helm_template(&[]);
    validate_objects(&objects, "helm template (default values)");
}

#[test]
fn namespaced_render_validates_against_kubernetes_1_35() {
    // The ServiceMonitor is left out: kubernetes-validate has no schema for Prometheus
    // Operator kinds. Its shape is checked by `service_monitor_selects_the_metrics_service`.
    let objects = helm_template(NAMESPACED);
    validate_objects(&objects, "helm template (watchNamespaces + serviceMonitor)");
}

#[test]
fn default_render_has_the_expected_objects_and_no_crd() {
    let objects = helm_template(&[]);
    let mut found: Vec<(String, String)> = objects
        .iter()
        .map(|object| (kind(object).to_string(), name(object).to_string()))
        .collect();
    found.sort();
    let mut expected: Vec<(String, String)> = [
        ("ClusterRole", "shanraq-operator-crd-reader"),
        ("ClusterRole", "shanraq-operator-manager"),
        ("ClusterRoleBinding", "shanraq-operator-crd-reader"),
        ("ClusterRoleBinding", "shanraq-operator-manager"),
        ("Deployment", "shanraq-operator"),
        ("Role", "shanraq-operator-leader-election"),
        ("RoleBinding", "shanraq-operator-leader-election"),
        ("Service", "shanraq-operator-metrics"),
        ("ServiceAccount", "shanraq-operator"),
    ]
    .iter()
    .map(|(k, n)| (k.to_string(), n.to_string()))
    .collect();
    expected.sort();
    assert_eq!(found, expected);
    // Helm installs CRDs only from crds/, never from templates/ (it would delete them, and
    // every ShanraqCluster with them, on uninstall).
    let templates = std::fs::read_dir(chart_dir().join("templates"))
        .unwrap_or_else(|error| panic!("cannot list the chart's templates/: {error}"));
    for entry in templates.flatten() {
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        assert!(
            !text.contains("CustomResourceDefinition"),
            "{} must not ship a CRD; the chart's crds/ directory does",
            entry.path().display()
        );
    }
}

/// Every rule of every Role and ClusterRole in `objects`.
fn rules(objects: &[Value]) -> Vec<(String, Value)> {
    objects
        .iter()
        .filter(|object| matches!(kind(object), "Role" | "ClusterRole"))
        .flat_map(|role| {
            let owner = format!("{} {}", kind(role), name(role));
            role["rules"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(move |rule| (owner.clone(), rule))
        })
        .collect()
}

fn assert_least_privilege(objects: &[Value]) {
    let all = rules(objects);
    assert!(!all.is_empty(), "no RBAC rules rendered");
    for (owner, rule) in &all {
        for field in ["apiGroups", "resources", "verbs"] {
            assert!(
                !strings(&rule[field]).contains(&"*"),
                "{owner} has a wildcard in {field}: {rule}"
            );
        }
        assert!(
            rule.get("nonResourceURLs").is_none(),
            "{owner} grants non-resource URLs: {rule}"
        );
        let verbs = strings(&rule["verbs"]);
        for dangerous in ["escalate", "bind", "impersonate", "deletecollection"] {
            assert!(
                !verbs.contains(&dangerous),
                "{owner} grants {dangerous}: {rule}"
            );
        }
        if strings(&rule["resources"]).contains(&"secrets") {
            for forbidden in ["patch", "update", "delete"] {
                assert!(
                    !verbs.contains(&forbidden),
                    "{owner} grants {forbidden} on secrets (generated passwords must never be \
                     rewritten): {rule}"
                );
            }
        }
    }
}

/// True when some rule in `objects` grants `verb` on `group`/`resource`.
fn grants(objects: &[Value], group: &str, resource: &str, verb: &str) -> bool {
    rules(objects).iter().any(|(_, rule)| {
        strings(&rule["apiGroups"]).contains(&group)
            && strings(&rule["resources"]).contains(&resource)
            && strings(&rule["verbs"]).contains(&verb)
    })
}

#[test]
fn rbac_has_no_wildcards_and_never_rewrites_secrets() {
    assert_least_privilege(&helm_template(&[]));
    assert_least_privilege(&helm_template(NAMESPACED));
}

#[test]
fn rbac_grants_what_the_operator_does() {
    let objects = helm_template(&[]);
    for (group, resource, verb) in [
        ("shanraq.org", "shanraqclusters", "watch"),
        ("shanraq.org", "shanraqclusters/status", "patch"),
        ("shanraq.org", "shanraqclusters/finalizers", "update"),
        ("shanraq.org", "shanraqbackups", "watch"),
        ("shanraq.org", "shanraqbackups", "create"),
        ("shanraq.org", "shanraqbackups/status", "patch"),
        ("apps", "statefulsets", "patch"),
        ("apps", "deployments", "delete"),
        ("", "services", "create"),
        ("", "configmaps", "patch"),
        ("policy", "poddisruptionbudgets", "create"),
        ("batch", "jobs", "delete"),
        ("", "secrets", "create"),
        ("", "pods", "patch"),
        ("", "pods", "delete"),
        ("", "persistentvolumeclaims", "list"),
        ("events.k8s.io", "events", "create"),
        ("coordination.k8s.io", "leases", "update"),
        ("monitoring.coreos.com", "podmonitors", "patch"),
        ("monitoring.coreos.com", "prometheusrules", "delete"),
        ("apiextensions.k8s.io", "customresourcedefinitions", "watch"),
    ] {
        assert!(
            grants(&objects, group, resource, verb),
            "no rule grants {verb} on {group}/{resource}"
        );
    }
    assert!(
        !grants(&objects, "", "persistentvolumeclaims", "delete"),
        "PVCs must be kept"
    );
}

#[test]
fn lease_access_is_limited_to_the_release_namespace() {
    let objects = helm_template(&[]);
    let cluster_roles: Vec<Value> = of_kind(&objects, "ClusterRole")
        .into_iter()
        .cloned()
        .collect();
    for (owner, rule) in rules(&cluster_roles) {
        assert!(
            !strings(&rule["apiGroups"]).contains(&"coordination.k8s.io"),
            "{owner} grants leases cluster-wide: {rule}"
        );
    }
    let role = find(&objects, "Role", "shanraq-operator-leader-election");
    assert_eq!(role["metadata"]["namespace"], "shanraq-system");
}

#[test]
fn watched_namespaces_get_a_role_each_and_no_cluster_wide_manager() {
    let objects = helm_template(NAMESPACED);
    let manager_roles: Vec<&Value> = of_kind(&objects, "Role")
        .into_iter()
        .filter(|role| name(role) == "shanraq-operator-manager")
        .collect();
    let mut namespaces: Vec<&str> = manager_roles
        .iter()
        .filter_map(|role| role["metadata"]["namespace"].as_str())
        .collect();
    namespaces.sort_unstable();
    assert_eq!(namespaces, ["ledger", "payments"]);
    for binding in of_kind(&objects, "RoleBinding") {
        assert_eq!(binding["subjects"][0]["name"], "shanraq-operator");
        assert_eq!(binding["subjects"][0]["namespace"], "shanraq-system");
    }
    let bound: Vec<&str> = of_kind(&objects, "RoleBinding")
        .into_iter()
        .filter(|binding| binding["roleRef"]["name"] == "shanraq-operator-manager")
        .filter_map(|binding| binding["metadata"]["namespace"].as_str())
        .collect();
    assert_eq!(
        bound.len(),
        2,
        "one manager RoleBinding per watched namespace"
    );
    // Only CRD detection stays cluster-wide.
    let cluster_roles: Vec<&str> = of_kind(&objects, "ClusterRole")
        .into_iter()
        .map(name)
        .collect();
    assert_eq!(cluster_roles, ["shanraq-operator-crd-reader"]);
    assert!(!grants(
        &of_kind(&objects, "ClusterRole")
            .into_iter()
            .cloned()
            .collect::<Vec<_>>(),
        "",
        "secrets",
        "get"
    ));
    // The operator is told the same namespaces.
    let deployment = find(&objects, "Deployment", "shanraq-operator");
    assert_eq!(
        env(deployment, "SHANRAQ_WATCH_NAMESPACES"),
        "payments,ledger"
    );
}

/// The literal value of an environment variable of the operator container.
fn env<'a>(deployment: &'a Value, variable: &str) -> &'a str {
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    container["env"]
        .as_array()
        .and_then(|vars| vars.iter().find(|var| var["name"] == variable))
        .and_then(|var| var["value"].as_str())
        .unwrap_or_else(|| panic!("operator container has no literal env {variable}"))
}

#[test]
fn deployment_runs_restricted_with_probes_and_lease_settings() {
    let objects = helm_template(&[]);
    let deployment = find(&objects, "Deployment", "shanraq-operator");
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    assert_eq!(pod["serviceAccountName"], "shanraq-operator");
    let containers = pod["containers"].as_array().cloned().unwrap_or_default();
    assert_eq!(containers.len(), 1);
    let container = &containers[0];
    let security = &container["securityContext"];
    assert_eq!(security["runAsNonRoot"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(strings(&security["capabilities"]["drop"]), ["ALL"]);
    assert!(security["capabilities"].get("add").is_none());
    assert!(security.get("privileged").is_none() || security["privileged"] == false);
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["ports"][0]["containerPort"], 8080);
    assert_eq!(container["args"][0], "operator");
    assert_eq!(
        container["image"],
        "ghcr.io/shanraq-org/shanraq-operator:0.1.0"
    );

    assert_eq!(deployment["spec"]["replicas"], 2);
    assert_eq!(env(deployment, "SHANRAQ_LEADER_ELECTION"), "true");
    assert_eq!(env(deployment, "SHANRAQ_METRICS_ADDR"), "0.0.0.0:8080");
    assert_eq!(env(deployment, "SHANRAQ_WATCH_NAMESPACES"), "");
    let pod_namespace = container["env"]
        .as_array()
        .and_then(|vars| vars.iter().find(|var| var["name"] == "POD_NAMESPACE"))
        .unwrap_or_else(|| panic!("no POD_NAMESPACE env"));
    assert_eq!(
        pod_namespace["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.namespace"
    );
}

#[test]
fn values_reach_the_operator_flags() {
    let objects = helm_template(&[
        "--set",
        "logLevel=debug,logFormat=text,metrics.port=9090,leaderElection.leaseName=ops-lease",
        "--set",
        "image.tag=1.2.3",
    ]);
    let deployment = find(&objects, "Deployment", "shanraq-operator");
    assert_eq!(env(deployment, "SHANRAQ_LOG_LEVEL"), "debug");
    assert_eq!(env(deployment, "SHANRAQ_LOG_FORMAT"), "text");
    assert_eq!(env(deployment, "SHANRAQ_METRICS_ADDR"), "0.0.0.0:9090");
    assert_eq!(env(deployment, "SHANRAQ_LEASE_NAME"), "ops-lease");
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        container["image"],
        "ghcr.io/shanraq-org/shanraq-operator:1.2.3"
    );
    let service = find(&objects, "Service", "shanraq-operator-metrics");
    assert_eq!(service["spec"]["ports"][0]["port"], 9090);
}

#[test]
fn service_monitor_selects_the_metrics_service() {
    let objects = helm_template(NAMESPACED);
    let monitor = find(&objects, "ServiceMonitor", "shanraq-operator");
    assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(
        monitor["metadata"]["labels"]["release"],
        "kube-prometheus-stack"
    );
    let service = find(&objects, "Service", "shanraq-operator-metrics");
    let selector = monitor["spec"]["selector"]["matchLabels"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    assert!(!selector.is_empty());
    for (key, value) in &selector {
        assert_eq!(
            &service["metadata"]["labels"][key], value,
            "Service lacks label {key}"
        );
    }
    assert_eq!(
        monitor["spec"]["endpoints"][0]["port"],
        service["spec"]["ports"][0]["name"]
    );
    assert_eq!(monitor["spec"]["endpoints"][0]["path"], "/metrics");
    assert_eq!(
        monitor["spec"]["endpoints"][0]["honorLabels"], true,
        "the metrics' own namespace label must win over the target's"
    );
    // Off by default: the Prometheus Operator may not be installed.
    assert!(of_kind(&helm_template(&[]), "ServiceMonitor").is_empty());
}

#[test]
fn several_replicas_without_leader_election_are_refused() {
    let chart = chart_dir();
    let output = run(
        &tool("helm"),
        &[
            "template",
            "shanraq-operator",
            &chart.to_string_lossy(),
            "--set",
            "replicaCount=2,leaderElection.enabled=false",
        ],
        None,
    );
    assert!(
        !output.success,
        "rendered two operators without a Lease:\n{}",
        output.stdout
    );
    assert!(
        output.stderr.contains("leaderElection"),
        "{}",
        output.stderr
    );
    // One replica without election is fine, and then no Lease Role is rendered.
    let objects = helm_template(&["--set", "replicaCount=1,leaderElection.enabled=false"]);
    assert!(of_kind(&objects, "Role").is_empty());
}

#[test]
fn values_schema_rejects_a_bad_log_format() {
    let chart = chart_dir();
    let output = run(
        &tool("helm"),
        &[
            "template",
            "shanraq-operator",
            &chart.to_string_lossy(),
            "--set",
            "logFormat=xml",
        ],
        None,
    );
    assert!(!output.success, "logFormat=xml was accepted");
    assert!(output.stderr.contains("logFormat"), "{}", output.stderr);
}
