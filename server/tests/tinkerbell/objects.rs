//! What Dragonfly writes, checked against the CRDs of Tinkerbell v0.25 and legacy tink
//! v0.12.2; the upstream examples read into the typed structs; the RBAC file.

use dragonfly::tinkerbell::Finish;
use dragonfly::tinkerbell::disks::DiskRef;
use dragonfly::tinkerbell::objects::{self, MachineFacts};
use dragonfly::tinkerbell::progress::{Progress, State};
use dragonfly::tinkerbell::resources::{Hardware, Template, Workflow, WorkflowStatus};
use dragonfly::tinkerbell::templates::{
    DISK, HOSTNAME_LINE, OsFacts, TemplateSettings, TinkTemplate, WORKER,
};
use dragonfly_proto::{Disk, Nic, Transport};
use serde_json::{Value, json};

use super::NS;
use super::schema::{crd_schema, errors};

const CURRENT: [&str; 3] = [
    include_str!("crds/tinkerbell.org_hardware.yaml"),
    include_str!("crds/tinkerbell.org_templates.yaml"),
    include_str!("crds/tinkerbell.org_workflows.yaml"),
];
const LEGACY: [&str; 3] = [
    include_str!("crds/legacy-tink-v0.12.2/tinkerbell.org_hardware.yaml"),
    include_str!("crds/legacy-tink-v0.12.2/tinkerbell.org_templates.yaml"),
    include_str!("crds/legacy-tink-v0.12.2/tinkerbell.org_workflows.yaml"),
];

/// Asserts `v` is valid for the CRD number `i` (0 Hardware, 1 Template, 2 Workflow) of both
/// Tinkerbell versions.
fn assert_valid(i: usize, v: &Value) {
    for (version, crds) in [("v0.25", &CURRENT), ("legacy v0.12.2", &LEGACY)] {
        let e = errors(&crd_schema(crds[i]), v);
        assert!(e.is_empty(), "invalid for the {version} CRD: {e:#?}\n{v:#}");
    }
}

fn machines() -> Vec<MachineFacts> {
    let base = MachineFacts {
        id: "0b6e8f0e-7d3c-4a8e-9f51-2f4f3c1d0001".into(),
        mac: "52:54:00:AA:00:01".into(),
        hostname: Some("rack1-node01".into()),
        arch: Some("x86_64".into()),
        uefi: true,
        nics: vec![Nic {
            name: "enp1s0".into(),
            mac: "52:54:00:aa:00:01".into(),
            addresses: vec!["192.0.2.10/24".into(), "2001:db8::10/64".into()],
            boot: true,
            ..Default::default()
        }],
        disks: vec![
            Disk {
                name: "nvme0n1".into(),
                model: Some("Samsung SSD 980 PRO 1TB".into()),
                serial: Some("S5GXNF0R123456".into()),
                wwn: Some("eui.002538b911b2c3d4".into()),
                transport: Some(Transport::Nvme),
                size_bytes: 1 << 40,
                ..Default::default()
            },
            Disk {
                name: "sda".into(),
                serial: Some("ZA1B2C3D".into()),
                wwn: Some("naa.5000c500a1b2c3d4".into()),
                transport: Some(Transport::Sata),
                size_bytes: 1 << 41,
                ..Default::default()
            },
            Disk {
                name: "vda".into(),
                serial: Some("VIRTIO-1".into()),
                transport: Some(Transport::Virtio),
                size_bytes: 1 << 34,
                ..Default::default()
            },
        ],
        target: None,
    };
    let mut bios_no_ip = base.clone();
    bios_no_ip.uefi = false;
    bios_no_ip.hostname = None;
    bios_no_ip.nics[0].addresses.clear();
    bios_no_ip.target = Some(DiskRef::Serial("VIRTIO-1".into()));
    let mut arm = base.clone();
    arm.arch = Some("aarch64".into());
    arm.target = Some(DiskRef::Wwn("naa.5000c500a1b2c3d4".into()));
    vec![base, bios_no_ip, arm]
}

fn catalogue() -> Vec<OsFacts> {
    let os = |slug: &str, family: &str, version: &str, url: &str| OsFacts {
        slug: slug.into(),
        name: slug.into(),
        family: family.into(),
        version: version.into(),
        arch: "x86_64".into(),
        image_url: url.into(),
    };
    vec![
        os(
            "ubuntu-22.04",
            "ubuntu",
            "22.04",
            "https://images.example/jammy-server-cloudimg-amd64.img",
        ),
        os(
            "ubuntu-24.04",
            "ubuntu",
            "24.04",
            "https://images.example/noble-server-cloudimg-amd64.img",
        ),
        os(
            "debian-12",
            "debian",
            "12",
            "https://images.example/debian-12-generic-amd64.raw",
        ),
        os(
            "debian-13",
            "debian",
            "13",
            "https://images.example/debian-13-generic-amd64.raw",
        ),
        os(
            "rocky-9",
            "rocky",
            "9",
            "https://images.example/rocky-9.raw.xz",
        ),
    ]
}

fn settings_variants() -> Vec<TemplateSettings> {
    let base = TemplateSettings::default();
    vec![
        base.clone(),
        TemplateSettings {
            finish: Finish::Kexec,
            metadata_url: Some("http://192.0.2.1:7172".into()),
            ..base.clone()
        },
        TemplateSettings {
            waitdaemon_image: None,
            finish: Finish::Kexec,
            ..base
        },
    ]
}

#[test]
fn every_object_dragonfly_writes_is_valid_for_both_crd_versions() {
    let mut checked = 0;
    for m in machines() {
        let registration = objects::hardware(&m, None, NS).unwrap();
        assert_valid(0, &serde_json::to_value(&registration).unwrap());
        for os in catalogue() {
            let hw = objects::hardware(&m, Some(&os), NS).unwrap();
            assert_valid(0, &serde_json::to_value(&hw).unwrap());
            let wf = objects::workflow(&m, &os, NS).unwrap();
            assert_valid(2, &serde_json::to_value(&wf).unwrap());
            for s in settings_variants() {
                let t = objects::template(&os, &s, NS).unwrap();
                assert_valid(1, &serde_json::to_value(&t).unwrap());
                // What `render` prints is the same objects.
                let yaml = objects::render_yaml(&hw, &t, &wf).unwrap();
                let docs: Vec<Value> = yaml
                    .split("---\n")
                    .filter(|d| !d.trim().is_empty())
                    .map(|d| serde_yaml::from_str(d).unwrap())
                    .collect();
                assert_eq!(docs[0], serde_json::to_value(&hw).unwrap());
                assert_eq!(docs[1], serde_json::to_value(&t).unwrap());
                assert_eq!(docs[2], serde_json::to_value(&wf).unwrap());
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 3 * 5 * 3);
}

#[test]
fn every_object_carries_the_managed_by_label() {
    let m = &machines()[0];
    let os = &catalogue()[1];
    let hw = serde_json::to_value(objects::hardware(m, Some(os), NS).unwrap()).unwrap();
    let t = serde_json::to_value(objects::template(os, &TemplateSettings::default(), NS).unwrap())
        .unwrap();
    let wf = serde_json::to_value(objects::workflow(m, os, NS).unwrap()).unwrap();
    for v in [&hw, &t, &wf] {
        assert_eq!(
            v["metadata"]["labels"]["app.kubernetes.io/managed-by"], "dragonfly",
            "{v:#}"
        );
        assert_eq!(v["metadata"]["namespace"], NS);
    }
    assert_eq!(
        hw["metadata"]["labels"]["dragonfly/machine-id"],
        m.id.as_str()
    );
    assert_eq!(
        wf["metadata"]["labels"]["dragonfly/machine-id"],
        m.id.as_str()
    );
    // The workflow ties the template to this machine's Hardware and MAC.
    assert_eq!(wf["spec"]["hardwareMap"]["device_1"], "52:54:00:aa:00:01");
    assert_eq!(wf["spec"]["hardwareRef"], hw["metadata"]["name"]);
    assert_eq!(wf["spec"]["templateRef"], t["metadata"]["name"]);
    // The Hardware says what Tinkerbell needs to boot and run the workflow.
    let iface = &hw["spec"]["interfaces"][0];
    assert_eq!(
        iface["netboot"],
        json!({"allowPXE": true, "allowWorkflow": true})
    );
    assert_eq!(iface["dhcp"]["arch"], "x86_64");
    assert_eq!(iface["dhcp"]["uefi"], true);
    assert_eq!(iface["dhcp"]["hostname"], "rack1-node01");
    assert_eq!(
        iface["dhcp"]["ip"],
        json!({"address": "192.0.2.10", "netmask": "255.255.255.0"})
    );
    let instance = &hw["spec"]["metadata"]["instance"];
    assert_eq!(instance["id"], m.id.as_str());
    assert_eq!(
        instance["operating_system"],
        json!({"distro": "ubuntu", "os_slug": "ubuntu-24.04", "version": "24.04"})
    );
}

/// Renders the Go-template expressions Dragonfly uses, the way Tinkerbell would for one
/// machine, failing on any other expression.
fn go_render(data: &str, hw: &Hardware, mac: &str) -> String {
    let disk = hw.spec.disks[0].device.clone().unwrap();
    let hostname = hw.spec.interfaces[0]
        .dhcp
        .as_ref()
        .and_then(|d| d.hostname.clone());
    let out = data.replace(WORKER, mac).replace(DISK, &disk).replace(
        HOSTNAME_LINE,
        &hostname
            .map(|h| format!("hostname: {h}"))
            .unwrap_or_default(),
    );
    assert!(
        !out.contains("{{"),
        "an expression Tinkerbell would see:\n{out}"
    );
    out
}

#[test]
fn templates_render_to_valid_tink_workflows_for_each_machine() {
    for m in machines() {
        for os in catalogue() {
            for s in settings_variants() {
                let hw = objects::hardware(&m, Some(&os), NS).unwrap();
                let t = objects::template(&os, &s, NS).unwrap();
                let data = t.spec.data.clone().unwrap();
                let mac = "52:54:00:aa:00:01";
                let rendered = go_render(&data, &hw, mac);
                let tink: TinkTemplate =
                    serde_yaml::from_str(&rendered).unwrap_or_else(|e| panic!("{e}\n{rendered}"));
                assert_eq!(tink.version, "0.1");
                assert!(tink.global_timeout > 0);
                assert_eq!(tink.name, t.metadata.name.clone().unwrap());
                let task = &tink.tasks[0];
                assert_eq!(task.worker, mac);
                let names: Vec<&str> = task.actions.iter().map(|a| a.name.as_str()).collect();
                let mut unique = names.clone();
                unique.sort_unstable();
                unique.dedup();
                assert_eq!(unique.len(), names.len(), "action names must be unique");
                assert_eq!(names[0], "stream-image");
                assert!(matches!(*names.last().unwrap(), "reboot" | "kexec"));
                for a in &task.actions {
                    assert!(a.timeout > 0 && !a.image.is_empty(), "{a:?}");
                }
                let stream = &task.actions[0];
                assert_eq!(stream.environment["IMG_URL"], os.image_url);
                let disk = &stream.environment["DEST_DISK"];
                assert!(disk.starts_with("/dev/disk/by-id/"), "{disk}");
                if let Some(DiskRef::Serial(s)) = &m.target {
                    assert!(disk.ends_with(s.as_str()), "{disk} is not the target");
                }
                // No kernel device names anywhere: they change between boots.
                for kernel_name in ["/dev/sd", "/dev/vd", "/dev/nvme0n1", "/dev/hd"] {
                    assert!(
                        !rendered.contains(kernel_name),
                        "{kernel_name} in\n{rendered}"
                    );
                }
                if let Some(ci) = task.actions.iter().find(|a| a.name == "write-cloud-init") {
                    assert_eq!(ci.environment["DEST_DISK"], format!("{disk}-part1"));
                    let cfg: Value = serde_yaml::from_str(&ci.environment["CONTENTS"]).unwrap();
                    assert!(cfg["datasource_list"].is_array(), "{cfg}");
                    match m.hostname.as_deref() {
                        Some(h) => assert_eq!(cfg["hostname"], h),
                        None => assert!(cfg.get("hostname").is_none()),
                    }
                    if let Some(url) = &s.metadata_url {
                        assert_eq!(cfg["datasource"]["Ec2"]["metadata_urls"][0], url.as_str());
                    }
                } else {
                    assert_eq!(os.family, "rocky", "only unknown systems skip cloud-init");
                }
            }
        }
    }
}

#[test]
fn ubuntu_cloud_images_are_converted_and_debian_raw_images_streamed() {
    let s = TemplateSettings::default();
    let image_of = |os: &OsFacts| {
        let data = objects::template(os, &s, NS).unwrap().spec.data.unwrap();
        let t: TinkTemplate = serde_yaml::from_str(&data).unwrap();
        t.tasks[0].actions[0].image.clone()
    };
    let c = catalogue();
    assert!(
        image_of(&c[1]).contains("/qemuimg2disk:"),
        "Ubuntu .img files are QCOW2"
    );
    assert!(image_of(&c[2]).contains("/image2disk:"));
}

/// The playground files hold shell placeholders its scripts fill in with envsubst.
fn substitute(text: &str) -> String {
    let vars = [
        ("$DISK_DEVICE", "/dev/sda"),
        ("$TINKERBELL_CLIENT_MAC", "08:00:27:9e:f5:3a"),
        ("$TINKERBELL_CLIENT_IP", "192.0.2.43"),
        ("$TINKERBELL_CLIENT_ARCH", "x86_64"),
        ("$TINKERBELL_CLIENT_PLATFORM", "amd64"),
        ("$TINKERBELL_HOST_IP", "192.0.2.4"),
    ];
    let mut out = text.to_string();
    for (k, v) in vars {
        out = out.replace(k, v);
    }
    out
}

fn yaml(text: &str) -> Value {
    serde_yaml::from_str(&substitute(text)).unwrap()
}

#[test]
fn the_examples_read_into_the_typed_structs_without_losing_a_field() {
    let hardware = [
        include_str!("examples/playground-hardware.yaml"),
        include_str!("examples/tink-example-hardware.yaml"),
    ];
    for text in hardware {
        let v = yaml(text);
        assert_valid(0, &v);
        let hw: Hardware = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(
            serde_json::to_value(&hw).unwrap(),
            v,
            "a Hardware field was lost"
        );
        assert!(
            hw.spec.interfaces[0]
                .netboot
                .as_ref()
                .unwrap()
                .allow_workflow
                == Some(true)
        );
    }
    let templates = [
        include_str!("examples/playground-ubuntu-template.yaml"),
        include_str!("examples/tink-example-debian-template.yaml"),
    ];
    for text in templates {
        let v = yaml(text);
        assert_valid(1, &v);
        let t: Template = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(
            serde_json::to_value(&t).unwrap(),
            v,
            "a Template field was lost"
        );
    }
    // The tink example's data has no Go control structures: it reads as a TinkTemplate,
    // with the same keys Dragonfly writes.
    let debian: Template = serde_json::from_value(yaml(templates[1])).unwrap();
    let tink: TinkTemplate = serde_yaml::from_str(debian.spec.data.as_deref().unwrap()).unwrap();
    assert_eq!(tink.tasks[0].worker, WORKER);
    assert_eq!(tink.tasks[0].actions[0].environment["COMPRESSED"], "true");
    assert_eq!(
        tink.tasks[0].actions.last().unwrap().pid.as_deref(),
        Some("host")
    );
    let workflows = [
        include_str!("examples/playground-workflow.yaml"),
        include_str!("examples/tink-example-workflow.yaml"),
    ];
    for text in workflows {
        let v = yaml(text);
        assert_valid(2, &v);
        let wf: Workflow = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(
            serde_json::to_value(&wf).unwrap(),
            v,
            "a Workflow field was lost"
        );
        assert!(wf.spec.hardware_map.contains_key("device_1"));
    }
}

pub use super::status::{current_status, legacy_status};

#[test]
fn both_status_shapes_match_their_crds_and_mean_the_same() {
    let actions = [
        ("stream-image", "SUCCESS"),
        ("write-cloud-init", "RUNNING"),
        ("reboot", "PENDING"),
    ];
    let wf = |status: Value| {
        json!({"apiVersion": "tinkerbell.org/v1alpha1", "kind": "Workflow",
               "metadata": {"name": "w"}, "spec": {"templateRef": "t"}, "status": status})
    };
    let current = wf(current_status("RUNNING", &actions));
    let legacy = wf(legacy_status("RUNNING", &actions));
    assert_eq!(
        errors(&crd_schema(CURRENT[2]), &current),
        Vec::<String>::new()
    );
    assert_eq!(
        errors(&crd_schema(LEGACY[2]), &legacy),
        Vec::<String>::new()
    );
    // Each shape is specific to its version: the fixtures are not accidentally generic.
    assert!(!errors(&crd_schema(LEGACY[2]), &current).is_empty());
    assert!(!errors(&crd_schema(CURRENT[2]), &legacy).is_empty());
    let p = |v: &Value| {
        let s: WorkflowStatus = serde_json::from_value(v["status"].clone()).unwrap();
        Progress::of(Some(&s))
    };
    let (pc, pl) = (p(&current), p(&legacy));
    assert_eq!(pc.state, State::Running);
    assert_eq!(pc, pl);
    assert_eq!(pc.current.as_deref(), Some("write-cloud-init"));
    assert_eq!(pc.actions[1].started_ms, Some(1_735_725_600_000));
}

#[test]
fn the_checked_in_rbac_manifest_is_the_generated_one() {
    let generated = dragonfly::tinkerbell::rbac::manifests(NS);
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/tinkerbell-rbac.yaml"
    );
    if std::env::var_os("DRAGONFLY_BLESS").is_some() {
        std::fs::write(path, &generated).unwrap();
    }
    let checked_in = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        generated == checked_in,
        "deploy/tinkerbell-rbac.yaml is stale: run `dragonfly tinkerbell manifests > \
         deploy/tinkerbell-rbac.yaml`\n--- generated:\n{generated}"
    );
}

#[test]
fn the_checked_in_deployment_is_the_generated_one() {
    let mut generated = dragonfly::tinkerbell::rbac::manifests(NS);
    generated.push_str(&dragonfly::tinkerbell::deploy::manifests(
        NS,
        concat!("dragonfly:", env!("CARGO_PKG_VERSION")),
    ));
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/dragonfly.yaml");
    if std::env::var_os("DRAGONFLY_BLESS").is_some() {
        std::fs::write(path, &generated).unwrap();
    }
    let checked_in = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        generated == checked_in,
        "deploy/dragonfly.yaml is stale: run `dragonfly tinkerbell manifests --deploy > \
         deploy/dragonfly.yaml`\n--- generated:\n{generated}"
    );
}
