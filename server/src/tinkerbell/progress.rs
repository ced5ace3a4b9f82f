//! Workflow status as Dragonfly understands it, and the pure function that decides what a
//! status means for the machine: `(status, now, final-action start, last boot seen) → Phase`.
//!
//! The last action of an install (kexec or reboot) often never reports its end: the machine
//! is gone before tink-worker can say so. "The last action started and then the machine was
//! seen booting again" therefore counts as success; without that sign within the configured
//! time, the install is failed with a message saying so.

use std::time::Duration;

use super::resources::WorkflowStatus;

/// A workflow or action state, from either status shape (`RUNNING` or `STATE_RUNNING`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Preparing,
    Pending,
    Running,
    Post,
    Success,
    Failed,
    Timeout,
    /// Absent, empty or a value this version does not know.
    Unknown,
}

impl State {
    pub fn parse(s: &str) -> State {
        let s = s.trim();
        let s = s.strip_prefix("STATE_").unwrap_or(s);
        match s.to_ascii_uppercase().as_str() {
            "PREPARING" => State::Preparing,
            "PENDING" => State::Pending,
            "RUNNING" => State::Running,
            "POST" => State::Post,
            "SUCCESS" => State::Success,
            "FAILED" => State::Failed,
            "TIMEOUT" => State::Timeout,
            _ => State::Unknown,
        }
    }

    fn of(s: Option<&str>) -> State {
        s.map_or(State::Unknown, State::parse)
    }

    /// The workflow will not change any more.
    pub fn is_terminal(self) -> bool {
        matches!(self, State::Success | State::Failed | State::Timeout)
    }
}

/// One action of a workflow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionView {
    pub name: String,
    pub state: State,
    /// When the action started (cluster clock), ms since the epoch.
    pub started_ms: Option<i64>,
    pub message: Option<String>,
}

/// A workflow's status normalised from either shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    pub state: State,
    /// Every action of every task, in order.
    pub actions: Vec<ActionView>,
    /// The action the workflow says it is in.
    pub current: Option<String>,
    /// Set when Tinkerbell could not render the template (with its reason when given).
    pub render_failed: Option<String>,
}

fn parse_time(s: Option<&str>) -> Option<i64> {
    let t = humantime::parse_rfc3339_weak(s?.trim()).ok()?;
    let d = t.duration_since(std::time::UNIX_EPOCH).ok()?;
    i64::try_from(d.as_millis()).ok()
}

impl Progress {
    pub fn of(status: Option<&WorkflowStatus>) -> Progress {
        let Some(s) = status else {
            return Progress {
                state: State::Unknown,
                actions: Vec::new(),
                current: None,
                render_failed: None,
            };
        };
        let actions = s
            .tasks
            .iter()
            .flat_map(|t| t.actions.iter())
            .enumerate()
            .map(|(i, a)| ActionView {
                name: a
                    .name
                    .clone()
                    .unwrap_or_else(|| format!("action {}", i + 1)),
                state: State::of(a.state.as_deref().or(a.status.as_deref())),
                started_ms: parse_time(a.execution_start.as_deref().or(a.started_at.as_deref())),
                message: a.message.clone().filter(|m| !m.trim().is_empty()),
            })
            .collect();
        let current = s
            .current_state
            .as_ref()
            .and_then(|c| c.action_name.clone())
            .or_else(|| s.current_action.clone())
            .filter(|c| !c.is_empty());
        let rendering = s
            .template_rendering
            .as_deref()
            .or(s.template_rending.as_deref())
            .unwrap_or_default();
        let render_failed = rendering.eq_ignore_ascii_case("failed").then(|| {
            s.conditions
                .iter()
                .rev()
                .find_map(|c| c.message.clone().filter(|m| !m.is_empty()))
                .unwrap_or_default()
        });
        Progress {
            state: State::of(s.state.as_deref()),
            actions,
            current,
            render_failed,
        }
    }

    /// The last action, when it has started and not reported an end.
    pub fn final_action_running(&self) -> Option<&ActionView> {
        self.actions.last().filter(|a| a.state == State::Running)
    }

    fn percent(&self) -> u8 {
        let total = self.actions.len();
        if total == 0 {
            return 0;
        }
        let done = self
            .actions
            .iter()
            .filter(|a| a.state == State::Success)
            .count();
        u8::try_from(done * 100 / total).unwrap_or(100)
    }

    fn current_name(&self) -> String {
        self.current
            .clone()
            .or_else(|| {
                self.actions
                    .iter()
                    .find(|a| a.state == State::Running)
                    .or_else(|| self.actions.iter().find(|a| a.state != State::Success))
                    .or_else(|| self.actions.last())
                    .map(|a| a.name.clone())
            })
            .unwrap_or_else(|| "starting".into())
    }
}

/// What a workflow means for its machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// Not started (no worker has picked it up yet).
    Pending,
    /// `progress` = finished actions / all actions, in percent.
    Running {
        progress: u8,
        action: String,
    },
    Succeeded,
    Failed {
        message: String,
    },
}

/// Decides the phase of a workflow.
///
/// - `final_since_ms`: when Dragonfly first saw the last action running (its own clock);
///   without it the action's own start time is used.
/// - `boot_seen_ms`: the last time the machine was seen booting (e.g. its boot script was
///   requested), Dragonfly's clock.
/// - `timeout`: how long after the last action started a boot must be seen.
pub fn assess(
    p: &Progress,
    now_ms: i64,
    final_since_ms: Option<i64>,
    boot_seen_ms: Option<i64>,
    timeout: Duration,
) -> Phase {
    if let Some(reason) = &p.render_failed {
        let mut message = "Tinkerbell could not render the workflow template".to_string();
        if !reason.is_empty() {
            message.push_str(": ");
            message.push_str(reason);
        }
        return Phase::Failed { message };
    }
    let last = p.actions.last();
    // The last action started: from when, and has the machine booted since?
    let final_started = last
        .filter(|a| matches!(a.state, State::Running | State::Timeout))
        .and_then(|a| final_since_ms.or(a.started_ms).map(|t| (a, t)));
    let booted_after_final =
        final_started.is_some_and(|(_, since)| boot_seen_ms.is_some_and(|b| b >= since));
    match p.state {
        State::Success => Phase::Succeeded,
        State::Failed => Phase::Failed {
            message: failure(p, "failed"),
        },
        State::Timeout if booted_after_final => Phase::Succeeded,
        State::Timeout => Phase::Failed {
            message: failure(p, "timed out"),
        },
        State::Running | State::Post if booted_after_final => Phase::Succeeded,
        State::Running | State::Post => {
            if let Some((a, since)) = final_started {
                let waited = now_ms.saturating_sub(since);
                if u128::try_from(waited).unwrap_or(0) > timeout.as_millis() {
                    return Phase::Failed {
                        message: format!(
                            "no sign of the machine booting its installed OS within {} after \
                             the final action '{}' started (Tinkerbell cannot report that \
                             action's end): check the machine's console",
                            humantime::format_duration(timeout),
                            a.name
                        ),
                    };
                }
            }
            Phase::Running {
                progress: p.percent(),
                action: p.current_name(),
            }
        }
        State::Preparing | State::Pending | State::Unknown => Phase::Pending,
    }
}

/// The message of a FAILED or TIMEOUT workflow, naming the action that ended it.
fn failure(p: &Progress, what: &str) -> String {
    let culprit = p
        .actions
        .iter()
        .find(|a| matches!(a.state, State::Failed | State::Timeout))
        .or_else(|| {
            let current = p.current.as_deref()?;
            p.actions.iter().find(|a| a.name == current)
        });
    match culprit {
        Some(a) => {
            let verb = if a.state == State::Timeout {
                "timed out"
            } else {
                what
            };
            match &a.message {
                Some(m) => format!("Tinkerbell action '{}' {verb}: {m}", a.name),
                None => format!("Tinkerbell action '{}' {verb}", a.name),
            }
        }
        None => format!("Tinkerbell workflow {what}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tinkerbell::resources::{ActionStatus, CurrentState, TaskStatus};

    const MIN: i64 = 60_000;
    const TIMEOUT: Duration = Duration::from_secs(600);

    fn action(name: &str, state: &str) -> ActionStatus {
        ActionStatus {
            name: Some(name.into()),
            state: Some(state.into()),
            ..Default::default()
        }
    }

    fn status(state: &str, actions: Vec<ActionStatus>) -> WorkflowStatus {
        WorkflowStatus {
            state: Some(state.into()),
            tasks: vec![TaskStatus {
                name: Some("os-installation".into()),
                actions,
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    fn phase(s: &WorkflowStatus, now: i64, since: Option<i64>, boot: Option<i64>) -> Phase {
        assess(&Progress::of(Some(s)), now, since, boot, TIMEOUT)
    }

    #[test]
    fn states_parse_in_both_shapes() {
        for (text, want) in [
            ("RUNNING", State::Running),
            ("STATE_RUNNING", State::Running),
            ("STATE_SUCCESS", State::Success),
            ("PREPARING", State::Preparing),
            ("POST", State::Post),
            ("TIMEOUT", State::Timeout),
            ("STATE_FAILED", State::Failed),
            ("", State::Unknown),
            ("SOMETHING_NEW", State::Unknown),
        ] {
            assert_eq!(State::parse(text), want, "{text}");
        }
    }

    #[test]
    fn no_status_and_pending_are_pending() {
        assert_eq!(
            assess(&Progress::of(None), 0, None, None, TIMEOUT),
            Phase::Pending
        );
        let s = status("PENDING", vec![action("a", "PENDING")]);
        assert_eq!(phase(&s, 0, None, None), Phase::Pending);
        let s = status("PREPARING", vec![]);
        assert_eq!(phase(&s, 0, None, None), Phase::Pending);
    }

    #[test]
    fn running_progress_is_finished_over_all_actions() {
        let mut s = status(
            "RUNNING",
            vec![
                action("stream-image", "SUCCESS"),
                action("write-cloud-init", "RUNNING"),
                action("reboot", "PENDING"),
            ],
        );
        s.current_state = Some(CurrentState {
            action_name: Some("write-cloud-init".into()),
            ..Default::default()
        });
        assert_eq!(
            phase(&s, 0, None, None),
            Phase::Running {
                progress: 33,
                action: "write-cloud-init".into()
            }
        );
    }

    #[test]
    fn legacy_shape_is_understood() {
        let s = WorkflowStatus {
            state: Some("STATE_RUNNING".into()),
            current_action: Some("stream-image".into()),
            tasks: vec![TaskStatus {
                worker: Some("52:54:00:00:00:01".into()),
                actions: vec![
                    ActionStatus {
                        name: Some("stream-image".into()),
                        status: Some("STATE_RUNNING".into()),
                        started_at: Some("2024-05-01T10:00:00Z".into()),
                        seconds: Some(12),
                        ..Default::default()
                    },
                    ActionStatus {
                        name: Some("kexec".into()),
                        status: Some("STATE_PENDING".into()),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }],
            ..Default::default()
        };
        let p = Progress::of(Some(&s));
        assert_eq!(p.actions[0].started_ms, Some(1_714_557_600_000));
        assert_eq!(
            assess(&p, 0, None, None, TIMEOUT),
            Phase::Running {
                progress: 0,
                action: "stream-image".into()
            }
        );
        let done = status("STATE_SUCCESS", vec![]);
        assert_eq!(phase(&done, 0, None, None), Phase::Succeeded);
    }

    #[test]
    fn failures_name_the_action_and_its_message() {
        let mut failed = action("stream-image", "FAILED");
        failed.message = Some("unexpected EOF".into());
        let s = status("FAILED", vec![failed, action("reboot", "PENDING")]);
        assert_eq!(
            phase(&s, 0, None, None),
            Phase::Failed {
                message: "Tinkerbell action 'stream-image' failed: unexpected EOF".into()
            }
        );
        let s = status(
            "TIMEOUT",
            vec![
                action("stream-image", "TIMEOUT"),
                action("reboot", "PENDING"),
            ],
        );
        assert_eq!(
            phase(&s, 0, None, None),
            Phase::Failed {
                message: "Tinkerbell action 'stream-image' timed out".into()
            }
        );
        let s = status("STATE_FAILED", vec![]);
        assert_eq!(
            phase(&s, 0, None, None),
            Phase::Failed {
                message: "Tinkerbell workflow failed".into()
            }
        );
    }

    #[test]
    fn a_render_failure_fails_with_the_reason() {
        let mut s = status("", vec![]);
        s.template_rendering = Some("failed".into());
        s.conditions = vec![crate::tinkerbell::resources::Condition {
            kind: "TemplateRenderedSuccess".into(),
            status: "False".into(),
            message: Some("template: x:3: function \"nope\" not defined".into()),
            ..Default::default()
        }];
        let Phase::Failed { message } = phase(&s, 0, None, None) else {
            panic!("not failed")
        };
        assert!(message.contains("could not render"), "{message}");
        assert!(message.contains("nope"), "{message}");
    }

    fn final_running() -> WorkflowStatus {
        status(
            "RUNNING",
            vec![
                action("stream-image", "SUCCESS"),
                action("write-cloud-init", "SUCCESS"),
                action("reboot", "RUNNING"),
            ],
        )
    }

    #[test]
    fn final_action_running_then_a_boot_is_success() {
        let s = final_running();
        let since = 100 * MIN;
        assert_eq!(
            phase(&s, since + MIN, Some(since), None),
            Phase::Running {
                progress: 66,
                action: "reboot".into()
            }
        );
        // A boot before the final action (the HookOS boot itself) proves nothing.
        assert!(matches!(
            phase(&s, since + MIN, Some(since), Some(since - 5 * MIN)),
            Phase::Running { .. }
        ));
        assert_eq!(
            phase(&s, since + MIN, Some(since), Some(since + 30_000)),
            Phase::Succeeded
        );
    }

    #[test]
    fn final_action_without_a_boot_fails_after_the_timeout() {
        let s = final_running();
        let since = 100 * MIN;
        assert!(matches!(
            phase(&s, since + 10 * MIN, Some(since), None),
            Phase::Running { .. }
        ));
        let Phase::Failed { message } = phase(&s, since + 10 * MIN + 1, Some(since), None) else {
            panic!("not failed")
        };
        assert!(message.contains("within 10m"), "{message}");
        assert!(message.contains("'reboot'"), "{message}");
    }

    #[test]
    fn final_action_falls_back_to_its_own_start_time() {
        let mut s = final_running();
        s.tasks[0].actions[2].execution_start = Some("2024-05-01T10:00:00Z".into());
        let start = 1_714_557_600_000;
        assert_eq!(
            phase(&s, start + MIN, None, Some(start + 1000)),
            Phase::Succeeded
        );
        assert!(matches!(
            phase(&s, start + 11 * MIN, None, None),
            Phase::Failed { .. }
        ));
        // Neither a local nor a reported start: no timeout can be measured.
        s.tasks[0].actions[2].execution_start = None;
        assert!(matches!(
            phase(&s, start + 60 * MIN, None, None),
            Phase::Running { .. }
        ));
    }

    #[test]
    fn a_timed_out_workflow_whose_machine_booted_succeeded() {
        let s = status(
            "TIMEOUT",
            vec![
                action("stream-image", "SUCCESS"),
                action("kexec", "RUNNING"),
            ],
        );
        let since = 100 * MIN;
        assert_eq!(
            phase(&s, since + 60 * MIN, Some(since), Some(since + MIN)),
            Phase::Succeeded
        );
        assert!(matches!(
            phase(&s, since + 60 * MIN, Some(since), None),
            Phase::Failed { .. }
        ));
    }

    #[test]
    fn post_counts_as_running_and_success_wins() {
        let s = status("POST", vec![action("a", "SUCCESS")]);
        assert_eq!(
            phase(&s, 0, None, None),
            Phase::Running {
                progress: 100,
                action: "a".into()
            }
        );
        let s = status("SUCCESS", vec![action("a", "SUCCESS")]);
        assert_eq!(phase(&s, 0, None, None), Phase::Succeeded);
    }
}
