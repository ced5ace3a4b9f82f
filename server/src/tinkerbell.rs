//! The Tinkerbell backend: the custom resources of `tinkerbell.org` (Hardware, Template,
//! Workflow) as typed values, the builders that turn a machine's facts into them, the writer
//! that applies them to a cluster, and the workflow follower that turns Workflow status into
//! a stream of plain [`follow::WorkflowUpdate`] values.
//!
//! This module never imports `machines/`: the glue in `provision.rs` hands it plain facts
//! ([`objects::MachineFacts`]) and consumes the updates it yields.

pub mod deploy;
pub mod disks;
pub mod follow;
pub mod objects;
pub mod progress;
pub mod rbac;
pub mod resources;
pub mod templates;
pub mod writer;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

pub use crate::config::{ClusterArgs, Finish, Mode, TinkerbellArgs, TinkerbellCommand};
pub use follow::{BootSignal, FollowOptions, Phase, WorkflowUpdate};
pub use resources::{Hardware, Template, Workflow};
pub use templates::TemplateSettings;

/// Label on everything Dragonfly writes to the cluster.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "dragonfly");
/// Label naming the Dragonfly machine a Hardware or Workflow belongs to.
pub const MACHINE_ID_LABEL: &str = "dragonfly/machine-id";
/// Which Dragonfly (which database) owns a Hardware or Workflow: one never changes or deletes
/// another's.
pub const INSTANCE_LABEL: &str = "dragonfly/instance";
/// Annotation naming the catalogue OS a Template or Workflow installs.
pub const OS_ANNOTATION: &str = "dragonfly/os";
/// Which install of its machine a Workflow is (see `Machines::install_generation`): a
/// finished Workflow of an earlier install is never taken for the current one.
pub const INSTALL_ANNOTATION: &str = "dragonfly/install";

/// Errors of the Tinkerbell backend. They carry no HTTP meaning.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// An object with Dragonfly's name exists but was not written by Dragonfly.
    #[error(
        "{kind} {namespace}/{name} exists and is not labelled {}={}: Dragonfly will not overwrite it",
        MANAGED_BY.0, MANAGED_BY.1
    )]
    NotManaged {
        kind: &'static str,
        namespace: String,
        name: String,
    },
    /// The machine's facts do not allow an install (no usable disk, no boot NIC, ...).
    #[error("{0}")]
    Invalid(String),
    /// Someone else kept changing the object while Dragonfly tried to write it.
    #[error("{kind} {name}: {message}")]
    Busy {
        kind: &'static str,
        name: String,
        message: String,
    },
    /// Another Dragonfly (another database) owns the object.
    #[error(
        "{kind} {name} belongs to another Dragonfly ({}={instance}): this one will not change it",
        INSTANCE_LABEL
    )]
    OtherInstance {
        kind: &'static str,
        name: String,
        instance: String,
    },
}

impl Error {
    /// True when retrying later may succeed (API unreachable, 5xx, throttled).
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Kube(kube::Error::Api(e)) => e.code >= 500 || e.code == 429,
            Error::Kube(_) => true,
            Error::Busy { .. } => true,
            Error::NotManaged { .. } | Error::Invalid(_) | Error::OtherInstance { .. } => false,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A connection to the cluster that runs Tinkerbell, and what Dragonfly writes there.
/// Cheap to clone.
#[derive(Clone)]
pub struct Tinkerbell {
    client: kube::Client,
    namespace: String,
    settings: Arc<TemplateSettings>,
    final_action_timeout: Duration,
    reconcile_every: Duration,
    /// This Dragonfly's `dragonfly/instance` label value, once known.
    instance: Option<Arc<str>>,
}

impl Tinkerbell {
    /// A backend over an existing client (tests point one at a local fake API server).
    pub fn new(
        client: kube::Client,
        namespace: impl Into<String>,
        settings: TemplateSettings,
    ) -> Self {
        Tinkerbell {
            client,
            namespace: namespace.into(),
            settings: Arc::new(settings),
            final_action_timeout: Duration::from_secs(600),
            reconcile_every: Duration::from_secs(300),
            instance: None,
        }
    }

    /// Labels what this Dragonfly writes with its instance id, and keeps it off what another
    /// one owns.
    pub fn with_instance(mut self, instance: &str) -> Self {
        self.instance = Some(instance.into());
        self
    }

    pub fn instance(&self) -> Option<&str> {
        self.instance.as_deref()
    }

    /// How often what Dragonfly owns in the cluster is compared with the store and repaired.
    pub fn with_reconcile_every(mut self, every: Duration) -> Self {
        self.reconcile_every = every;
        self
    }

    pub fn reconcile_every(&self) -> Duration {
        self.reconcile_every
    }

    /// How long after the last action started the machine may take to show it booted.
    pub fn with_final_action_timeout(mut self, timeout: Duration) -> Self {
        self.final_action_timeout = timeout;
        self
    }

    /// Uses the serial console HookOS is configured with (`HookosSettings::console`) in the
    /// kernel command line of kexec installs.
    pub fn with_console(mut self, console: &str) -> Self {
        self.settings = Arc::new(self.settings.as_ref().clone().with_console(console));
        self
    }

    pub fn client(&self) -> &kube::Client {
        &self.client
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    pub fn settings(&self) -> &TemplateSettings {
        &self.settings
    }

    pub fn final_action_timeout(&self) -> Duration {
        self.final_action_timeout
    }
}

/// Connects to the cluster the flags name, or returns `None` when Dragonfly runs standalone.
///
/// `--tinkerbell auto` (the default) connects when `--kubeconfig` is given or when running in
/// a pod (`KUBERNETES_SERVICE_HOST` is set); `on` also tries the usual kubeconfig locations
/// and fails when none works; `off` never connects.
pub async fn connect(args: &TinkerbellArgs) -> anyhow::Result<Option<Tinkerbell>> {
    let in_cluster = std::env::var_os("KUBERNETES_SERVICE_HOST").is_some();
    let cluster = &args.cluster;
    let wanted = match cluster.tinkerbell {
        Mode::Off => false,
        Mode::On => true,
        Mode::Auto => cluster.kubeconfig.is_some() || in_cluster,
    };
    if !wanted {
        return Ok(None);
    }
    let settings = TemplateSettings::from_args(&args.workflow)?;
    let config = match kube_config(cluster, in_cluster).await {
        Ok(c) => c,
        // Auto-detected only because this runs in a pod: a pod without a usable
        // ServiceAccount runs standalone rather than not at all.
        Err(e) if cluster.tinkerbell == Mode::Auto && cluster.kubeconfig.is_none() => {
            tracing::warn!(
                error = format!("{e:#}"),
                "running in Kubernetes but without a usable ServiceAccount: Tinkerbell backend off"
            );
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    install_crypto_provider();
    let client = kube::Client::try_from(config).context("cannot build the Kubernetes client")?;
    let tink = Tinkerbell::new(
        client,
        args.namespace.tinkerbell_namespace.clone(),
        settings,
    )
    .with_final_action_timeout(args.workflow.tink_final_action_timeout.into())
    .with_reconcile_every(args.workflow.tink_reconcile_interval.into());
    tracing::info!(
        namespace = %tink.namespace,
        "Tinkerbell backend on (workflows are followed with a watch)"
    );
    Ok(Some(tink))
}

async fn kube_config(args: &ClusterArgs, in_cluster: bool) -> anyhow::Result<kube::Config> {
    let options = kube::config::KubeConfigOptions {
        context: args.kube_context.clone(),
        ..Default::default()
    };
    if let Some(path) = &args.kubeconfig {
        let file = kube::config::Kubeconfig::read_from(path)
            .with_context(|| format!("cannot read --kubeconfig {}", path.display()))?;
        return kube::Config::from_custom_kubeconfig(file, &options)
            .await
            .with_context(|| format!("--kubeconfig {}", path.display()));
    }
    if in_cluster {
        return kube::Config::incluster()
            .context("in-cluster Kubernetes configuration (the pod's ServiceAccount)");
    }
    kube::Config::from_kubeconfig(&options)
        .await
        .context("--tinkerbell on needs --kubeconfig, KUBECONFIG, ~/.kube/config or a pod")
}

/// kube builds its TLS configuration from rustls' process-wide provider; naming ring here
/// keeps that working even if another crate in the build enables a second provider.
fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // An error means another thread installed one first, which is just as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// A client for a cluster at `url` without TLS or credentials (tests and local proxies such
/// as `kubectl proxy`).
pub fn plain_client(url: &str, namespace: &str) -> anyhow::Result<kube::Client> {
    let uri: axum::http::Uri = url
        .parse()
        .with_context(|| format!("{url:?} is not a URL"))?;
    let mut config = kube::Config::new(uri);
    config.default_namespace = namespace.to_string();
    kube::Client::try_from(config).context("cannot build the Kubernetes client")
}
