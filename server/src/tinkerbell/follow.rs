//! Following workflows: a kube-runtime watcher over Dragonfly's Workflows, the machines'
//! boot signals and a clock tick go in; a stream of plain [`WorkflowUpdate`] values comes
//! out, one whenever what a workflow means for its machine changes.
//!
//! The stream never ends on errors: the watcher resumes from the last resource version or,
//! after 410 Gone, lists again; errors are logged and retried with a capped backoff.
//! [`Follower`] holds the logic and is pure (time comes in as a parameter).

use std::collections::{HashMap, HashSet, VecDeque};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use kube::api::Api;
use kube::runtime::utils::{Backoff, StreamBackoff};
use kube::runtime::watcher::{self, Event};

use super::objects::managed_selector;
pub use super::progress::Phase;
use super::progress::{Progress, assess};
use super::resources::Workflow;
use super::{INSTALL_ANNOTATION, MACHINE_ID_LABEL, OS_ANNOTATION};
use crate::clock::Clock;

/// The machine was seen booting (its boot script was requested) at `at_ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootSignal {
    /// Lower-case boot MAC.
    pub mac: String,
    pub at_ms: i64,
}

/// What a workflow now means for its machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkflowUpdate {
    pub workflow: String,
    /// From the Workflow's `dragonfly/machine-id` label.
    pub machine_id: Option<String>,
    /// `device_1` of the hardwareMap, lower-case.
    pub mac: Option<String>,
    /// The catalogue OS the workflow installs (its `dragonfly/os` annotation).
    pub os: Option<String>,
    /// Which install of the machine (its `dragonfly/install` annotation).
    pub install: Option<i64>,
    /// Never [`Phase::Pending`].
    pub phase: Phase,
}

struct Tracked {
    uid: Option<String>,
    machine_id: Option<String>,
    mac: Option<String>,
    os: Option<String>,
    install: Option<i64>,
    progress: Progress,
    /// When this follower first saw the last action running (its clock).
    final_since: Option<i64>,
    emitted: Option<Phase>,
}

/// Turns workflow snapshots, boot signals and time into updates. Pure: no I/O, no clock.
pub struct Follower {
    timeout: Duration,
    workflows: HashMap<String, Tracked>,
    /// Last boot seen per MAC.
    boots: HashMap<String, i64>,
    /// Names seen since a relist began.
    relisting: Option<HashSet<String>>,
}

impl Follower {
    pub fn new(final_action_timeout: Duration) -> Follower {
        Follower {
            timeout: final_action_timeout,
            workflows: HashMap::new(),
            boots: HashMap::new(),
            relisting: None,
        }
    }

    fn evaluate(&mut self, name: &str, now_ms: i64) -> Option<WorkflowUpdate> {
        let t = self.workflows.get_mut(name)?;
        let boot = t.mac.as_ref().and_then(|m| self.boots.get(m)).copied();
        let phase = assess(&t.progress, now_ms, t.final_since, boot, self.timeout);
        if phase == Phase::Pending || t.emitted.as_ref() == Some(&phase) {
            return None;
        }
        t.emitted = Some(phase.clone());
        Some(WorkflowUpdate {
            workflow: name.to_string(),
            machine_id: t.machine_id.clone(),
            mac: t.mac.clone(),
            os: t.os.clone(),
            install: t.install,
            phase,
        })
    }

    /// A workflow was added, changed, or listed.
    pub fn apply(&mut self, wf: &Workflow, now_ms: i64) -> Option<WorkflowUpdate> {
        let name = wf.metadata.name.clone()?;
        if let Some(seen) = &mut self.relisting {
            seen.insert(name.clone());
        }
        let uid = wf.metadata.uid.clone();
        let progress = Progress::of(wf.status.as_ref());
        let final_running = progress.final_action_running().is_some();
        let fresh = || Tracked {
            uid: uid.clone(),
            machine_id: None,
            mac: None,
            os: None,
            install: None,
            progress: progress.clone(),
            final_since: None,
            emitted: None,
        };
        let t = self.workflows.entry(name.clone()).or_insert_with(fresh);
        if t.uid != uid {
            // Deleted and created again under the same name: a new install.
            *t = fresh();
        }
        t.machine_id = wf.label(MACHINE_ID_LABEL).map(str::to_string);
        t.mac = wf
            .spec
            .hardware_map
            .get("device_1")
            .map(|m| m.to_ascii_lowercase());
        t.os = wf
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(OS_ANNOTATION))
            .cloned();
        t.install = wf
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(INSTALL_ANNOTATION))
            .and_then(|v| v.parse().ok());
        t.progress = progress;
        t.final_since = match (final_running, t.final_since) {
            (true, Some(since)) => Some(since),
            (true, None) => Some(now_ms),
            (false, _) => None,
        };
        self.evaluate(&name, now_ms)
    }

    /// A workflow was deleted.
    pub fn delete(&mut self, name: &str) {
        self.workflows.remove(name);
    }

    /// The watcher starts listing every workflow again (after 410 Gone, for instance).
    pub fn relist_started(&mut self) {
        self.relisting = Some(HashSet::new());
    }

    /// The list is complete: workflows it did not contain were deleted meanwhile.
    pub fn relist_done(&mut self) {
        if let Some(seen) = self.relisting.take() {
            self.workflows.retain(|name, _| seen.contains(name));
        }
    }

    /// The machine with this MAC was seen booting.
    pub fn boot_seen(&mut self, signal: &BootSignal, now_ms: i64) -> Vec<WorkflowUpdate> {
        let mac = signal.mac.to_ascii_lowercase();
        let at = self.boots.entry(mac.clone()).or_insert(signal.at_ms);
        *at = (*at).max(signal.at_ms);
        let names: Vec<String> = self
            .workflows
            .iter()
            .filter(|(_, t)| t.mac.as_deref() == Some(mac.as_str()))
            .map(|(n, _)| n.clone())
            .collect();
        names
            .iter()
            .filter_map(|n| self.evaluate(n, now_ms))
            .collect()
    }

    /// Time passed: final actions may have timed out.
    pub fn tick(&mut self, now_ms: i64) -> Vec<WorkflowUpdate> {
        // Boots older than a day cannot matter any more.
        self.boots.retain(|_, at| now_ms - *at < 86_400_000);
        let waiting: Vec<String> = self
            .workflows
            .iter()
            .filter(|(_, t)| t.final_since.is_some())
            .map(|(n, _)| n.clone())
            .collect();
        waiting
            .iter()
            .filter_map(|n| self.evaluate(n, now_ms))
            .collect()
    }
}

/// Knobs of [`follow`].
#[derive(Debug, Clone)]
pub struct FollowOptions {
    /// See [`super::progress::assess`].
    pub final_action_timeout: Duration,
    /// How often final-action timeouts are checked.
    pub tick: Duration,
    /// Backoff between failed watch attempts, doubling from `min` to `max`.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// How often what Dragonfly owns in the cluster is compared with the store and repaired.
    pub reconcile_every: Duration,
}

impl Default for FollowOptions {
    fn default() -> Self {
        FollowOptions {
            final_action_timeout: Duration::from_secs(600),
            tick: Duration::from_secs(15),
            backoff_min: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            reconcile_every: Duration::from_secs(300),
        }
    }
}

/// Exponential backoff that never gives up (a `None` would end the watch stream).
struct Doubling {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Iterator for Doubling {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        Some(d)
    }
}

impl Backoff for Doubling {
    fn reset(&mut self) {
        self.next = self.min;
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<Event<Workflow>, watcher::Error>> + Send>>;

fn watch(api: &Api<Workflow>, opts: &FollowOptions) -> WatchStream {
    let config = watcher::Config::default().labels(&managed_selector());
    let backoff = Doubling {
        min: opts.backoff_min,
        max: opts.backoff_max.max(opts.backoff_min),
        next: opts.backoff_min,
    };
    Box::pin(StreamBackoff::new(
        watcher::watcher(api.clone(), config),
        backoff,
    ))
}

enum Input {
    /// Boxed: a Workflow is large and the other inputs are small.
    Watch(Box<Option<Result<Event<Workflow>, watcher::Error>>>),
    Boot(Option<BootSignal>),
    Tick,
}

struct Run<B> {
    api: Api<Workflow>,
    opts: FollowOptions,
    watch: WatchStream,
    boots: Option<B>,
    tick: tokio::time::Interval,
    follower: Follower,
    out: VecDeque<WorkflowUpdate>,
    clock: Arc<dyn Clock>,
    failing: bool,
}

impl<B: Stream<Item = BootSignal> + Unpin> Run<B> {
    async fn next_input(&mut self) -> Input {
        let boots = async {
            match self.boots.as_mut() {
                Some(b) => b.next().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            e = self.watch.next() => Input::Watch(Box::new(e)),
            b = boots => Input::Boot(b),
            _ = self.tick.tick() => Input::Tick,
        }
    }

    fn handle(&mut self, input: Input) {
        let now = self.clock.now_ms();
        match input {
            Input::Watch(w) => self.handle_watch(*w, now),
            Input::Boot(Some(signal)) => self.out.extend(self.follower.boot_seen(&signal, now)),
            Input::Boot(None) => self.boots = None,
            Input::Tick => self.out.extend(self.follower.tick(now)),
        }
    }

    fn handle_watch(&mut self, w: Option<Result<Event<Workflow>, watcher::Error>>, now: i64) {
        match w {
            Some(Ok(event)) => {
                if self.failing {
                    tracing::info!("Tinkerbell workflow watch works again");
                    self.failing = false;
                }
                match event {
                    Event::Init => self.follower.relist_started(),
                    Event::InitApply(wf) | Event::Apply(wf) => {
                        self.out.extend(self.follower.apply(&wf, now));
                    }
                    Event::InitDone => self.follower.relist_done(),
                    Event::Delete(wf) => {
                        if let Some(name) = &wf.metadata.name {
                            self.follower.delete(name);
                        }
                    }
                }
            }
            Some(Err(e)) => {
                if self.failing {
                    tracing::debug!(error = %e, "Tinkerbell workflow watch still failing");
                } else {
                    tracing::warn!(error = %e, "Tinkerbell workflow watch failed; retrying with backoff");
                    self.failing = true;
                }
            }
            None => {
                // The watcher does not end by itself; if it ever does, start another.
                tracing::warn!("Tinkerbell workflow watch ended; starting it again");
                self.watch = watch(&self.api, &self.opts);
            }
        }
    }
}

/// Follows Dragonfly's workflows. `boots` carries the machines' boot signals; when it ends,
/// only the timeout can end a final action that reports nothing.
pub fn follow<B>(
    api: Api<Workflow>,
    boots: B,
    clock: Arc<dyn Clock>,
    opts: FollowOptions,
) -> impl Stream<Item = WorkflowUpdate> + Send + 'static
where
    B: Stream<Item = BootSignal> + Send + Unpin + 'static,
{
    let mut tick = tokio::time::interval(opts.tick.max(Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let run = Run {
        watch: watch(&api, &opts),
        follower: Follower::new(opts.final_action_timeout),
        api,
        opts,
        boots: Some(boots),
        tick,
        out: VecDeque::new(),
        clock,
        failing: false,
    };
    futures_util::stream::unfold(run, |mut run| async move {
        loop {
            if let Some(update) = run.out.pop_front() {
                return Some((update, run));
            }
            let input = run.next_input().await;
            run.handle(input);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tinkerbell::resources::{ActionStatus, TaskStatus, WorkflowSpec, WorkflowStatus};
    use std::collections::BTreeMap;

    const MIN: i64 = 60_000;

    fn wf(uid: &str, state: &str, actions: &[(&str, &str)]) -> Workflow {
        let mut w = Workflow::new(
            "dragonfly-52-54-00-00-00-01",
            WorkflowSpec {
                hardware_map: BTreeMap::from([("device_1".into(), "52:54:00:00:00:01".into())]),
                ..Default::default()
            },
        );
        w.metadata.uid = Some(uid.into());
        w.metadata.labels = Some(BTreeMap::from([(MACHINE_ID_LABEL.into(), "m1".into())]));
        w.status = Some(WorkflowStatus {
            state: Some(state.into()),
            tasks: vec![TaskStatus {
                actions: actions
                    .iter()
                    .map(|(n, s)| ActionStatus {
                        name: Some((*n).into()),
                        state: Some((*s).into()),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        });
        w
    }

    fn running(progress: u8, action: &str) -> Phase {
        Phase::Running {
            progress,
            action: action.into(),
        }
    }

    #[test]
    fn updates_are_emitted_once_per_change() {
        let mut f = Follower::new(Duration::from_secs(600));
        assert_eq!(f.apply(&wf("u1", "PENDING", &[("a", "PENDING")]), 0), None);
        let u = f
            .apply(
                &wf("u1", "RUNNING", &[("a", "RUNNING"), ("b", "PENDING")]),
                0,
            )
            .unwrap();
        assert_eq!(u.phase, running(0, "a"));
        assert_eq!(u.machine_id.as_deref(), Some("m1"));
        assert_eq!(u.mac.as_deref(), Some("52:54:00:00:00:01"));
        // The same status again (a resync) says nothing new.
        assert_eq!(
            f.apply(
                &wf("u1", "RUNNING", &[("a", "RUNNING"), ("b", "PENDING")]),
                1
            ),
            None
        );
        let u = f
            .apply(
                &wf("u1", "SUCCESS", &[("a", "SUCCESS"), ("b", "SUCCESS")]),
                2,
            )
            .unwrap();
        assert_eq!(u.phase, Phase::Succeeded);
    }

    #[test]
    fn a_boot_after_the_final_action_started_ends_it() {
        let mut f = Follower::new(Duration::from_secs(600));
        let w = wf("u1", "RUNNING", &[("a", "SUCCESS"), ("reboot", "RUNNING")]);
        assert_eq!(f.apply(&w, 100 * MIN).unwrap().phase, running(50, "reboot"));
        // The HookOS boot that started the install happened before: no news.
        let early = BootSignal {
            mac: "52:54:00:00:00:01".into(),
            at_ms: 90 * MIN,
        };
        assert!(f.boot_seen(&early, 101 * MIN).is_empty());
        let late = BootSignal {
            mac: "52:54:00:00:00:01".into(),
            at_ms: 102 * MIN,
        };
        let u = f.boot_seen(&late, 102 * MIN);
        assert_eq!(u.len(), 1);
        assert_eq!(u[0].phase, Phase::Succeeded);
        // The later TIMEOUT of that workflow does not turn it into a failure.
        let timed_out = wf("u1", "TIMEOUT", &[("a", "SUCCESS"), ("reboot", "RUNNING")]);
        assert_eq!(f.apply(&timed_out, 130 * MIN), None);
    }

    #[test]
    fn the_tick_fails_a_final_action_that_never_ends() {
        let mut f = Follower::new(Duration::from_secs(600));
        let w = wf("u1", "RUNNING", &[("a", "SUCCESS"), ("kexec", "RUNNING")]);
        f.apply(&w, 100 * MIN);
        assert!(f.tick(105 * MIN).is_empty());
        let u = f.tick(111 * MIN);
        assert_eq!(u.len(), 1);
        assert!(matches!(&u[0].phase, Phase::Failed { message } if message.contains("'kexec'")));
        assert!(f.tick(112 * MIN).is_empty(), "reported once");
    }

    #[test]
    fn a_recreated_workflow_starts_over_and_relists_forget_deleted_ones() {
        let mut f = Follower::new(Duration::from_secs(600));
        f.apply(&wf("u1", "SUCCESS", &[("a", "SUCCESS")]), 0)
            .unwrap();
        // Same name, new uid: a reimage. Its progress is news again.
        let u = f
            .apply(&wf("u2", "RUNNING", &[("a", "RUNNING")]), 1)
            .unwrap();
        assert_eq!(u.phase, running(0, "a"));
        f.relist_started();
        f.relist_done();
        assert!(f.workflows.is_empty());
        // After a relist the same status is news again only if it was forgotten.
        assert!(
            f.apply(&wf("u2", "RUNNING", &[("a", "RUNNING")]), 2)
                .is_some()
        );
    }
}
