//! The agent's qcow2 reader on arbitrary files: the header parser and the converter never
//! panic and stay within their bounds, and a file that converts yields exactly as many
//! bytes as the virtual disk it announces.

#![no_main]

use std::io::{self, Write};

use dragonfly_agent::install::qcow2::{Header, PEEK, Spool, convert};
use libfuzzer_sys::fuzz_target;

/// Counts what the converter writes.
struct Count(u64);

impl Write for Count {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0 += b.len() as u64;
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(header) = Header::parse(&data[..data.len().min(PEEK)]) else {
        return;
    };
    // The agent refuses a virtual disk its target disk cannot hold before converting; keep
    // the fuzzer's disks small.
    if header.size > 16 << 20 {
        return;
    }
    let spool = Spool {
        file: &data,
        base: 0,
        len: data.len() as u64,
    };
    let mut out = Count(0);
    if convert(&header, &spool, &mut out).is_ok() {
        assert_eq!(out.0, header.size);
    }
});
