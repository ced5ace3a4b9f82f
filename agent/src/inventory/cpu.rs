//! The CPU as the kernel sees it, from `root/proc/cpuinfo`, and usable memory from
//! `root/proc/meminfo`.
//!
//! Parsed here rather than with the procfs crate: its `CpuInfo` is an untyped key→value map
//! per processor, so the socket/core/thread counting below would be needed anyway, and the
//! crate brings rustix, bitflags and more into a binary that must stay small. Both formats
//! are stable, line-oriented `key : value` text.

use std::collections::BTreeSet;
use std::path::Path;

use dragonfly_proto::Cpu;

use super::InventoryError;
use super::clean::text;
use super::sysfs::read_opt;

pub fn read(root: &Path) -> Result<Option<Cpu>, InventoryError> {
    Ok(read_opt(&root.join("proc/cpuinfo"))?.and_then(|s| parse_cpuinfo(&s)))
}

/// `None` when the text lists no processor.
pub fn parse_cpuinfo(text_in: &str) -> Option<Cpu> {
    let mut threads = 0u32;
    let mut model = None;
    let mut sockets = BTreeSet::new();
    let mut cores = BTreeSet::new();
    // Per-socket "cpu cores", for kernels that print no "core id".
    let mut cores_per_socket = std::collections::BTreeMap::new();
    let mut virtualization = None;
    let (mut physical, mut core, mut cpu_cores) = (None, None, None);

    let mut flush =
        |physical: &mut Option<String>, core: &mut Option<String>, cpu_cores: &mut Option<u32>| {
            let p = physical.take();
            if let Some(p) = &p {
                sockets.insert(p.clone());
                if let Some(n) = cpu_cores.take() {
                    cores_per_socket.insert(p.clone(), n);
                }
            }
            if let Some(c) = core.take() {
                cores.insert((p.unwrap_or_default(), c));
            }
            *cpu_cores = None;
        };

    for line in text_in.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let key = key.trim();
        let value = value.trim();
        match key {
            "processor" => {
                flush(&mut physical, &mut core, &mut cpu_cores);
                threads += 1;
            }
            "model name" | "cpu model" if model.is_none() => {
                model = text(&value.split_whitespace().collect::<Vec<_>>().join(" "));
            }
            "physical id" => physical = Some(value.to_string()),
            "core id" => core = Some(value.to_string()),
            "cpu cores" => cpu_cores = value.parse().ok(),
            "flags" | "Features" if virtualization.is_none() => {
                let flags: Vec<&str> = value.split_whitespace().collect();
                virtualization = if flags.contains(&"vmx") {
                    Some("vmx".to_string())
                } else if flags.contains(&"svm") {
                    Some("svm".to_string())
                } else {
                    None
                };
            }
            _ => {}
        }
    }
    flush(&mut physical, &mut core, &mut cpu_cores);

    if threads == 0 {
        return None;
    }
    let sockets_n = (sockets.len() as u32).max(1);
    let cores_n = if !cores.is_empty() {
        cores.len() as u32
    } else if !cores_per_socket.is_empty() {
        cores_per_socket.values().sum()
    } else {
        threads
    };
    Some(Cpu {
        model,
        sockets: sockets_n,
        cores: cores_n,
        threads,
        virtualization,
    })
}

/// `MemTotal` from `root/proc/meminfo`, in bytes.
pub fn read_memory(root: &Path) -> Result<Option<u64>, InventoryError> {
    Ok(read_opt(&root.join("proc/meminfo"))?.and_then(|s| parse_memtotal(&s)))
}

pub fn parse_memtotal(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let mut parts = line["MemTotal:".len()..].split_whitespace();
    let n: u64 = parts.next()?.parse().ok()?;
    let factor = match parts.next() {
        Some("kB") | Some("KB") => 1024,
        None => 1,
        Some(_) => return None,
    };
    n.checked_mul(factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockets_cores_and_threads_are_counted() {
        let mut s = String::new();
        for (p, c) in [
            (0, 0),
            (0, 0),
            (0, 1),
            (0, 1),
            (1, 0),
            (1, 0),
            (1, 1),
            (1, 1),
        ] {
            s += &format!(
                "processor\t: x\nmodel name\t: Intel(R)  Xeon(R)   Gold\nphysical id\t: {p}\n\
                 core id\t\t: {c}\nflags\t\t: fpu vmx sse\n\n"
            );
        }
        let cpu = parse_cpuinfo(&s).unwrap();
        assert_eq!(
            cpu,
            Cpu {
                model: Some("Intel(R) Xeon(R) Gold".into()),
                sockets: 2,
                cores: 4,
                threads: 8,
                virtualization: Some("vmx".into()),
            }
        );
    }

    #[test]
    fn no_topology_lines_means_one_socket_and_a_core_per_thread() {
        let cpu = parse_cpuinfo("processor : 0\nFeatures : fp asimd\n\nprocessor : 1\n").unwrap();
        assert_eq!((cpu.sockets, cpu.cores, cpu.threads), (1, 2, 2));
        assert_eq!(cpu.virtualization, None);
        assert_eq!(parse_cpuinfo(""), None);
    }

    #[test]
    fn memtotal_is_in_bytes() {
        assert_eq!(
            parse_memtotal("MemTotal:       16314912 kB\nMemFree: 1 kB\n"),
            Some(16_314_912 * 1024)
        );
        assert_eq!(parse_memtotal("MemFree: 1 kB\n"), None);
    }
}
