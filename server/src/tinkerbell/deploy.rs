//! Dragonfly running in the cluster next to Tinkerbell: the PersistentVolumeClaim for
//! `sqlite.db`, the Deployment (one replica: SQLite has one writer) and the Services (HTTP,
//! TFTP).
//! `deploy/dragonfly.yaml` is this module's output together with the RBAC manifests.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource,
    HTTPGetAction, PersistentVolumeClaim, PersistentVolumeClaimSpec,
    PersistentVolumeClaimVolumeSource, PodSecurityContext, PodSpec, PodTemplateSpec, Probe,
    SecretKeySelector, SecurityContext, Service, ServicePort, ServiceSpec, Volume, VolumeMount,
    VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::core::ObjectMeta;

use super::MANAGED_BY;
use super::rbac::NAME;

/// The Secret (created by the operator, never generated) holding the enrollment secret.
pub const ENROLLMENT_SECRET: &str = "dragonfly-enrollment";
/// The HTTP port in the pod and on the Service.
pub const HTTP_PORT: i32 = 3000;

fn meta(namespace: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(NAME.into()),
        namespace: Some(namespace.into()),
        labels: Some(labels(true)),
        ..Default::default()
    }
}

fn labels(managed: bool) -> BTreeMap<String, String> {
    let mut l = BTreeMap::from([("app.kubernetes.io/name".to_string(), NAME.to_string())]);
    if managed {
        l.insert(MANAGED_BY.0.into(), MANAGED_BY.1.into());
    }
    l
}

fn probe(initial_delay: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some("/healthz".into()),
            port: IntOrString::Int(HTTP_PORT),
            ..Default::default()
        }),
        initial_delay_seconds: Some(initial_delay),
        period_seconds: Some(10),
        timeout_seconds: Some(2),
        ..Default::default()
    }
}

fn container(namespace: &str, image: &str) -> Container {
    let env = |name: &str, value: &str| EnvVar {
        name: name.into(),
        value: Some(value.into()),
        ..Default::default()
    };
    Container {
        name: NAME.into(),
        image: Some(image.into()),
        command: Some(vec!["/dragonfly".into()]),
        args: Some(
            [
                "--host",
                "0.0.0.0",
                "--port",
                &HTTP_PORT.to_string(),
                "--db",
                "/data/sqlite.db",
                "--boot-dir",
                "/data/netboot",
                // One word: a bare `on` is a boolean to YAML 1.1 readers such as kubectl's.
                "--tinkerbell=on",
                "--tinkerbell-namespace",
                namespace,
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        ),
        env: Some(vec![
            env("RUST_LOG", "info"),
            EnvVar {
                name: "DRAGONFLY_ENROLLMENT_SECRET".into(),
                value_from: Some(EnvVarSource {
                    secret_key_ref: Some(SecretKeySelector {
                        name: ENROLLMENT_SECRET.into(),
                        key: "secret".into(),
                        optional: Some(false),
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            },
        ]),
        ports: Some(vec![
            ContainerPort {
                name: Some("http".into()),
                container_port: HTTP_PORT,
                protocol: Some("TCP".into()),
                ..Default::default()
            },
            ContainerPort {
                name: Some("tftp".into()),
                container_port: 69,
                protocol: Some("UDP".into()),
                ..Default::default()
            },
        ]),
        readiness_probe: Some(probe(2)),
        liveness_probe: Some(probe(10)),
        volume_mounts: Some(vec![
            VolumeMount {
                name: "data".into(),
                mount_path: "/data".into(),
                ..Default::default()
            },
            // The root file system is read-only; SQLite may spill to /tmp.
            VolumeMount {
                name: "tmp".into(),
                mount_path: "/tmp".into(),
                ..Default::default()
            },
        ]),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            // TFTP's port 69 is below 1024; nothing else is needed.
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                add: Some(vec!["NET_BIND_SERVICE".into()]),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The PVC, Deployment and Services for `namespace`, as YAML documents (without the
/// `---` of the first).
pub fn manifests(namespace: &str, image: &str) -> String {
    let pvc = PersistentVolumeClaim {
        metadata: meta(namespace),
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_string(),
                    Quantity("1Gi".into()),
                )])),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let deployment = Deployment {
        metadata: meta(namespace),
        spec: Some(DeploymentSpec {
            // One writer of sqlite.db: never two pods at once, even during a rollout.
            replicas: Some(1),
            strategy: Some(DeploymentStrategy {
                type_: Some("Recreate".into()),
                ..Default::default()
            }),
            selector: LabelSelector {
                match_labels: Some(labels(false)),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(false)),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(NAME.into()),
                    security_context: Some(PodSecurityContext {
                        fs_group: Some(65534),
                        ..Default::default()
                    }),
                    containers: vec![container(namespace, image)],
                    volumes: Some(vec![
                        Volume {
                            name: "data".into(),
                            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                                claim_name: NAME.into(),
                                ..Default::default()
                            }),
                            ..Default::default()
                        },
                        Volume {
                            name: "tmp".into(),
                            empty_dir: Some(EmptyDirVolumeSource::default()),
                            ..Default::default()
                        },
                    ]),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        ..Default::default()
    };
    let port = |name: &str, port: i32, protocol: &str| ServicePort {
        name: Some(name.into()),
        port,
        protocol: Some(protocol.into()),
        target_port: Some(IntOrString::String(name.into())),
        ..Default::default()
    };
    // Machines on the provisioning network reach both here (as with Tinkerbell's own
    // services): give them addresses on that network. Two Services, because a LoadBalancer
    // mixing TCP and UDP needs Kubernetes 1.26 or later.
    let service = |name: &str, ports: Vec<ServicePort>| Service {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..meta(namespace)
        },
        spec: Some(ServiceSpec {
            type_: Some("LoadBalancer".into()),
            selector: Some(labels(false)),
            ports: Some(ports),
            ..Default::default()
        }),
        ..Default::default()
    };
    let http = service(NAME, vec![port("http", HTTP_PORT, "TCP")]);
    let tftp = service(&format!("{NAME}-tftp"), vec![port("tftp", 69, "UDP")]);
    let mut out = String::new();
    for doc in [
        serde_yaml::to_string(&pvc),
        serde_yaml::to_string(&deployment),
        serde_yaml::to_string(&http),
        serde_yaml::to_string(&tftp),
    ] {
        out.push_str("---\n");
        // Plain structs of strings and numbers: YAML output cannot fail for them.
        out.push_str(&doc.unwrap_or_default());
    }
    out
}
