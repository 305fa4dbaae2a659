//! ShanraqBackup proven through the API alone: real instance managers run the rendered
//! PostgreSQL pods of a cluster with `spec.backup` (`pods.rs`), pgBackRest in those pods talks
//! to a real S3 store (SeaweedFS with TLS and a random key pair) on the host's end of the pod
//! network, and the operator acts as the chart's ServiceAccount. The test looks at what a user
//! sees: the cluster's archiving and backup conditions, each ShanraqBackup's phase, condition,
//! label and instance, and the Argo CD health script's verdict on those objects. A backup taken
//! while the store refuses the cluster's key pair fails with pgBackRest's error, and the next
//! one, once the store accepts the pair again, completes. No key of the pair appears in any Event, status or the operator's log.

use std::net::Ipv4Addr;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Event, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, ListParams, PostParams};
use kube::core::ObjectMeta;
use kube::{Client, ResourceExt};
use serde::Serialize;
use shanraq_api::ShanraqCluster;
use shanraq_api::backup_request::{
    BackupType, PHASE_COMPLETED, PHASE_FAILED, PHASE_RUNNING, SUCCEEDED, ShanraqBackup,
    ShanraqBackupSpec,
};
use shanraq_api::conditions::{CONTINUOUS_ARCHIVING, LAST_BACKUP_SUCCEEDED};
use shanraq_api::status::BackupStatus;
use shanraq_testkit::{S3Listen, S3Server};

use super::operator::{OperatorOptions, OperatorProcess};
use super::pods::PodHost;
use super::{
    LONG, SHORT, TestNamespace, apply_cluster, client, condition, kubeconfig_path, manifest,
    pods_run_locally, repo_root, wait_every,
};

const CLUSTER: &str = "vault";
const INSTANCES: usize = 2;
/// The object store's name as the pods resolve it (`PodHost::resolve`, standing in for cluster
/// DNS); `.test` is reserved and never resolves anywhere else.
const S3_HOST: &str = "objects.shanraq-e2e.test";
const BUCKET: &str = "shanraq-e2e-backups";
const CREDENTIALS_SECRET: &str = "vault-object-store";
const CA_CONFIG_MAP: &str = "object-store-ca";
/// Not `ca.crt`: the pod must find the bundle where the rendered volume's `items` put it.
const CA_KEY: &str = "bundle.pem";
/// Backups and polls: a backup takes seconds, a failed one up to pgBackRest's I/O timeout.
const POLL: Duration = Duration::from_millis(500);

/// PostgreSQL alone (two instances, one synchronous standby) with backups to the test's store.
/// The schedules fire only on 1 January, so every backup here is one the test created.
fn vault(endpoint: &str) -> ShanraqCluster {
    manifest(&format!(
        "apiVersion: shanraq.org/v1alpha1
kind: ShanraqCluster
metadata:
  name: {CLUSTER}
spec:
  postgres:
    instances: {INSTANCES}
    synchronous:
      number: 1
  redis:
    enabled: false
  kafka:
    enabled: false
  haproxy:
    enabled: false
  backup:
    endpoint: {endpoint}
    bucket: {BUCKET}
    credentials:
      secretName: {CREDENTIALS_SECRET}
    tls:
      ca:
        configMap:
          name: {CA_CONFIG_MAP}
          key: {CA_KEY}
    archiveTimeout: 10s
    schedules:
      full: \"0 0 1 1 *\"
      differential: \"\"
"
    ))
}

/// The Argo CD health `(status, message)` of a live object, from the shipped script of `kind`.
fn argocd_health(kind: &str, object: &impl Serialize) -> (String, String) {
    let script = repo_root().join(format!("deploy/argocd/shanraq.org/{kind}/health.lua"));
    let object = serde_json::to_value(object).expect("JSON");
    shanraq_testkit::lua::argocd_health(&script, &object).expect("health.lua runs")
}

fn succeeded(backup: &ShanraqBackup) -> Option<Condition> {
    backup
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == SUCCEEDED)
        .cloned()
}

fn phase(backup: &ShanraqBackup) -> Option<&str> {
    backup.status.as_ref()?.phase.as_deref()
}

/// A ShanraqBackup of `cluster` through the API.
async fn create_backup(backups: &Api<ShanraqBackup>, name: &str, cluster: &str) -> ShanraqBackup {
    let object = ShanraqBackup::new(
        name,
        ShanraqBackupSpec {
            cluster: cluster.to_owned(),
            kind: BackupType::Full,
        },
    );
    backups
        .create(&PostParams::default(), &object)
        .await
        .unwrap_or_else(|error| panic!("ShanraqBackup {name} created: {error}"))
}

/// A ShanraqBackup as a user creates one: `kubectl create -f -` with YAML.
fn kubectl_create_backup(namespace: &str, name: &str, cluster: &str) {
    use std::io::Write;
    let yaml = format!(
        "apiVersion: shanraq.org/v1alpha1\nkind: ShanraqBackup\nmetadata:\n  name: {name}\n  \
         namespace: {namespace}\nspec:\n  cluster: {cluster}\n  type: full\n"
    );
    let mut child = std::process::Command::new("kubectl")
        .args(["create", "-f", "-"])
        .env("KUBECONFIG", kubeconfig_path().expect("kubeconfig"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl is installed (scripts/install-deps)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(yaml.as_bytes())
        .expect("YAML to kubectl");
    let output = child.wait_with_output().expect("kubectl create");
    assert!(
        output.status.success(),
        "kubectl create: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Waits until ShanraqBackup `name` is Completed or Failed; returns it.
async fn finished(backups: &Api<ShanraqBackup>, name: &str, timeout: Duration) -> ShanraqBackup {
    wait_every(
        &format!("ShanraqBackup {name} to finish"),
        timeout,
        POLL,
        || async {
            let backup = backups.get(name).await.ok()?;
            backup.status.as_ref()?.is_finished().then_some(backup)
        },
    )
    .await
}

/// A completed backup as the user reads it: `Completed`, `Succeeded=True`, pgBackRest's
/// label of a full backup, the instance a pod of the cluster; Argo CD says Healthy. Returns
/// the label.
fn assert_completed(backup: &ShanraqBackup) -> String {
    let name = backup.name_any();
    let status = backup.status.clone().expect("a status");
    assert_eq!(phase(backup), Some(PHASE_COMPLETED), "{name}: {status:?}");
    let condition = succeeded(backup).expect("the Succeeded condition");
    assert_eq!(condition.status, "True", "{name}: {condition:?}");
    assert_eq!(condition.observed_generation, backup.metadata.generation);
    let label = status.label.clone().expect("pgBackRest's label");
    // pgBackRest labels a full backup YYYYMMDD-HHMMSSF.
    let bytes = label.as_bytes();
    assert!(
        label.len() == 16
            && label.ends_with('F')
            && bytes[8] == b'-'
            && bytes[..8]
                .iter()
                .chain(&bytes[9..15])
                .all(u8::is_ascii_digit),
        "{name}: {label:?} is not a full backup's label"
    );
    let pods: Vec<String> = (0..INSTANCES)
        .map(|i| format!("{CLUSTER}-pg-{i}"))
        .collect();
    let instance = status.instance.clone().expect("status.instance");
    assert!(
        pods.contains(&instance),
        "{name}: {instance} is not one of {pods:?}"
    );
    assert!(
        status.started_at.is_some() && status.completed_at.is_some(),
        "{status:?}"
    );
    let (health, message) = argocd_health("ShanraqBackup", backup);
    assert_eq!(health, "Healthy", "{name}: {message}");
    assert_eq!(message, condition.message);
    label
}

/// Waits until the cluster's `LastBackupSucceeded` is `truth` naming ShanraqBackup `name`.
async fn last_backup_condition(
    clusters: &Api<ShanraqCluster>,
    name: &str,
    truth: &str,
) -> Condition {
    wait_every(
        &format!("LastBackupSucceeded={truth} for {name}"),
        LONG,
        POLL,
        || async {
            let cluster = clusters.get(CLUSTER).await.ok()?;
            condition(&cluster, LAST_BACKUP_SUCCEEDED).filter(|c| {
                c.status == truth && c.message.contains(&format!("ShanraqBackup {name} "))
            })
        },
    )
    .await
}

/// Waits until `status.backup.lastBackup` names `label` (from `pgbackrest info`).
async fn last_backup_label(clusters: &Api<ShanraqCluster>, label: &str) -> BackupStatus {
    wait_every(
        &format!("status.backup.lastBackup to be {label}"),
        LONG,
        POLL,
        || async {
            let backup = clusters.get(CLUSTER).await.ok()?.status?.backup?;
            (backup.last_backup.as_ref()?.label == label).then_some(backup)
        },
    )
    .await
}

/// Fails when a key of the pair appears in `text`, saying where.
fn assert_no_key(s3: &S3Server, text: &str, what: &str) {
    for (name, key) in [
        ("access key", s3.access_key()),
        ("secret key", s3.secret_key()),
    ] {
        assert!(!text.contains(key), "the S3 {name} appears in {what}");
    }
}

/// Every Event of the namespace, every ShanraqBackup's status and the cluster's status, as
/// JSON, and the operator's log: none holds a key of the pair.
async fn assert_no_key_anywhere(
    client: &Client,
    namespace: &str,
    s3: &S3Server,
    operator: &OperatorProcess,
) {
    let events: Api<Event> = Api::namespaced(client.clone(), namespace);
    let events = events.list(&ListParams::default()).await.expect("Events");
    assert!(!events.items.is_empty(), "the operator sent no Event");
    for event in &events.items {
        let text = serde_json::to_string(event).expect("JSON");
        assert_no_key(s3, &text, &format!("Event {}", event.name_any()));
    }
    let backups: Api<ShanraqBackup> = Api::namespaced(client.clone(), namespace);
    for backup in backups
        .list(&ListParams::default())
        .await
        .expect("backups")
        .items
    {
        let text = serde_json::to_string(&backup.status).expect("JSON");
        assert_no_key(
            s3,
            &text,
            &format!("ShanraqBackup {} status", backup.name_any()),
        );
    }
    let clusters: Api<ShanraqCluster> = Api::namespaced(client.clone(), namespace);
    let cluster = clusters.get(CLUSTER).await.expect("cluster");
    let text = serde_json::to_string(&cluster.status).expect("JSON");
    assert_no_key(s3, &text, "the ShanraqCluster status");
    assert_no_key(s3, &operator.log(), "the operator's log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shanraq_backups_run_through_the_api_and_a_failed_one_leaves_the_next_working() {
    let Some(client) = client().await else { return };
    if !pods_run_locally() {
        return;
    }
    let namespace = TestNamespace::create(&client, "backups").await;
    let ns = namespace.name.clone();
    let host = PodHost::start(&client, &ns);
    let gateway: Ipv4Addr = PodHost::gateway();
    let mut s3 = S3Server::start_on(
        BUCKET,
        S3Listen {
            addr: gateway,
            host: S3_HOST.to_owned(),
        },
    )
    .await
    .expect("the S3 store starts (scripts/install-s3-server builds it)");
    host.resolve(S3_HOST, gateway);

    // The user's Secret with the key pair and ConfigMap with the store's CA.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let credentials = Secret {
        metadata: ObjectMeta {
            name: Some(CREDENTIALS_SECRET.to_owned()),
            ..ObjectMeta::default()
        },
        string_data: Some(
            [
                ("ACCESS_KEY_ID".to_owned(), s3.access_key().to_owned()),
                ("SECRET_ACCESS_KEY".to_owned(), s3.secret_key().to_owned()),
            ]
            .into(),
        ),
        ..Secret::default()
    };
    secrets
        .create(&PostParams::default(), &credentials)
        .await
        .expect("the credentials Secret");
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let ca = ConfigMap {
        metadata: ObjectMeta {
            name: Some(CA_CONFIG_MAP.to_owned()),
            ..ObjectMeta::default()
        },
        data: Some([(CA_KEY.to_owned(), s3.ca_pem().expect("the CA"))].into()),
        ..ConfigMap::default()
    };
    config_maps
        .create(&PostParams::default(), &ca)
        .await
        .expect("the CA ConfigMap");

    let lease = format!("shanraq-{ns}");
    let operator = OperatorProcess::start(
        &client,
        OperatorOptions {
            namespace: &ns,
            lease: &lease,
            identity: "operator-0",
            ha: true,
        },
    )
    .await;
    apply_cluster(&client, &ns, &vault(&s3.endpoint())).await;
    let clusters: Api<ShanraqCluster> = Api::namespaced(client.clone(), &ns);
    let backups: Api<ShanraqBackup> = Api::namespaced(client.clone(), &ns);

    // Created with the cluster, as from Git: no status yet, then Running while the cluster
    // has no primary; Argo CD says Progressing for both.
    let early = create_backup(&backups, "vault-with-the-cluster", CLUSTER).await;
    assert!(early.status.is_none(), "{:?}", early.status);
    assert_eq!(argocd_health("ShanraqBackup", &early).0, "Progressing");
    let waiting = wait_every(
        "the early ShanraqBackup to wait for a primary",
        SHORT,
        POLL,
        || async {
            let backup = backups.get("vault-with-the-cluster").await.ok()?;
            (phase(&backup) == Some(PHASE_RUNNING)).then_some(backup)
        },
    )
    .await;
    let message = waiting
        .status
        .as_ref()
        .and_then(|s| s.message.clone())
        .unwrap_or_default();
    assert!(
        message.contains("no primary yet") || message.contains("does not reach"),
        "the early backup says why it waits: {message}"
    );
    let (health, health_message) = argocd_health("ShanraqBackup", &waiting);
    assert_eq!(health, "Progressing", "{health_message}");
    assert_eq!(health_message, message);

    host.run_postgres(CLUSTER, INSTANCES).await;
    wait_every("a healthy primary and its replica", LONG, POLL, || async {
        let postgres = clusters.get(CLUSTER).await.ok()?.status?.postgres?;
        let ready = postgres.instances.iter().filter(|i| i.ready).count();
        (postgres.phase.as_deref() == Some("Healthy") && ready == INSTANCES).then_some(())
    })
    .await;

    // WAL archiving to the store works, as the cluster's status says.
    let archived = wait_every(
        "ContinuousArchiving=True with a WAL segment archived",
        LONG,
        POLL,
        || async {
            let cluster = clusters.get(CLUSTER).await.ok()?;
            let archiving = condition(&cluster, CONTINUOUS_ARCHIVING)?;
            let backup = cluster.status?.backup?;
            (archiving.status == "True"
                && backup.last_archived_wal.is_some()
                && backup.last_archived_at.is_some())
            .then_some((archiving, backup))
        },
    )
    .await;
    println!(
        "{CONTINUOUS_ARCHIVING}: {}; lastArchivedWal {:?} at {:?}",
        archived.0.message, archived.1.last_archived_wal, archived.1.last_archived_at
    );

    let early = finished(&backups, "vault-with-the-cluster", LONG).await;
    let early_label = assert_completed(&early);
    println!(
        "vault-with-the-cluster: {early_label} on {:?}",
        early.status.as_ref().and_then(|s| s.instance.clone())
    );

    // A backup asked for with kubectl.
    kubectl_create_backup(&ns, "vault-by-hand", CLUSTER);
    let by_hand = finished(&backups, "vault-by-hand", LONG).await;
    let label = assert_completed(&by_hand);
    assert_ne!(label, early_label, "a second backup has a label of its own");
    // With the cluster healthy, its replica streams: it takes the backup (backup-standby,
    // the primary's pgBackRest reached through its TLS server), not the primary.
    let primary = clusters
        .get(CLUSTER)
        .await
        .expect("the cluster")
        .status
        .and_then(|status| status.postgres)
        .and_then(|postgres| postgres.current_primary)
        .expect("a current primary");
    assert_ne!(
        by_hand.status.as_ref().and_then(|s| s.instance.clone()),
        Some(primary),
        "a streaming replica takes the backup"
    );
    println!(
        "vault-by-hand: {label} on {:?}, {:?} to {:?}",
        by_hand.status.as_ref().and_then(|s| s.instance.clone()),
        by_hand.status.as_ref().and_then(|s| s.started_at.clone()),
        by_hand.status.as_ref().and_then(|s| s.completed_at.clone())
    );
    let last = last_backup_condition(&clusters, "vault-by-hand", "True").await;
    assert!(last.message.contains(&label), "{last:?}");
    last_backup_label(&clusters, &label).await;

    // A backup of a cluster that does not exist fails, saying so; Argo CD says Degraded.
    create_backup(&backups, "ghost-backup", "ghost").await;
    let ghost = finished(&backups, "ghost-backup", SHORT).await;
    assert_eq!(phase(&ghost), Some(PHASE_FAILED));
    let refused = succeeded(&ghost).expect("the Succeeded condition");
    assert_eq!(refused.status, "False", "{refused:?}");
    assert!(
        refused.message.contains("no ShanraqCluster ghost"),
        "{refused:?}"
    );
    assert_eq!(
        argocd_health("ShanraqBackup", &ghost),
        ("Degraded".to_owned(), refused.message.clone())
    );

    // The store stops accepting the cluster's key pair (rotated at the store, not in the
    // Secret): the next backup fails with pgBackRest's own error, which names no key, and the
    // cluster's LastBackupSucceeded turns False. (A store that is down entirely fails a backup
    // only after pgBackRest's connection retries, minutes later.)
    s3.refuse_keys(true)
        .await
        .expect("the S3 store restarts refusing the pair");
    create_backup(&backups, "vault-keys-refused", CLUSTER).await;
    let down = finished(&backups, "vault-keys-refused", LONG).await;
    let failure = succeeded(&down).expect("the Succeeded condition");
    assert_eq!(phase(&down), Some(PHASE_FAILED), "{failure:?}");
    assert_eq!(failure.status, "False");
    println!("vault-keys-refused: {}", failure.message);
    assert!(
        failure.message.contains("pgbackrest") && failure.message.contains("ERROR: ["),
        "the condition carries pgBackRest's error: {}",
        failure.message
    );
    assert!(failure.message.contains("403"), "{}", failure.message);
    assert_no_key(&s3, &failure.message, "the failed backup's condition");
    assert_eq!(
        argocd_health("ShanraqBackup", &down),
        ("Degraded".to_owned(), failure.message.clone())
    );
    let last = last_backup_condition(&clusters, "vault-keys-refused", "False").await;
    assert_no_key(&s3, &last.message, "LastBackupSucceeded");

    // The store accepts the pair again: the next backup completes, and the cluster says so.
    s3.refuse_keys(false)
        .await
        .expect("the S3 store restarts on its data with the pair");
    create_backup(&backups, "vault-keys-accepted", CLUSTER).await;
    let back = finished(&backups, "vault-keys-accepted", LONG).await;
    let back_label = assert_completed(&back);
    assert!(
        back_label != label && back_label != early_label,
        "{back_label}"
    );
    let last = last_backup_condition(&clusters, "vault-keys-accepted", "True").await;
    assert!(last.message.contains(&back_label), "{last:?}");
    let status = last_backup_label(&clusters, &back_label).await;
    println!(
        "vault-keys-accepted: {back_label}; status.backup.lastBackup {:?}, firstRecoverabilityPoint {:?}",
        status.last_backup, status.first_recoverability_point
    );
    // With the store accepting the pair and archiving again, Argo CD shows the cluster Healthy.
    wait_every(
        "the cluster to be Healthy in Argo CD",
        LONG,
        POLL,
        || async {
            let cluster = clusters.get(CLUSTER).await.ok()?;
            let archiving = condition(&cluster, CONTINUOUS_ARCHIVING)?;
            (archiving.status == "True" && argocd_health("ShanraqCluster", &cluster).0 == "Healthy")
                .then_some(())
        },
    )
    .await;

    // Each ShanraqBackup was carried out once: its finished status never changed afterwards
    // (a second run would have replaced its label and times), and the repository's newest
    // backup is the last one's.
    let last = last_backup_label(&clusters, &back_label).await;
    assert_eq!(last.last_backup.map(|b| b.label), Some(back_label.clone()));
    for first_seen in [&early, &by_hand, &ghost, &down, &back] {
        let name = first_seen.name_any();
        let now = backups.get(&name).await.expect("the ShanraqBackup");
        assert_eq!(
            now.status, first_seen.status,
            "ShanraqBackup {name} changed after it finished"
        );
    }

    assert_no_key_anywhere(&client, &ns, &s3, &operator).await;
    operator.stop().await;
    drop(host);
    drop(s3);
}
