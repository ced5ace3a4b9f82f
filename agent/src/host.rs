//! What the agent does to the machine: run a command (`kexec`, `reboot -f`, `poweroff -f`),
//! poke the kernel's SysRq trigger as the last resort, and sleep. Behind a trait so a dry run
//! prints the exact commands instead, the simulator only counts them, and tests record them.

use std::fmt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A command line, shown exactly as it would be typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cmd {
    pub program: String,
    pub args: Vec<String>,
}

impl Cmd {
    pub fn new<I, S>(program: &str, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            program: program.to_string(),
            args: args.into_iter().map(Into::into).collect(),
        }
    }
}

impl fmt::Display for Cmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&shell_quote(&self.program))?;
        for a in &self.args {
            write!(f, " {}", shell_quote(a))?;
        }
        Ok(())
    }
}

/// Quotes `s` for a POSIX shell when it needs it (`--append=dhcp && chain URL` becomes
/// `'--append=dhcp && chain URL'`).
pub fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,+@%".contains(c));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// The machine the agent acts on.
pub trait Host: Send {
    /// Runs a command to completion; `Err` says why it failed (did not start, exit status,
    /// timed out).
    fn run(&mut self, cmd: &Cmd) -> Result<(), String>;
    /// Writes `key` to `/proc/sysrq-trigger` (`b` reboots, `o` powers off at once): the
    /// fallback when `reboot -f` itself fails.
    fn sysrq(&mut self, key: char) -> Result<(), String>;
    fn sleep(&mut self, d: Duration);
    /// True when commands only print what they would do: the agent then also skips the
    /// `ipxe.lkrn` download and marks its status messages as a dry run.
    fn is_dry_run(&self) -> bool {
        false
    }
}

/// The real machine. Commands get a deadline, so a stuck `kexec` cannot hang the agent.
#[derive(Debug, Clone)]
pub struct SystemHost {
    /// Where `/proc/sysrq-trigger` lives (`/` in production).
    pub root: PathBuf,
    pub timeout: Duration,
}

impl SystemHost {
    pub fn new(root: PathBuf) -> Self {
        Self {
            root,
            timeout: Duration::from_secs(120),
        }
    }
}

impl Host for SystemHost {
    fn run(&mut self, cmd: &Cmd) -> Result<(), String> {
        crate::log!("running: {cmd}");
        let mut child = Command::new(&cmd.program)
            .args(&cmd.args)
            .stdin(Stdio::null())
            .spawn()
            .map_err(|e| format!("could not start `{}`: {e}", cmd.program))?;
        let deadline = Instant::now() + self.timeout;
        loop {
            match child.try_wait() {
                Ok(Some(status)) if status.success() => return Ok(()),
                Ok(Some(status)) => return Err(format!("`{cmd}` failed ({status})")),
                Ok(None) if Instant::now() >= deadline => {
                    // Best effort: the child may have exited between the two calls.
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!(
                        "`{cmd}` did not finish within {} s and was killed",
                        self.timeout.as_secs()
                    ));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(50)),
                Err(e) => return Err(format!("waiting for `{cmd}`: {e}")),
            }
        }
    }

    fn sysrq(&mut self, key: char) -> Result<(), String> {
        let path = self.root.join("proc/sysrq-trigger");
        crate::log!("writing {key:?} to {}", path.display());
        std::fs::write(&path, key.to_string()).map_err(|e| format!("{}: {e}", path.display()))
    }

    fn sleep(&mut self, d: Duration) {
        std::thread::sleep(d);
    }
}

/// `--dry-run`: prints each command it would run and runs nothing; waits are real, so the
/// server sees the same request rhythm as from a real agent.
#[derive(Debug, Clone, Default)]
pub struct DryRunHost;

impl Host for DryRunHost {
    fn run(&mut self, cmd: &Cmd) -> Result<(), String> {
        crate::log!("dry run: would run: {cmd}");
        Ok(())
    }

    fn sysrq(&mut self, key: char) -> Result<(), String> {
        crate::log!("dry run: would write {key:?} to /proc/sysrq-trigger");
        Ok(())
    }

    fn sleep(&mut self, d: Duration) {
        std::thread::sleep(d);
    }

    fn is_dry_run(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_display_as_they_would_be_typed() {
        let c = Cmd::new(
            "kexec",
            [
                "-c",
                "-l",
                "/tmp/ipxe.lkrn",
                "--append=dhcp && chain http://x/boot/a.ipxe",
            ],
        );
        assert_eq!(
            c.to_string(),
            "kexec -c -l /tmp/ipxe.lkrn '--append=dhcp && chain http://x/boot/a.ipxe'"
        );
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }

    #[test]
    fn a_missing_program_is_an_error_not_a_hang() {
        crate::log::set_sink(|line| eprintln!("{line}"));
        let mut h = SystemHost::new(PathBuf::from("/"));
        let err = h
            .run(&Cmd::new("/nonexistent/dragonfly-test-binary", ["x"]))
            .unwrap_err();
        assert!(err.contains("could not start"), "{err}");
    }
}
