//! `kubectl kustomize deploy/` builds a complete, valid install (namespace, CRD, operator) that
//! matches what the Helm chart renders with its default values, so that the two ways of
//! installing cannot drift apart.

use serde_json::Value;
use shanraq_repo_tests::{find, helm_template, kind, kustomize_build, of_kind, validate_objects};

#[test]
fn builds_and_validates_against_kubernetes_1_35() {
    let objects = kustomize_build();
    validate_objects(&objects, "kubectl kustomize deploy/");
}

#[test]
fn contains_the_namespace_crd_and_operator() {
    let objects = kustomize_build();
    let namespace = find(&objects, "Namespace", "shanraq-system");
    assert_eq!(
        namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        "restricted"
    );
    let crd = find(
        &objects,
        "CustomResourceDefinition",
        "shanraqclusters.shanraq.org",
    );
    assert_eq!(crd["spec"]["group"], "shanraq.org");
    assert_eq!(crd["spec"]["names"]["kind"], "ShanraqCluster");
    for (wanted, name) in [
        ("ServiceAccount", "shanraq-operator"),
        ("ClusterRole", "shanraq-operator-manager"),
        ("ClusterRoleBinding", "shanraq-operator-manager"),
        ("ClusterRole", "shanraq-operator-crd-reader"),
        ("ClusterRoleBinding", "shanraq-operator-crd-reader"),
        ("Role", "shanraq-operator-leader-election"),
        ("RoleBinding", "shanraq-operator-leader-election"),
        ("Deployment", "shanraq-operator"),
        ("Service", "shanraq-operator-metrics"),
    ] {
        let object = find(&objects, wanted, name);
        if !matches!(wanted, "ClusterRole" | "ClusterRoleBinding") {
            assert_eq!(
                object["metadata"]["namespace"], "shanraq-system",
                "{wanted} {name}"
            );
        }
    }
    for binding in of_kind(&objects, "ClusterRoleBinding")
        .into_iter()
        .chain(of_kind(&objects, "RoleBinding"))
    {
        assert_eq!(binding["subjects"][0]["namespace"], "shanraq-system");
    }
}

/// The rules of the role named `name` of `wanted` kind.
fn rules_of(objects: &[Value], wanted: &str, name: &str) -> Value {
    find(objects, wanted, name)["rules"].clone()
}

#[test]
fn rbac_equals_the_chart() {
    let kustomized = kustomize_build();
    let helm = helm_template(&[]);
    for (wanted, name) in [
        ("ClusterRole", "shanraq-operator-manager"),
        ("ClusterRole", "shanraq-operator-crd-reader"),
        ("Role", "shanraq-operator-leader-election"),
    ] {
        assert_eq!(
            rules_of(&kustomized, wanted, name),
            rules_of(&helm, wanted, name),
            "{wanted} {name}: deploy/operator/rbac.yaml differs from the chart's _helpers.tpl"
        );
    }
    let kinds = |objects: &[Value]| {
        let mut kinds: Vec<String> = objects
            .iter()
            .map(|object| kind(object).to_string())
            .filter(|kind| kind.contains("Role"))
            .collect();
        kinds.sort();
        kinds
    };
    assert_eq!(
        kinds(&kustomized),
        kinds(&helm),
        "RBAC objects differ from the chart's"
    );
}

#[test]
fn operator_pod_and_service_equal_the_chart() {
    let kustomized = kustomize_build();
    let helm = helm_template(&[]);
    let kustomized_deployment = find(&kustomized, "Deployment", "shanraq-operator");
    let helm_deployment = find(&helm, "Deployment", "shanraq-operator");
    assert_eq!(
        kustomized_deployment["spec"]["template"]["spec"],
        helm_deployment["spec"]["template"]["spec"],
        "deploy/operator/deployment.yaml differs from the chart's Deployment"
    );
    assert_eq!(
        kustomized_deployment["spec"]["replicas"],
        helm_deployment["spec"]["replicas"]
    );
    assert_eq!(
        kustomized_deployment["spec"]["selector"],
        helm_deployment["spec"]["selector"]
    );
    assert_eq!(
        find(&kustomized, "Service", "shanraq-operator-metrics")["spec"],
        find(&helm, "Service", "shanraq-operator-metrics")["spec"]
    );
}
