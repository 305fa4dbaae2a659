//! Pods under the `restricted` Pod Security level: a Deployment of the lane's own probe image
//! serves HTTP behind a Service, and another pod finds it by the Service's name through cluster
//! DNS and gets its answer; the host reaches it through the ClusterIP too.

use super::*;

fn labels(app: &str) -> BTreeMap<String, String> {
    BTreeMap::from([("app.kubernetes.io/name".to_string(), app.to_string())])
}

/// What the `restricted` Pod Security level asks of a pod: a numeric non-root user (the
/// image's own), the runtime's default seccomp profile.
fn restricted_pod() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(65532),
        run_as_group: Some(65532),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".to_string(),
            ..SeccompProfile::default()
        }),
        ..PodSecurityContext::default()
    }
}

/// ... and of each container: no privilege escalation, no capability; the root file system
/// read-only on top.
fn restricted_container() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_string()]),
            ..Capabilities::default()
        }),
        read_only_root_filesystem: Some(true),
        ..SecurityContext::default()
    }
}

fn probe_container(lane: &Lane, name: &str, args: &[&str]) -> Container {
    Container {
        name: name.to_string(),
        image: Some(lane.probe_image.clone()),
        // No registry: the image is already in the node's containerd.
        image_pull_policy: Some("Never".to_string()),
        args: Some(args.iter().map(|a| a.to_string()).collect()),
        security_context: Some(restricted_container()),
        ..Container::default()
    }
}

fn server_deployment(lane: &Lane) -> Deployment {
    let mut container = probe_container(lane, "web", &["serve", &format!(":{PORT}")]);
    container.ports = Some(vec![ContainerPort {
        name: Some("http".to_string()),
        container_port: PORT,
        ..ContainerPort::default()
    }]);
    container.readiness_probe = Some(Probe {
        http_get: Some(HTTPGetAction {
            path: Some("/".to_string()),
            port: IntOrString::Int(PORT),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(1),
        ..Probe::default()
    });
    Deployment {
        metadata: ObjectMeta {
            name: Some(SERVER.to_string()),
            ..ObjectMeta::default()
        },
        spec: DeploymentSpec {
            replicas: Some(1),
            selector: LabelSelector {
                match_labels: Some(labels(SERVER)),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(SERVER)),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    security_context: Some(restricted_pod()),
                    automount_service_account_token: Some(false),
                    termination_grace_period_seconds: Some(5),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        },
        ..Deployment::default()
    }
}

fn server_service() -> Service {
    Service {
        metadata: ObjectMeta {
            name: Some(SERVER.to_string()),
            ..ObjectMeta::default()
        },
        spec: Some(ServiceSpec {
            selector: Some(labels(SERVER)),
            ports: Some(vec![ServicePort {
                name: Some("http".to_string()),
                port: 80,
                target_port: Some(IntOrString::String("http".to_string())),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// A pod that resolves the Service by its short name (the pod's DNS search path, as the
/// kubelet writes it, finds `probe-web.NAMESPACE.svc.cluster.local`) and GETs it.
fn client_pod(lane: &Lane) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(CLIENT.to_string()),
            labels: Some(labels(CLIENT)),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            containers: vec![probe_container(
                lane,
                "get",
                &[
                    "get",
                    &format!("http://{SERVER}/"),
                    "probe probe-web-",
                    "60",
                ],
            )],
            security_context: Some(restricted_pod()),
            automount_service_account_token: Some(false),
            restart_policy: Some("Never".to_string()),
            ..PodSpec::default()
        }),
        ..Pod::default()
    }
}

#[tokio::test]
#[ignore = "needs a real node: scripts/e2e --node cargo test ... -- --include-ignored (scripts/test runs it)"]
async fn a_pod_reaches_another_by_its_service_name_through_cluster_dns() {
    let Some(lane) = lane().await else { return };
    let started = Instant::now();
    let suffix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock after 1970")
        .subsec_nanos();
    let namespace = format!("node-smoke-{suffix:08x}");

    // Pod Security enforced on the namespace: a pod that is not `restricted` is refused at
    // creation (the Deployment's would never appear), so both pods running proves they are.
    let namespaces: Api<Namespace> = Api::all(lane.client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &Namespace {
                metadata: ObjectMeta {
                    name: Some(namespace.clone()),
                    labels: Some(BTreeMap::from([
                        (
                            "pod-security.kubernetes.io/enforce".to_string(),
                            "restricted".to_string(),
                        ),
                        (
                            "pod-security.kubernetes.io/enforce-version".to_string(),
                            "latest".to_string(),
                        ),
                    ])),
                    ..ObjectMeta::default()
                },
                ..Namespace::default()
            },
        )
        .await
        .expect("namespace created");

    let deployments: Api<Deployment> = Api::namespaced(lane.client.clone(), &namespace);
    let services: Api<Service> = Api::namespaced(lane.client.clone(), &namespace);
    let pods: Api<Pod> = Api::namespaced(lane.client.clone(), &namespace);
    let slices: Api<EndpointSlice> = Api::namespaced(lane.client.clone(), &namespace);

    // The level is enforced: the same pod without its security settings is refused.
    let mut loose = client_pod(&lane);
    loose.metadata.name = Some("loose".to_string());
    if let Some(spec) = loose.spec.as_mut() {
        spec.security_context = None;
        spec.containers[0].security_context = None;
    }
    let refused = pods
        .create(&PostParams::default(), &loose)
        .await
        .expect_err("a pod without the restricted settings refused");
    assert!(
        refused.to_string().contains("violates PodSecurity"),
        "{refused}"
    );

    deployments
        .create(&PostParams::default(), &server_deployment(&lane))
        .await
        .expect("the server's Deployment created");
    let service = services
        .create(&PostParams::default(), &server_service())
        .await
        .expect("the Service created");
    let cluster_ip = service
        .spec
        .and_then(|spec| spec.cluster_ip)
        .expect("the Service's ClusterIP");

    let server_pod = wait_for("the server pod Ready on the node", || {
        let pods = pods.clone();
        let node = lane.node.clone();
        async move {
            let list = pods
                .list(&ListParams::default().labels("app.kubernetes.io/name=probe-web"))
                .await
                .ok()?;
            list.items.into_iter().find(|pod| {
                let spec_node = pod.spec.as_ref().and_then(|s| s.node_name.as_deref());
                let ready = pod
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
                spec_node == Some(node.as_str()) && ready
            })
        }
    })
    .await;
    let server_name = server_pod.metadata.name.clone().expect("a pod name");
    let server_ip = server_pod
        .status
        .and_then(|s| s.pod_ip)
        .expect("the server pod's IP");
    println!(
        "{server_name} Ready at {server_ip} on {} after {:.1}s",
        lane.node,
        started.elapsed().as_secs_f64()
    );

    wait_for("the Service's ready endpoint", || {
        let slices = slices.clone();
        let server_ip = server_ip.clone();
        async move {
            let list = slices
                .list(&ListParams::default().labels("kubernetes.io/service-name=probe-web"))
                .await
                .ok()?;
            list.items
                .iter()
                .flat_map(|slice| slice.endpoints.iter().flatten())
                .any(|e| {
                    e.addresses.contains(&server_ip)
                        && e.conditions.as_ref().and_then(|c| c.ready) == Some(true)
                })
                .then_some(())
        }
    })
    .await;

    // The host through the ClusterIP: kube-proxy's rules rewrite it to the pod.
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()
        .expect("an HTTP client");
    let url = format!("http://{cluster_ip}/");
    let body = wait_for(&format!("{url} answering from the host"), || {
        let http = http.clone();
        let url = url.clone();
        async move { http.get(&url).send().await.ok()?.text().await.ok() }
    })
    .await;
    assert_eq!(body.trim(), format!("probe {server_name}"), "{url}");

    // Another pod, by the Service's name.
    let client_started = Instant::now();
    pods.create(&PostParams::default(), &client_pod(&lane))
        .await
        .expect("the client pod admitted as restricted");
    let (phase, message) = wait_for("the client pod to finish", || {
        let pods = pods.clone();
        async move {
            let status = pods.get(CLIENT).await.ok()?.status?;
            let phase = status.phase.clone()?;
            if phase != "Succeeded" && phase != "Failed" {
                return None;
            }
            let message = status
                .container_statuses
                .unwrap_or_default()
                .into_iter()
                .find_map(|c| c.state?.terminated?.message)
                .unwrap_or_default();
            Some((phase, message))
        }
    })
    .await;
    println!(
        "{CLIENT}: {phase} after {:.1}s: {message}",
        client_started.elapsed().as_secs_f64()
    );
    assert_eq!(phase, "Succeeded", "{CLIENT}: {message}");
    assert!(
        message.contains(&format!("{SERVER} resolved to {cluster_ip};")),
        "the name must resolve to the Service's ClusterIP {cluster_ip}: {message}"
    );
    assert!(
        message.contains(&format!("probe {server_name}")),
        "the answer must come from {server_name}: {message}"
    );

    namespaces
        .delete(&namespace, &DeleteParams::default())
        .await
        .expect("namespace deleted");
    println!(
        "node lane smoke test passed in {:.1}s",
        started.elapsed().as_secs_f64()
    );
}
