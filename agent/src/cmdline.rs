//! The kernel command line (`/proc/cmdline`): where iPXE tells the agent the server URL
//! (`dragonfly.url=`), the enrollment secret and which NIC booted (`BOOTIF=`, `ip=`).

use std::io;
use std::path::Path;

use dragonfly_proto::normalize_mac;

/// Parameters of a kernel command line, in order. Parsed the way the kernel does: whitespace
/// separates parameters except inside double quotes, which are removed; everything after a
/// lone `--` belongs to init and is ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelCmdline {
    params: Vec<(String, Option<String>)>,
}

impl KernelCmdline {
    pub fn parse(line: &str) -> Self {
        let mut params = Vec::new();
        let mut token = String::new();
        let mut has_token = false;
        let mut quoted = false;
        let mut finish = |token: &mut String, has_token: &mut bool| -> bool {
            if !*has_token {
                return true;
            }
            *has_token = false;
            let t = std::mem::take(token);
            if t == "--" {
                return false;
            }
            match t.split_once('=') {
                Some((k, v)) => params.push((k.to_string(), Some(v.to_string()))),
                None => params.push((t, None)),
            }
            true
        };
        for c in line.chars() {
            match c {
                '"' => {
                    quoted = !quoted;
                    has_token = true;
                }
                c if c.is_whitespace() && !quoted => {
                    if !finish(&mut token, &mut has_token) {
                        return Self { params };
                    }
                }
                c => {
                    token.push(c);
                    has_token = true;
                }
            }
        }
        finish(&mut token, &mut has_token);
        Self { params }
    }

    /// Reads `root/proc/cmdline`; a missing file is an empty command line.
    pub fn read(root: &Path) -> io::Result<Self> {
        match std::fs::read_to_string(root.join("proc/cmdline")) {
            Ok(s) => Ok(Self::parse(&s)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(e),
        }
    }

    /// The value of the last `key=value` (the kernel lets later parameters override earlier
    /// ones). A non-empty value only.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| v.as_deref())
            .filter(|v| !v.is_empty())
    }

    /// The boot NIC's MAC from `BOOTIF=01-aa-bb-cc-dd-ee-ff` (what iPXE and pxelinux pass),
    /// normalised; `None` when absent or not a unicast MAC.
    pub fn bootif_mac(&self) -> Option<String> {
        self.get("BOOTIF").and_then(|v| normalize_mac(v).ok())
    }

    /// The interface named by `ip=`: the sixth field of the kernel's
    /// `ip=client:server:gw:netmask:hostname:device:autoconf...` form, or the first field of
    /// dracut's `ip=device:dhcp` form.
    pub fn ip_device(&self) -> Option<&str> {
        let value = self.get("ip")?;
        // IPv6 addresses in brackets contain colons; the device field never does.
        let mut fields = Vec::new();
        let mut depth = 0usize;
        let mut start = 0usize;
        for (i, c) in value.char_indices() {
            match c {
                '[' => depth += 1,
                ']' => depth = depth.saturating_sub(1),
                ':' if depth == 0 => {
                    fields.push(&value[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        fields.push(&value[start..]);
        let device = match fields.len() {
            2 if matches!(
                fields[1],
                "dhcp" | "on" | "any" | "dhcp6" | "auto6" | "either6" | "link6"
            ) =>
            {
                fields[0]
            }
            n if n >= 6 => fields[5],
            _ => return None,
        };
        (!device.is_empty()).then_some(device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_group_and_double_dash_ends_the_kernel_part() {
        let c = KernelCmdline::parse(
            "console=ttyS0 dragonfly.url=\"http://10.0.0.1:8080\" note=\"a b\" quiet -- x=y",
        );
        assert_eq!(c.get("dragonfly.url"), Some("http://10.0.0.1:8080"));
        assert_eq!(c.get("note"), Some("a b"));
        assert_eq!(c.get("x"), None);
        assert_eq!(c.get("quiet"), None);
    }

    #[test]
    fn later_parameters_win_and_empty_values_are_absent() {
        let c = KernelCmdline::parse("a=1 a=2 b=");
        assert_eq!(c.get("a"), Some("2"));
        assert_eq!(c.get("b"), None);
    }
}
