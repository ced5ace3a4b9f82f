//! A read-only TFTP server (RFC 1350, with the blksize and tsize options of RFC 2347–2349)
//! for the iPXE first stage: undionly.kpxe, ipxe.efi, snponly.efi. Off unless `--tftp`.
//!
//! Each read request gets its own UDP socket (its own transfer id, as the RFC asks), so a
//! slow or vanished client never blocks the others. Only the files named in [`TFTP_FILES`]
//! are served, from `boot-dir/tftp/`; nothing is ever written.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::UdpSocket;

/// The files TFTP serves.
pub const TFTP_FILES: &[&str] = &["undionly.kpxe", "ipxe.pxe", "ipxe.efi", "snponly.efi"];

const OP_RRQ: u16 = 1;
const OP_WRQ: u16 = 2;
const OP_DATA: u16 = 3;
const OP_ACK: u16 = 4;
const OP_ERROR: u16 = 5;
const OP_OACK: u16 = 6;

const DEFAULT_BLKSIZE: usize = 512;
/// Largest block we agree to: keeps every datagram inside one Ethernet frame.
const MAX_BLKSIZE: usize = 1468;
const RETRIES: u32 = 5;
const TIMEOUT: Duration = Duration::from_secs(1);
/// Transfers at once, and from one address: each holds a socket for up to ~5 s when its
/// client never answers, and a read request is 15 spoofable bytes.
pub const MAX_TRANSFERS: usize = 128;
pub const MAX_TRANSFERS_PER_PEER: usize = 4;

/// A parsed TFTP packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    Read(Request),
    Write(Request),
    Data { block: u16, data: Vec<u8> },
    Ack { block: u16 },
    Error { code: u16, message: String },
    OptionAck(Vec<(String, String)>),
}

/// A read or write request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub filename: String,
    /// `octet` or `netascii` (lower-cased).
    pub mode: String,
    /// Option names lower-cased, in the order sent.
    pub options: Vec<(String, String)>,
}

/// Why a datagram is not a valid TFTP packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("packet shorter than its opcode")]
    Short,
    #[error("unknown opcode {0}")]
    Opcode(u16),
    #[error("a string field is not NUL-terminated")]
    Unterminated,
    #[error("a string field is not ASCII")]
    NotAscii,
    #[error("an option has no value")]
    DanglingOption,
    #[error("too many options")]
    TooManyOptions,
}

fn take_str(buf: &[u8]) -> Result<(String, &[u8]), ParseError> {
    let end = buf
        .iter()
        .position(|b| *b == 0)
        .ok_or(ParseError::Unterminated)?;
    let s = std::str::from_utf8(&buf[..end]).map_err(|_| ParseError::NotAscii)?;
    if !s.is_ascii() {
        return Err(ParseError::NotAscii);
    }
    Ok((s.to_string(), &buf[end + 1..]))
}

fn parse_options(mut rest: &[u8]) -> Result<Vec<(String, String)>, ParseError> {
    let mut options = Vec::new();
    while !rest.is_empty() {
        if options.len() >= 16 {
            return Err(ParseError::TooManyOptions);
        }
        let (name, r) = take_str(rest)?;
        if r.is_empty() {
            return Err(ParseError::DanglingOption);
        }
        let (value, r) = take_str(r)?;
        options.push((name.to_ascii_lowercase(), value));
        rest = r;
    }
    Ok(options)
}

/// Parses one datagram. Pure: the fuzz target and the server share it.
pub fn parse(buf: &[u8]) -> Result<Packet, ParseError> {
    if buf.len() < 2 {
        return Err(ParseError::Short);
    }
    let op = u16::from_be_bytes([buf[0], buf[1]]);
    let body = &buf[2..];
    let block = || -> Result<u16, ParseError> {
        if body.len() < 2 {
            return Err(ParseError::Short);
        }
        Ok(u16::from_be_bytes([body[0], body[1]]))
    };
    match op {
        OP_RRQ | OP_WRQ => {
            let (filename, rest) = take_str(body)?;
            let (mode, rest) = take_str(rest)?;
            let req = Request {
                filename,
                mode: mode.to_ascii_lowercase(),
                options: parse_options(rest)?,
            };
            Ok(if op == OP_RRQ {
                Packet::Read(req)
            } else {
                Packet::Write(req)
            })
        }
        OP_DATA => Ok(Packet::Data {
            block: block()?,
            data: body[2..].to_vec(),
        }),
        OP_ACK => Ok(Packet::Ack { block: block()? }),
        OP_ERROR => {
            let code = block()?;
            let message = take_str(&body[2..]).map(|(m, _)| m).unwrap_or_default();
            Ok(Packet::Error { code, message })
        }
        OP_OACK => Ok(Packet::OptionAck(parse_options(body)?)),
        other => Err(ParseError::Opcode(other)),
    }
}

/// Serialises a packet (the server sends DATA, OACK and ERROR; tests send the rest).
pub fn encode(p: &Packet) -> Vec<u8> {
    let mut out = Vec::new();
    let strings = |out: &mut Vec<u8>, items: &[&str]| {
        for s in items {
            out.extend_from_slice(s.as_bytes());
            out.push(0);
        }
    };
    match p {
        Packet::Read(r) | Packet::Write(r) => {
            let op = if matches!(p, Packet::Read(_)) {
                OP_RRQ
            } else {
                OP_WRQ
            };
            out.extend_from_slice(&op.to_be_bytes());
            strings(&mut out, &[&r.filename, &r.mode]);
            for (k, v) in &r.options {
                strings(&mut out, &[k, v]);
            }
        }
        Packet::Data { block, data } => {
            out.extend_from_slice(&OP_DATA.to_be_bytes());
            out.extend_from_slice(&block.to_be_bytes());
            out.extend_from_slice(data);
        }
        Packet::Ack { block } => {
            out.extend_from_slice(&OP_ACK.to_be_bytes());
            out.extend_from_slice(&block.to_be_bytes());
        }
        Packet::Error { code, message } => {
            out.extend_from_slice(&OP_ERROR.to_be_bytes());
            out.extend_from_slice(&code.to_be_bytes());
            strings(&mut out, &[message]);
        }
        Packet::OptionAck(options) => {
            out.extend_from_slice(&OP_OACK.to_be_bytes());
            for (k, v) in options {
                strings(&mut out, &[k, v]);
            }
        }
    }
    out
}

/// What a read request resolves to: a file and the options we accept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub path: PathBuf,
    pub blksize: usize,
    /// Options to acknowledge (empty: no OACK, start with DATA 1).
    pub ack: Vec<(String, String)>,
}

/// TFTP error codes (RFC 1350).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TftpError {
    NotFound = 1,
    AccessViolation = 2,
    IllegalOperation = 4,
}

/// Decides what to do with a read request; `size` gives a file's size (for tsize) or None
/// when it does not exist.
pub fn plan(
    dir: &Path,
    req: &Request,
    size: impl Fn(&Path) -> Option<u64>,
) -> Result<Plan, (TftpError, String)> {
    if req.mode != "octet" && req.mode != "netascii" {
        return Err((
            TftpError::IllegalOperation,
            format!("unsupported mode {}", req.mode),
        ));
    }
    let name = req.filename.trim_start_matches('/');
    if !TFTP_FILES.contains(&name) {
        return Err((
            TftpError::AccessViolation,
            format!("{name} is not served here"),
        ));
    }
    let path = dir.join(name);
    let len = size(&path).ok_or((TftpError::NotFound, format!("{name} not found")))?;
    let mut blksize = DEFAULT_BLKSIZE;
    let mut ack = Vec::new();
    for (k, v) in &req.options {
        match k.as_str() {
            "blksize" => {
                if let Ok(n) = v.parse::<usize>() {
                    if (8..=65464).contains(&n) {
                        blksize = n.min(MAX_BLKSIZE);
                        ack.push(("blksize".to_string(), blksize.to_string()));
                    }
                }
            }
            "tsize" => ack.push(("tsize".to_string(), len.to_string())),
            _ => {} // Unknown options are ignored, as RFC 2347 says.
        }
    }
    Ok(Plan { path, blksize, ack })
}

/// Runs the TFTP server on `addr` until `shutdown` resolves.
pub async fn run(
    addr: SocketAddr,
    dir: PathBuf,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    let socket = UdpSocket::bind(addr).await?;
    serve(socket, dir, shutdown).await
}

/// Serves on an already bound socket (tests bind `127.0.0.1:0`).
pub async fn serve(
    socket: UdpSocket,
    dir: PathBuf,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    tracing::info!(addr = %socket.local_addr()?, dir = %dir.display(), "TFTP ready");
    let mut buf = vec![0u8; 1024];
    let slots = crate::listener::Admission::new(MAX_TRANSFERS, MAX_TRANSFERS_PER_PEER);
    tokio::pin!(shutdown);
    loop {
        let (n, peer) = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            r = socket.recv_from(&mut buf) => r?,
        };
        let local = socket.local_addr()?;
        match parse(&buf[..n]) {
            Ok(Packet::Read(req)) => {
                let Some(slot) = slots.admit(peer.ip()) else {
                    // No answer: the source may be forged, and a real client retries.
                    tracing::debug!(%peer, "TFTP request dropped: too many transfers");
                    continue;
                };
                let dir = dir.clone();
                tokio::spawn(async move {
                    let _slot = slot;
                    if let Err(e) = transfer(local, peer, &dir, req).await {
                        tracing::warn!(%peer, error = %e, "TFTP transfer failed");
                    }
                });
            }
            Ok(Packet::Write(_)) => {
                let err = encode(&Packet::Error {
                    code: TftpError::AccessViolation as u16,
                    message: "this server is read-only".into(),
                });
                let _ = socket.send_to(&err, peer).await;
            }
            Ok(_) => {} // Stray packet for an old transfer: ignore.
            Err(e) => tracing::debug!(%peer, error = %e, "ignored malformed TFTP packet"),
        }
    }
}

async fn transfer(
    local: SocketAddr,
    peer: SocketAddr,
    dir: &Path,
    req: Request,
) -> std::io::Result<()> {
    let sock = UdpSocket::bind(SocketAddr::new(local.ip(), 0)).await?;
    sock.connect(peer).await?;
    let sizes = |p: &Path| {
        std::fs::metadata(p)
            .ok()
            .filter(|m| m.is_file())
            .map(|m| m.len())
    };
    // Metadata is one cheap syscall; done inline rather than on the blocking pool.
    let plan = match plan(dir, &req, sizes) {
        Ok(p) => p,
        Err((code, message)) => {
            tracing::info!(%peer, file = %req.filename, %message, "TFTP refused");
            sock.send(&encode(&Packet::Error {
                code: code as u16,
                message,
            }))
            .await?;
            return Ok(());
        }
    };
    tracing::info!(%peer, file = %req.filename, blksize = plan.blksize, "TFTP read");
    let mut file = tokio::fs::File::open(&plan.path).await?;
    if !plan.ack.is_empty() {
        let oack = encode(&Packet::OptionAck(plan.ack.clone()));
        if !send_until_acked(&sock, &oack, 0).await? {
            return Ok(());
        }
    }
    let mut block: u16 = 1;
    let mut chunk = vec![0u8; plan.blksize];
    loop {
        let mut filled = 0;
        while filled < chunk.len() {
            let n = file.read(&mut chunk[filled..]).await?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        let data = encode(&Packet::Data {
            block,
            data: chunk[..filled].to_vec(),
        });
        if !send_until_acked(&sock, &data, block).await? {
            return Ok(());
        }
        if filled < plan.blksize {
            return Ok(());
        }
        block = block.wrapping_add(1);
    }
}

/// Sends `packet` until the peer acknowledges `block`; false when it gave up or errored.
async fn send_until_acked(sock: &UdpSocket, packet: &[u8], block: u16) -> std::io::Result<bool> {
    let mut buf = [0u8; 516];
    for _ in 0..RETRIES {
        sock.send(packet).await?;
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            match tokio::time::timeout_at(deadline, sock.recv(&mut buf)).await {
                Err(_) => break, // timed out: retransmit
                Ok(Err(e)) => return Err(e),
                Ok(Ok(n)) => match parse(&buf[..n]) {
                    Ok(Packet::Ack { block: b }) if b == block => return Ok(true),
                    Ok(Packet::Error { .. }) => return Ok(false),
                    _ => {} // duplicate or stray: keep waiting
                },
            }
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rrq(name: &str, options: &[(&str, &str)]) -> Request {
        Request {
            filename: name.into(),
            mode: "octet".into(),
            options: options
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn packets_round_trip() {
        for p in [
            Packet::Read(rrq("undionly.kpxe", &[("blksize", "1428"), ("tsize", "0")])),
            Packet::Ack { block: 7 },
            Packet::Data {
                block: 65535,
                data: vec![1, 2, 3],
            },
            Packet::Error {
                code: 1,
                message: "nope".into(),
            },
            Packet::OptionAck(vec![("tsize".into(), "42".into())]),
        ] {
            assert_eq!(parse(&encode(&p)), Ok(p));
        }
    }

    #[test]
    fn malformed_packets_are_refused() {
        assert_eq!(parse(&[]), Err(ParseError::Short));
        assert_eq!(parse(&[0, 9]), Err(ParseError::Opcode(9)));
        assert_eq!(parse(&[0, 1, b'a']), Err(ParseError::Unterminated));
        assert_eq!(
            parse(&[0, 1, b'a', 0, b'o', 0, b'k', 0]),
            Err(ParseError::DanglingOption)
        );
        assert_eq!(parse(&[0, 4, 1]), Err(ParseError::Short));
        assert_eq!(parse(&[0, 1, 0xff, 0, b'o', 0]), Err(ParseError::NotAscii));
    }

    #[test]
    fn plan_serves_only_known_files_and_negotiates_options() {
        let dir = Path::new("/srv/tftp");
        let size = |_: &Path| Some(1000);
        let p = plan(
            dir,
            &rrq(
                "undionly.kpxe",
                &[("blksize", "9000"), ("tsize", "0"), ("x", "y")],
            ),
            size,
        )
        .unwrap();
        assert_eq!(p.blksize, MAX_BLKSIZE);
        assert_eq!(
            p.ack,
            vec![
                ("blksize".into(), "1468".into()),
                ("tsize".into(), "1000".into())
            ]
        );
        assert_eq!(p.path, dir.join("undionly.kpxe"));
        let p = plan(dir, &rrq("/ipxe.efi", &[]), size).unwrap();
        assert!(p.ack.is_empty());
        for bad in ["../etc/passwd", "/etc/passwd", "tftp/../../x", "sqlite.db"] {
            assert_eq!(
                plan(dir, &rrq(bad, &[]), size).unwrap_err().0,
                TftpError::AccessViolation
            );
        }
        assert_eq!(
            plan(dir, &rrq("ipxe.efi", &[]), |_| None).unwrap_err().0,
            TftpError::NotFound
        );
        let mut mail = rrq("ipxe.efi", &[]);
        mail.mode = "mail".into();
        assert_eq!(
            plan(dir, &mail, size).unwrap_err().0,
            TftpError::IllegalOperation
        );
    }
}
