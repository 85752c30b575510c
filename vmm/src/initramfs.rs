//! A minimal newc cpio writer, to append an injected script to the guest's
//! initramfs. Linux unpacks concatenated archives in order (the second may be
//! uncompressed), so the script lands in the rootfs before `/init` runs.

const MAGIC: &str = "070701";

/// Builds an uncompressed newc archive from (path, mode, contents) entries;
/// a mode with the directory bit gets no contents.
pub fn newc_archive(entries: &[(&str, u32, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (ino, (name, mode, data)) in entries.iter().enumerate() {
        push_entry(&mut out, ino as u32 + 1, name, *mode, data);
    }
    push_entry(&mut out, 0, "TRAILER!!!", 0, &[]);
    out
}

fn push_entry(out: &mut Vec<u8>, ino: u32, name: &str, mode: u32, data: &[u8]) {
    let namesize = name.len() + 1;
    let nlink = if mode & 0o040000 != 0 { 2 } else { 1 };
    let fields = [
        ino,
        mode,
        0,     // uid
        0,     // gid
        nlink, // nlink
        0,     // mtime
        data.len() as u32,
        0, // devmajor
        0, // devminor
        0, // rdevmajor
        0, // rdevminor
        namesize as u32,
        0, // check
    ];
    out.extend_from_slice(MAGIC.as_bytes());
    for f in fields {
        out.extend_from_slice(format!("{f:08x}").as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    pad4(out);
    out.extend_from_slice(data);
    pad4(out);
}

fn pad4(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

/// Appends a `/cxlvmm/script` archive to `initrd` (see docs/guest-contract.md).
pub fn append_script(initrd: &mut Vec<u8>, script: &[u8]) {
    // The kernel only recognises an archive that starts 4-byte aligned.
    pad4(initrd);
    initrd.extend(newc_archive(&[
        ("cxlvmm", 0o040755, &[]),
        ("cxlvmm/script", 0o100755, script),
    ]));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses a newc archive back into (name, mode, data), independently of the writer.
    fn parse(mut b: &[u8]) -> Vec<(String, u32, Vec<u8>)> {
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
