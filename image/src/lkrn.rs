//! Makes Debian's `ipxe.lkrn` work after Linux's kexec.
//!
//! The agent chainloads iPXE on BIOS machines with `kexec -c -l ipxe.lkrn --type=bzImage
//! --real-mode`. Linux's shutdown leaves the 8259 PIC masked and remapped (vectors 0x30+) and
//! PIT channel 0 stopped, so iPXE's BIOS timer (the tick count IRQ0 keeps in the BIOS data
//! area) never advances and iPXE waits forever at "Configuring (net0)". This patch adds a
//! real-mode stub that puts the PIC and PIT back the way a BIOS leaves them, then runs iPXE's
//! own setup code unchanged.
//!
//! Layout of `ipxe.lkrn` (iPXE's `lkrnprefix.S`, Linux boot protocol 2.07), as offsets in the
//! file, which kexec copies unchanged into the real-mode segment SEG (DS = SEG):
//!
//! ```text
//! 0x000-0x1f0  legacy boot sector: `.org 0x1f1` padding in lkrnprefix.S, all zero, never
//!              referenced by iPXE; kexec --real-mode writes only 0x020-0x023 there
//!              (cl_magic, cl_offset)                                  <- STUB at 0x180
//! 0x1f1        setup header (setup_sects ... boot_flag 0xaa55 at 0x1fe)
//! 0x200        `jmp short setup` (eb XX): the real-mode entry, CS = SEG+0x20, IP = 0
//! 0x202        "HdrS", version 0x0207, ... header fields kexec fills in
//! 0x240        hardware_subarch_data (8 bytes): a 2.07 field only paravirtualised Linux
//!              kernels read; iPXE never does and kexec copies it as is  <- TRAMPOLINE
//! 0x248        iPXE's version string, then `setup:` (push ds; push $1f; lret)
//! ```
//!
//! The stub cannot be reached by a short backward jump from the entry: IP is 0 there, and a
//! jump to IP -0x80 wraps to 0xff80 in the same segment. So the entry jump (1 byte changed:
//! its displacement) goes forward to a 5-byte trampoline in hardware_subarch_data, which
//! far-returns to SEG:0x180 (`push ds; push 0x180; retf`, using DS = SEG as iPXE's own setup
//! code does). The stub saves FLAGS and AX, reprograms the PICs and PIT with interrupts off,
//! restores them, and jumps near to SEG:setup, whose first act is to fix CS from DS itself.
//!
//! Changed bytes: 0x201 (1), 0x180..0x180+STUB.len() (zero before), 0x240..0x245 (zero
//! before). Nothing else moves; the file size stays the same.

use std::fmt;

/// Where the stub goes (file offset = offset in the real-mode segment).
pub const STUB_AT: usize = 0x180;
/// hardware_subarch_data in the setup header: the trampoline's home.
pub const TRAMPOLINE_AT: usize = 0x240;
const TRAMPOLINE_ROOM: usize = 8;
const JUMP_AT: usize = 0x200;
/// The boot sector padding ends where the setup header begins.
const HEADER_AT: usize = 0x1f1;

/// The stub, up to the final `jmp near` (3 bytes, added with the right displacement).
#[rustfmt::skip]
const STUB: &[u8] = &[
    0x9c,       // pushf
    0xfa,       // cli            no IRQ while the PICs are half set up
    0x50,       // push ax
    0xb0, 0x11, // mov al, 0x11   ICW1: edge triggered, cascade, ICW4 follows
    0xe6, 0x20, // out 0x20, al     master
    0xe6, 0xa0, // out 0xa0, al     slave
    0xb0, 0x08, // mov al, 0x08   ICW2 master: IRQ0-7 -> INT 08h-0Fh (the BIOS vectors)
    0xe6, 0x21, // out 0x21, al
    0xb0, 0x70, // mov al, 0x70   ICW2 slave: IRQ8-15 -> INT 70h-77h (the BIOS vectors)
    0xe6, 0xa1, // out 0xa1, al
    0xb0, 0x04, // mov al, 0x04   ICW3 master: a slave on IRQ2
    0xe6, 0x21, // out 0x21, al
    0xb0, 0x02, // mov al, 0x02   ICW3 slave: cascade identity 2
    0xe6, 0xa1, // out 0xa1, al
    0xb0, 0x01, // mov al, 0x01   ICW4: 8086 mode, normal EOI
    0xe6, 0x21, // out 0x21, al
    0xe6, 0xa1, // out 0xa1, al
    0xb0, 0xf8, // mov al, 0xf8   OCW1 master: unmask IRQ0-2 (timer, keyboard, cascade)
    0xe6, 0x21, // out 0x21, al
    0xb0, 0xff, // mov al, 0xff   OCW1 slave: all masked (iPXE polls its NIC)
    0xe6, 0xa1, // out 0xa1, al
    0xb0, 0x20, // mov al, 0x20   OCW2: non-specific EOI, in case an IRQ was in service
    0xe6, 0x20, // out 0x20, al     when Linux stopped
    0xe6, 0xa0, // out 0xa0, al
    0xb0, 0x36, // mov al, 0x36   PIT: channel 0, lobyte/hibyte, mode 3, binary
    0xe6, 0x43, // out 0x43, al
    0x30, 0xc0, // xor al, al     divisor 0 = 65536: 18.2 Hz, the BIOS rate
    0xe6, 0x40, // out 0x40, al
    0xe6, 0x40, // out 0x40, al
    0x58,       // pop ax
    0x9d,       // popf
];

/// `push ds; push imm16 (STUB_AT); retf`
fn trampoline() -> [u8; 5] {
    let [lo, hi] = (STUB_AT as u16).to_le_bytes();
    [0x1e, 0x68, lo, hi, 0xcb]
}

/// What [`patch`] changed, for the build log and the README.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Patched {
    /// Where the entry jump used to go (iPXE's `setup:`), as a file offset.
    pub setup_at: usize,
    pub stub_len: usize,
    /// Byte ranges changed, as (offset, length).
    pub changed: Vec<(usize, usize)>,
}

impl fmt::Display for Patched {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "entry jump 0x200 -> trampoline 0x{TRAMPOLINE_AT:03x} -> PIC/PIT stub "
        )?;
        write!(
            f,
            "0x{STUB_AT:03x}..0x{:03x} -> setup 0x{:03x}; bytes changed:",
            STUB_AT + self.stub_len,
            self.setup_at
        )?;
        for (at, len) in &self.changed {
            write!(f, " 0x{at:03x}+{len}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    TooShort(usize),
    NotBzImage(&'static str),
    Protocol(u16),
    AlreadyPatched,
    NotFree { at: usize, len: usize },
    SetupOutOfReach(usize),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::TooShort(n) => write!(f, "only {n} bytes: not an ipxe.lkrn"),
            Error::NotBzImage(what) => write!(f, "not a bzImage: {what}"),
            Error::Protocol(v) => write!(
                f,
                "boot protocol {}.{:02}: the trampoline needs 2.07 or later (hardware_subarch_data)",
                v >> 8,
                v & 0xff
            ),
            Error::AlreadyPatched => f.write_str("already patched"),
            Error::NotFree { at, len } => write!(
                f,
                "bytes 0x{at:03x}+{len} are not zero: this is not the lkrnprefix layout the patch was made for"
            ),
            Error::SetupOutOfReach(at) => {
                write!(
                    f,
                    "the entry jump goes to 0x{at:03x}, not past the setup header"
                )
            }
        }
    }
}

impl std::error::Error for Error {}

/// Patches `image` (a whole `ipxe.lkrn`) in place.
pub fn patch(image: &mut [u8]) -> Result<Patched, Error> {
    if image.len() < 0x400 {
        return Err(Error::TooShort(image.len()));
    }
    if image[0x1fe..0x200] != [0x55, 0xaa] {
        return Err(Error::NotBzImage("no boot flag 0xaa55 at 0x1fe"));
    }
    if &image[0x202..0x206] != b"HdrS" {
        return Err(Error::NotBzImage("no \"HdrS\" at 0x202"));
    }
    if image[JUMP_AT] != 0xeb {
        return Err(Error::NotBzImage("no short jump at 0x200"));
    }
    let version = u16::from_le_bytes([image[0x206], image[0x207]]);
    if version < 0x0207 {
        return Err(Error::Protocol(version));
    }
    let tramp = trampoline();
    if image[TRAMPOLINE_AT..TRAMPOLINE_AT + tramp.len()] == tramp {
        return Err(Error::AlreadyPatched);
    }
    let disp = image[JUMP_AT + 1] as i8;
    let setup_at = (JUMP_AT as isize + 2 + disp as isize) as usize;
    // Protocol 2.07's header ends at 0x248; the setup code must lie beyond it.
    if setup_at < TRAMPOLINE_AT + TRAMPOLINE_ROOM {
        return Err(Error::SetupOutOfReach(setup_at));
    }
    let stub_len = STUB.len() + 3;
    for (at, len) in [(STUB_AT, stub_len), (TRAMPOLINE_AT, TRAMPOLINE_ROOM)] {
        if image[at..at + len].iter().any(|&b| b != 0) {
            return Err(Error::NotFree { at, len });
        }
    }
    debug_assert!(STUB_AT + stub_len <= HEADER_AT);

    let mut stub = STUB.to_vec();
    // jmp near setup: the displacement counts from the end of the 3-byte instruction.
    let rel = setup_at as isize - (STUB_AT + stub_len) as isize;
    stub.push(0xe9);
    stub.extend_from_slice(&(rel as i16).to_le_bytes());
    image[STUB_AT..STUB_AT + stub_len].copy_from_slice(&stub);
    image[TRAMPOLINE_AT..TRAMPOLINE_AT + tramp.len()].copy_from_slice(&tramp);
    image[JUMP_AT + 1] = (TRAMPOLINE_AT - (JUMP_AT + 2)) as u8;

    Ok(Patched {
        setup_at,
        stub_len,
        changed: vec![
            (STUB_AT, stub_len),
            (JUMP_AT + 1, 1),
            (TRAMPOLINE_AT, tramp.len()),
        ],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first 0x300 bytes of an lkrnprefix image: zero boot sector, header, jump to 0x267.
    fn lkrn() -> Vec<u8> {
        let mut img = vec![0u8; 0x600];
        img[0x1f1] = 5; // setup_sects
        img[0x1fe..0x200].copy_from_slice(&[0x55, 0xaa]);
        img[0x200..0x202].copy_from_slice(&[0xeb, 0x65]);
        img[0x202..0x206].copy_from_slice(b"HdrS");
        img[0x206..0x208].copy_from_slice(&[0x07, 0x02]);
        img[0x248..0x250].copy_from_slice(b"1.0.0+gi");
        img[0x267..0x26c].copy_from_slice(&[0x1e, 0x68, 0x6c, 0x02, 0xcb]);
        img
    }

    #[test]
    fn patches_the_three_places_and_nothing_else() {
        let orig = lkrn();
        let mut img = orig.clone();
        let p = patch(&mut img).unwrap();
        assert_eq!(p.setup_at, 0x267);
        let diff: Vec<usize> = (0..img.len()).filter(|&i| img[i] != orig[i]).collect();
        assert!(diff.iter().all(|&i| i == 0x201
            || (STUB_AT..STUB_AT + p.stub_len).contains(&i)
            || (0x240..0x245).contains(&i)));
        assert_eq!(img.len(), orig.len());
    }

    #[test]
    fn control_flow_lands_on_setup() {
        let mut img = lkrn();
        let p = patch(&mut img).unwrap();
        // Entry: jmp short from IP 0 (file 0x200) to the trampoline.
        assert_eq!(img[0x200], 0xeb);
        assert_eq!(0x202 + img[0x201] as usize, TRAMPOLINE_AT);
        // Trampoline: push ds; push STUB_AT; retf.
        assert_eq!(img[0x240..0x245], [0x1e, 0x68, 0x80, 0x01, 0xcb]);
        // Stub ends with jmp near to setup, relative to its own end.
        let end = STUB_AT + p.stub_len;
        assert_eq!(img[end - 3], 0xe9);
        let rel = i16::from_le_bytes([img[end - 2], img[end - 1]]) as isize;
        assert_eq!(end as isize + rel, 0x267);
        assert!(end <= HEADER_AT);
    }

    #[test]
    fn refuses_twice() {
        let mut img = lkrn();
        patch(&mut img).unwrap();
        assert_eq!(patch(&mut img), Err(Error::AlreadyPatched));
    }

    #[test]
    fn refuses_other_layouts() {
        let mut img = lkrn();
        img[0x190] = 1;
        assert_eq!(
            patch(&mut img),
            Err(Error::NotFree {
                at: STUB_AT,
                len: STUB.len() + 3
            })
        );
        let mut img = lkrn();
        img[0x206] = 0x06;
        assert_eq!(patch(&mut img), Err(Error::Protocol(0x0206)));
        let mut img = lkrn();
        img[0x202] = b'X';
        assert!(matches!(patch(&mut img), Err(Error::NotBzImage(_))));
        assert_eq!(patch(&mut [0u8; 10]), Err(Error::TooShort(10)));
    }
}
