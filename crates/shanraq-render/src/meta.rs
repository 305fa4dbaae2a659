//! The pieces every component shares, so that each one gets them the same way: object metadata
//! with the cluster's labels and owner reference, restricted Pod Security contexts, spreading
//! pods across nodes, disruption budgets, headless Services, volume claims and the config hash
//! that rolls pods when their configuration changes.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec, StatefulSetUpdateStrategy};
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource,
    EnvVar, EnvVarSource, ObjectFieldSelector, PersistentVolumeClaim, PersistentVolumeClaimSpec,
    PodAffinityTerm, PodAntiAffinity, PodSecurityContext, PodSpec, PodTemplateSpec,
    ResourceRequirements, SeccompProfile, SecretKeySelector, SecretVolumeSource, SecurityContext,
    Service, ServicePort, ServiceSpec, Volume, VolumeMount, VolumeResourceRequirements,
    WeightedPodAffinityTerm,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use sha2::{Digest, Sha256};
use shanraq_api::ValidCluster;
use shanraq_api::names::{ANNOTATION_CONFIG_HASH, API_VERSION, Component, KIND};
use shanraq_api::storage::StorageSpec;

/// The cluster DNS domain used in fully qualified pod names. HAProxy's runtime resolvers do not
/// apply the resolv.conf search list, so pod addresses must be complete.
pub const CLUSTER_DOMAIN: &str = "cluster.local";

/// The owner reference every child carries: deleting the ShanraqCluster deletes its children,
/// and the controller maps child events back to the cluster.
pub fn owner_reference(cluster: &ValidCluster) -> OwnerReference {
    OwnerReference {
        api_version: API_VERSION.to_owned(),
        kind: KIND.to_owned(),
        name: cluster.name.clone(),
        uid: cluster.uid.clone(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// Metadata of a child object of `component`.
pub fn object_meta(cluster: &ValidCluster, name: &str, component: Component) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: Some(cluster.namespace.clone()),
        labels: Some(cluster.names.labels(component)),
        owner_references: Some(vec![owner_reference(cluster)]),
        ..ObjectMeta::default()
    }
}

/// Pod template metadata: the component's labels and the hash of its configuration.
pub fn pod_meta(cluster: &ValidCluster, component: Component, config_hash: &str) -> ObjectMeta {
    ObjectMeta {
        labels: Some(cluster.names.labels(component)),
        annotations: Some(BTreeMap::from([(
            ANNOTATION_CONFIG_HASH.to_owned(),
            config_hash.to_owned(),
        )])),
        ..ObjectMeta::default()
    }
}

/// The selector of a component's pods, as a `LabelSelector`.
pub fn label_selector(cluster: &ValidCluster, component: Component) -> LabelSelector {
    LabelSelector {
        match_labels: Some(cluster.names.selector(component)),
        ..LabelSelector::default()
    }
}

/// Hex SHA-256 of the given named parts, in order. Names are hashed too, so moving text from one
/// file to another changes the hash.
pub fn config_hash(parts: &[(&str, &str)]) -> String {
    let mut hasher = Sha256::new();
    for (name, text) in parts {
        hasher.update((name.len() as u64).to_be_bytes());
        hasher.update(name.as_bytes());
        hasher.update((text.len() as u64).to_be_bytes());
        hasher.update(text.as_bytes());
    }
    hex(&hasher.finalize())
}

pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    out
}

/// Resource requests only (no limits): what a component whose spec sets no resources asks for,
/// so that its pods are Burstable rather than BestEffort (2 CPU shares against the 51 or more
/// of every Burstable pod beside them, and the first evicted under memory pressure).
pub fn requests(cpu: &str, memory: &str) -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_owned(), Quantity(cpu.to_owned())),
            ("memory".to_owned(), Quantity(memory.to_owned())),
        ])),
        ..ResourceRequirements::default()
    }
}

/// Restricted Pod Security at the pod level: non-root as the image's uid, the runtime's default
/// seccomp profile, and volumes group-owned by that uid's group so the data is writable.
pub fn pod_security_context(uid: i64) -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(uid),
        run_as_group: Some(uid),
        fs_group: Some(uid),
        fs_group_change_policy: Some("OnRootMismatch".to_owned()),
        seccomp_profile: Some(runtime_default_seccomp()),
        ..PodSecurityContext::default()
    }
}

/// Restricted Pod Security at the container level. `read_only_root` is false only for images
/// that must write outside their mounted volumes.
pub fn container_security_context(uid: i64, read_only_root: bool) -> SecurityContext {
    SecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(uid),
        run_as_group: Some(uid),
        allow_privilege_escalation: Some(false),
        privileged: Some(false),
        read_only_root_filesystem: Some(read_only_root),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_owned()]),
            ..Capabilities::default()
        }),
        seccomp_profile: Some(runtime_default_seccomp()),
        ..SecurityContext::default()
    }
}

fn runtime_default_seccomp() -> SeccompProfile {
    SeccompProfile {
        type_: "RuntimeDefault".to_owned(),
        ..SeccompProfile::default()
    }
}

/// Prefer one pod of the component per node, so a node loss takes at most one instance.
/// Preferred rather than required: a small cluster must still schedule every instance.
pub fn spread_across_nodes(cluster: &ValidCluster, component: Component) -> Affinity {
    Affinity {
        pod_anti_affinity: Some(PodAntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![
                WeightedPodAffinityTerm {
                    weight: 100,
                    pod_affinity_term: PodAffinityTerm {
                        label_selector: Some(label_selector(cluster, component)),
                        topology_key: "kubernetes.io/hostname".to_owned(),
                        ..PodAffinityTerm::default()
                    },
                },
            ]),
            ..PodAntiAffinity::default()
        }),
        ..Affinity::default()
    }
}

/// A disruption budget letting at most one of the component's pods be evicted at a time.
pub fn pod_disruption_budget(
    cluster: &ValidCluster,
    name: &str,
    component: Component,
) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: object_meta(cluster, name, component),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(label_selector(cluster, component)),
            ..PodDisruptionBudgetSpec::default()
        }),
        status: None,
    }
}

/// A headless Service giving each pod of a StatefulSet a stable DNS name. Not-ready pods are
/// published too: replicas must find the primary, and cluster members each other, before any
/// of them is ready.
pub fn headless_service(
    cluster: &ValidCluster,
    name: &str,
    component: Component,
    ports: Vec<ServicePort>,
) -> Service {
    Service {
        metadata: object_meta(cluster, name, component),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".to_owned()),
            publish_not_ready_addresses: Some(true),
            selector: Some(cluster.names.selector(component)),
            ports: Some(ports),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

/// A ClusterIP Service on the component's pods, optionally narrowed by extra labels (the role).
pub fn cluster_ip_service(
    cluster: &ValidCluster,
    name: &str,
    component: Component,
    extra_selector: &[(&str, &str)],
    ports: Vec<ServicePort>,
) -> Service {
    let mut selector = cluster.names.selector(component);
    for (key, value) in extra_selector {
        selector.insert((*key).to_owned(), (*value).to_owned());
    }
    Service {
        metadata: object_meta(cluster, name, component),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".to_owned()),
            selector: Some(selector),
            ports: Some(ports),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

/// A TCP Service port forwarding to the container port of the same name.
pub fn service_port(name: &str, port: i32) -> ServicePort {
    ServicePort {
        name: Some(name.to_owned()),
        port,
        target_port: Some(IntOrString::String(name.to_owned())),
        protocol: Some("TCP".to_owned()),
        ..ServicePort::default()
    }
}

pub fn container_port(name: &str, port: i32) -> ContainerPort {
    ContainerPort {
        name: Some(name.to_owned()),
        container_port: port,
        protocol: Some("TCP".to_owned()),
        ..ContainerPort::default()
    }
}

/// What a component's StatefulSet says of itself. Everything else is the same for every
/// component: its labels and owner, the selector, the restricted pod settings, spreading across
/// nodes, no service-account token and no service links, and one data volume claim.
#[derive(Debug)]
pub struct Workload<'a> {
    pub replicas: i32,
    /// The user every container of the pod runs as.
    pub uid: i64,
    pub containers: Vec<Container>,
    pub volumes: Vec<Volume>,
    pub termination_grace_seconds: i64,
    /// `OrderedReady` when true, `Parallel` otherwise.
    pub ordered_start: bool,
    /// `OnDelete`: the kubelet's rolling update never restarts a pod by itself (the operator
    /// restarts stale pods in its own order). Otherwise the default rolling update.
    pub on_delete: bool,
    /// The name of the data volume claim.
    pub data_volume: &'a str,
    pub storage: &'a StorageSpec,
    /// `shanraq.org/config-hash` on each pod: which pods run a stale configuration.
    pub config_hash: &'a str,
}

/// `sh -c script`: how every container starts its program (the script renders its
/// configuration from the pod's name first), and how a probe runs a pipeline.
pub fn shell(script: String) -> Option<Vec<String>> {
    Some(vec!["sh".to_owned(), "-c".to_owned(), script])
}

/// A component's StatefulSet.
pub fn stateful_set(
    cluster: &ValidCluster,
    component: Component,
    workload: Workload<'_>,
) -> StatefulSet {
    let name = cluster.names.workload(component);
    let pod = PodSpec {
        containers: workload.containers,
        security_context: Some(pod_security_context(workload.uid)),
        affinity: Some(spread_across_nodes(cluster, component)),
        automount_service_account_token: Some(false),
        enable_service_links: Some(false),
        termination_grace_period_seconds: Some(workload.termination_grace_seconds),
        volumes: Some(workload.volumes),
        ..PodSpec::default()
    };
    let policy = if workload.ordered_start {
        "OrderedReady"
    } else {
        "Parallel"
    };
    StatefulSet {
        metadata: object_meta(cluster, &name, component),
        spec: StatefulSetSpec {
            replicas: Some(workload.replicas),
            service_name: Some(name),
            pod_management_policy: Some(policy.to_owned()),
            update_strategy: workload.on_delete.then(|| StatefulSetUpdateStrategy {
                type_: Some("OnDelete".to_owned()),
                rolling_update: None,
            }),
            selector: label_selector(cluster, component),
            template: PodTemplateSpec {
                metadata: Some(pod_meta(cluster, component, workload.config_hash)),
                spec: Some(pod),
            },
            volume_claim_templates: Some(vec![volume_claim(
                cluster,
                workload.data_volume,
                component,
                workload.storage,
            )]),
            ..StatefulSetSpec::default()
        },
        status: None,
    }
}

/// A volume claim template for a StatefulSet.
pub fn volume_claim(
    cluster: &ValidCluster,
    name: &str,
    component: Component,
    storage: &StorageSpec,
) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some(cluster.names.labels(component)),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".to_owned()]),
            storage_class_name: storage.storage_class_name.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_owned(),
                    Quantity(storage.size.clone()),
                )])),
                ..VolumeResourceRequirements::default()
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        status: None,
    }
}

/// `POD_NAME` from the downward API: the scripts pick the pod's ordinal from it.
pub fn pod_name_env() -> EnvVar {
    field_env("POD_NAME", "metadata.name")
}

/// `name` from the downward API's `field_path` (`status.podIP`, ...).
pub fn field_env(name: &str, field_path: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: field_path.to_owned(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

pub fn env(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value.to_owned()),
        ..EnvVar::default()
    }
}

/// An environment variable read from a Secret key (for programs that only take env).
pub fn env_from_secret(name: &str, secret: &str, key: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.to_owned(),
                key: key.to_owned(),
                optional: Some(false),
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

pub fn config_map_volume(name: &str, config_map: &str) -> Volume {
    Volume {
        name: name.to_owned(),
        config_map: Some(ConfigMapVolumeSource {
            name: config_map.to_owned(),
            default_mode: Some(0o444),
            ..ConfigMapVolumeSource::default()
        }),
        ..Volume::default()
    }
}

/// A Secret mounted as files readable by the pod's group only (the fsGroup).
pub fn secret_volume(name: &str, secret: &str) -> Volume {
    Volume {
        name: name.to_owned(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret.to_owned()),
            default_mode: Some(0o440),
            optional: Some(false),
            ..SecretVolumeSource::default()
        }),
        ..Volume::default()
    }
}

/// Scratch space in memory for the paths a read-only root filesystem leaves unwritable.
pub fn empty_dir_volume(name: &str) -> Volume {
    Volume {
        name: name.to_owned(),
        empty_dir: Some(EmptyDirVolumeSource {
            medium: Some("Memory".to_owned()),
            size_limit: Some(Quantity("64Mi".to_owned())),
            ..EmptyDirVolumeSource::default()
        }),
        ..Volume::default()
    }
}

pub fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.to_owned(),
        mount_path: path.to_owned(),
        read_only: Some(read_only),
        ..VolumeMount::default()
    }
}

/// Modest requests for sidecars, so that they never starve the main container.
pub fn sidecar_resources() -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_owned(), Quantity("50m".to_owned())),
            ("memory".to_owned(), Quantity("64Mi".to_owned())),
        ])),
        limits: Some(BTreeMap::from([(
            "memory".to_owned(),
            Quantity("128Mi".to_owned()),
        )])),
        ..ResourceRequirements::default()
    }
}

/// A container with the restricted security context of `uid`.
pub fn container(name: &str, image: &str, uid: i64, read_only_root: bool) -> Container {
    Container {
        name: name.to_owned(),
        image: Some(image.to_owned()),
        image_pull_policy: Some("IfNotPresent".to_owned()),
        security_context: Some(container_security_context(uid, read_only_root)),
        ..Container::default()
    }
}

/// The fully qualified DNS name of pod `ordinal` of a StatefulSet behind its headless Service.
pub fn pod_fqdn(cluster: &ValidCluster, component: Component, ordinal: i32) -> String {
    format!(
        "{}.{}.{}.svc.{CLUSTER_DOMAIN}",
        cluster.names.pod(component, ordinal),
        cluster.names.workload(component),
        cluster.namespace
    )
}

/// Quotes `text` as one word for a POSIX shell.
pub fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// A one-shot Job of a component (forming a Redis Cluster): restricted,
/// no service-account token, retried on failure and bounded to an hour. Its pod template is
/// immutable, so callers put a hash of what the Job does in `name`: a changed task is a new Job.
// Each argument is one independent field of the Job; a struct of them would only rename them.
#[allow(clippy::too_many_arguments)]
pub fn one_shot_job(
    cluster: &ValidCluster,
    name: &str,
    component: Component,
    labels: BTreeMap<String, String>,
    container: Container,
    run_as: i64,
    backoff_limit: i32,
    volumes: Vec<Volume>,
) -> Job {
    let mut metadata = object_meta(cluster, name, component);
    metadata.labels = Some(labels.clone());
    Job {
        metadata,
        spec: Some(JobSpec {
            backoff_limit: Some(backoff_limit),
            active_deadline_seconds: Some(3600),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    restart_policy: Some("OnFailure".to_owned()),
                    security_context: Some(pod_security_context(run_as)),
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    volumes: Some(volumes),
                    ..PodSpec::default()
                }),
            },
            ..JobSpec::default()
        }),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_covers_names_and_contents() {
        let base = config_hash(&[("a", "x"), ("b", "y")]);
        assert_eq!(base.len(), 64);
        assert_eq!(base, config_hash(&[("a", "x"), ("b", "y")]));
        assert_ne!(base, config_hash(&[("a", "xb"), ("", "y")]));
        assert_ne!(base, config_hash(&[("a", "x"), ("b", "z")]));
    }

    #[test]
    fn shell_quoting_survives_single_quotes() {
        assert_eq!(shell_quote("a'b"), r"'a'\''b'");
    }
}
