//! The machine lifecycle as a pure state machine: `(state, event) → Result<state>`.
//!
//! ```text
//! Discovered ─assign→ Assigned ─start→ Installing ─succeed→ Installed ─reimage→ Assigned
//!                        │  ↑               │  ↺ progress/start          
//!                        │  └─assign (change OS)                      
//!                        ├─fail→ Failed ←─fail┘      Failed ─assign/reimage→ Assigned
//!                        └─cancel→ Discovered ←─cancel── Installing, Failed
//! ```
//! Offline is not a state: it is derived from the last heartbeat.

pub use crate::vocab::State;

/// What happened to the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Event {
    /// An operator assigned (or changed) the OS.
    Assign,
    /// The machine entered the installer (fetched its installer boot script, or reported it).
    Start,
    /// The installer reported progress.
    Progress,
    /// The installer finished.
    Succeed,
    /// The installer or chainload failed.
    Fail,
    /// An operator asked for the OS to be installed again.
    Reimage,
    /// An operator withdrew the assignment.
    Cancel,
}

impl Event {
    pub const ALL: [Event; 7] = [
        Event::Assign,
        Event::Start,
        Event::Progress,
        Event::Succeed,
        Event::Fail,
        Event::Reimage,
        Event::Cancel,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Event::Assign => "assign",
            Event::Start => "start",
            Event::Progress => "progress",
            Event::Succeed => "succeed",
            Event::Fail => "fail",
            Event::Reimage => "reimage",
            Event::Cancel => "cancel",
        }
    }
}

/// A transition the lifecycle does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("cannot {} a machine that is {}{}", .event.as_str(), .state, hint(*.state, *.event))]
pub struct IllegalTransition {
    pub state: State,
    pub event: Event,
}

fn hint(state: State, event: Event) -> &'static str {
    match (state, event) {
        (State::Installed, Event::Assign) => " (use reimage)",
        (State::Installing, Event::Assign | Event::Reimage) => " (cancel it first)",
        (State::Discovered | State::Assigned, Event::Reimage) => " (use assign)",
        _ => "",
    }
}

/// The whole lifecycle. Every arrow not listed here is refused.
pub fn next(state: State, event: Event) -> Result<State, IllegalTransition> {
    use Event as E;
    use State as S;
    let to = match (state, event) {
        (S::Discovered | S::Assigned | S::Failed, E::Assign) => S::Assigned,
        (S::Assigned | S::Installing, E::Start) => S::Installing,
        (S::Installing, E::Progress) => S::Installing,
        (S::Installing, E::Succeed) => S::Installed,
        (S::Assigned | S::Installing, E::Fail) => S::Failed,
        (S::Installed | S::Failed, E::Reimage) => S::Assigned,
        (S::Assigned | S::Installing | S::Failed, E::Cancel) => S::Discovered,
        _ => return Err(IllegalTransition { state, event }),
    };
    Ok(to)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Event as E;
    use State as S;

    /// Every allowed arrow, written out independently of `next`.
    const ALLOWED: &[(State, Event, State)] = &[
        (S::Discovered, E::Assign, S::Assigned),
        (S::Assigned, E::Assign, S::Assigned),
        (S::Failed, E::Assign, S::Assigned),
        (S::Assigned, E::Start, S::Installing),
        (S::Installing, E::Start, S::Installing),
        (S::Installing, E::Progress, S::Installing),
        (S::Installing, E::Succeed, S::Installed),
        (S::Assigned, E::Fail, S::Failed),
        (S::Installing, E::Fail, S::Failed),
        (S::Installed, E::Reimage, S::Assigned),
        (S::Failed, E::Reimage, S::Assigned),
        (S::Assigned, E::Cancel, S::Discovered),
        (S::Installing, E::Cancel, S::Discovered),
        (S::Failed, E::Cancel, S::Discovered),
    ];

    #[test]
    fn every_allowed_arrow_leads_where_the_table_says() {
        for &(from, event, to) in ALLOWED {
            assert_eq!(next(from, event), Ok(to), "{from} --{}-->", event.as_str());
        }
    }

    #[test]
    fn every_other_arrow_is_refused() {
        let mut refused = 0;
        for &from in State::ALL {
            for event in Event::ALL {
                if ALLOWED.iter().any(|&(f, e, _)| f == from && e == event) {
                    continue;
                }
                assert_eq!(
                    next(from, event),
                    Err(IllegalTransition { state: from, event }),
                    "{from} --{}--> should be refused",
                    event.as_str()
                );
                refused += 1;
            }
        }
        assert_eq!(refused, State::ALL.len() * Event::ALL.len() - ALLOWED.len());
    }

    #[test]
    fn refusals_explain_the_way_out() {
        let e = next(S::Installed, E::Assign).unwrap_err();
        assert_eq!(
            e.to_string(),
            "cannot assign a machine that is installed (use reimage)"
        );
        let e = next(S::Installing, E::Reimage).unwrap_err();
        assert_eq!(
            e.to_string(),
            "cannot reimage a machine that is installing (cancel it first)"
        );
    }

    #[test]
    fn installed_is_only_left_by_reimage() {
        for event in Event::ALL {
            let r = next(S::Installed, event);
            assert_eq!(r.is_ok(), event == E::Reimage, "{}", event.as_str());
        }
    }

    #[test]
    fn state_names_round_trip() {
        for s in State::ALL {
            assert_eq!(State::parse(s.as_str()).ok(), Some(*s));
        }
        assert_eq!(State::parse("offline").ok(), None);
    }
}
