//! A minimal newc cpio writer, to append an injected script (and a kernel
//! module tree, [`crate::modules`]) to the guest's initramfs. Linux unpacks concatenated archives in order (the second may be
//! uncompressed), so the script lands in the rootfs before `/init` runs.

use std::io::Read;

const MAGIC: &str = "070701";
const TRAILER: &str = "TRAILER!!!";
/// Mode bit of a directory (S_IFDIR).
pub const S_IFDIR: u32 = 0o040000;
/// Mode bit of a regular file (S_IFREG).
pub const S_IFREG: u32 = 0o100000;

/// Writes a newc archive member by member into memory
/// (Documentation/driver-api/early-userspace/buffer-format.rst): a 110-byte
/// ASCII header, the NUL-terminated name and the data, each padded to 4 bytes.
pub struct NewcWriter {
    out: Vec<u8>,
    next_ino: u32,
}

impl NewcWriter {
    /// A writer that appends to `out`, first padding it to 4 bytes: the
    /// kernel only finds an archive that starts 4-byte aligned.
    pub fn append_to(mut out: Vec<u8>) -> Self {
        pad4(&mut out);
        NewcWriter { out, next_ino: 1 }
    }

    pub fn new() -> Self {
        Self::append_to(Vec::new())
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.out.len()
    }

    pub fn is_empty(&self) -> bool {
        self.out.is_empty()
    }

    pub fn dir(&mut self, name: &str, perm: u32) {
        self.header(name, S_IFDIR | perm, 0);
        pad4(&mut self.out);
    }

    pub fn file(&mut self, name: &str, perm: u32, data: &[u8]) {
        self.header(name, S_IFREG | perm, data.len() as u32);
        self.out.extend_from_slice(data);
        pad4(&mut self.out);
    }

    /// A regular file of exactly `size` bytes read from `src` straight into
    /// the archive; a source shorter or longer than `size` is an error (the
    /// header already carries the size).
    pub fn file_from(
        &mut self,
        name: &str,
        perm: u32,
        size: u32,
        src: &mut impl Read,
    ) -> std::io::Result<()> {
        self.header(name, S_IFREG | perm, size);
        let start = self.out.len();
        self.out.reserve(size as usize + 4);
        src.take(u64::from(size) + 1).read_to_end(&mut self.out)?;
        if self.out.len() - start != size as usize {
            return Err(std::io::Error::other(format!(
                "changed size while being read ({size} bytes expected, {} read)",
                self.out.len() - start
            )));
        }
        pad4(&mut self.out);
        Ok(())
    }

    /// Ends the archive with its TRAILER!!! member and returns the bytes.
    pub fn finish(mut self) -> Vec<u8> {
        self.next_ino = 0;
        self.header(TRAILER, 0, 0);
        pad4(&mut self.out);
        self.out
    }

    fn header(&mut self, name: &str, mode: u32, size: u32) {
        let ino = self.next_ino;
        self.next_ino = self.next_ino.wrapping_add(1);
        let nlink = if mode & S_IFDIR != 0 { 2 } else { 1 };
        let fields = [
            ino,
            mode,
            0,     // uid
            0,     // gid
            nlink, // nlink
            0,     // mtime
            size,
            0, // devmajor
            0, // devminor
            0, // rdevmajor
            0, // rdevminor
            name.len() as u32 + 1,
            0, // check
        ];
        self.out.extend_from_slice(MAGIC.as_bytes());
        for f in fields {
            self.out.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(0);
        pad4(&mut self.out);
    }
}

impl Default for NewcWriter {
    fn default() -> Self {
        Self::new()
    }
}

fn pad4(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

/// Appends a `/cxlvmm/script` archive to `initrd` (see docs/guest-contract.md).
pub fn append_script(initrd: &mut Vec<u8>, script: &[u8]) {
    let mut w = NewcWriter::append_to(std::mem::take(initrd));
    w.dir("cxlvmm", 0o755);
    w.file("cxlvmm/script", 0o755, script);
    *initrd = w.finish();
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Parses a newc archive back into (name, mode, data), independently of the writer.
    pub(crate) fn parse(mut b: &[u8]) -> Vec<(String, u32, Vec<u8>)> {
        let mut out = Vec::new();
        let start = b.as_ptr() as usize;
        loop {
            assert_eq!(&b[..6], b"070701");
            let field = |i: usize| {
                u32::from_str_radix(std::str::from_utf8(&b[6 + 8 * i..14 + 8 * i]).unwrap(), 16)
                    .unwrap()
            };
            let (mode, size, namesize) = (field(1), field(6) as usize, field(11) as usize);
            let name = std::str::from_utf8(&b[110..110 + namesize - 1])
                .unwrap()
                .to_string();
            let align = |off: usize| (off + 3) & !3;
            let data_off = align(110 + namesize);
            let data = b[data_off..data_off + size].to_vec();
            let next = align(data_off + size);
            assert_eq!((b.as_ptr() as usize - start) % 4, 0);
            b = &b[next..];
            if name == "TRAILER!!!" {
                assert!(b.is_empty(), "{} bytes after the trailer", b.len());
                break;
            }
            out.push((name, mode, data));
        }
        out
    }

    #[test]
    fn script_archive_round_trips_after_unaligned_initrd() {
        let mut initrd = vec![0x1fu8, 0x8b, 0x08]; // 3 bytes: forces padding
        append_script(&mut initrd, b"echo hi\nexit 7\n");
        assert_eq!(&initrd[..4], &[0x1f, 0x8b, 0x08, 0]);
        let entries = parse(&initrd[4..]);
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0], ("cxlvmm".into(), 0o040755, vec![]));
        assert_eq!(entries[1].0, "cxlvmm/script");
        assert_eq!(entries[1].1, 0o100755);
        assert_eq!(entries[1].2, b"echo hi\nexit 7\n");
    }
}
