//! Console lines as the kernel and `dmesg` print them: the printk prefix
//! (`<6>`, `[   12.345678]`, `[  T123]`) comes off, the message's own
//! indentation stays (KTAP nests by it).

/// The message part of a console or dmesg line, without a trailing `\r`.
pub fn message(line: &str) -> &str {
    let mut s = line.strip_suffix('\r').unwrap_or(line);
    // `dmesg -r` and /dev/kmsg style level: <N>
    if let Some(rest) = s.strip_prefix('<') {
        if let Some(end) = rest.find('>') {
            if end > 0 && end <= 3 && rest[..end].bytes().all(|b| b.is_ascii_digit()) {
                s = &rest[end + 1..];
            }
        }
    }
    let Some(after) = strip_bracket(s, |inner| {
        let t = inner.trim_start();
        let (secs, frac) = t.split_once('.').unwrap_or((t, "0"));
        !secs.is_empty()
            && secs.bytes().all(|b| b.is_ascii_digit())
            && frac.bytes().all(|b| b.is_ascii_digit())
    }) else {
        return s;
    };
    s = after;
    // CONFIG_PRINTK_CALLER: [  T123] or [    C0] right after the time.
    if let Some(after) = strip_bracket(s, |inner| {
        let t = inner.trim_start();
        t.len() > 1
            && matches!(t.as_bytes()[0], b'T' | b'C')
            && t[1..].bytes().all(|b| b.is_ascii_digit())
    }) {
        s = after;
    }
    s.strip_prefix(' ').unwrap_or(s)
}

/// `s` after a leading `[inner]` for which `ok(inner)` holds.
fn strip_bracket(s: &str, ok: impl Fn(&str) -> bool) -> Option<&str> {
    let rest = s.strip_prefix('[')?;
    let end = rest.find(']')?;
    ok(&rest[..end]).then(|| &rest[end + 1..])
}

/// The kernel's timestamp of a console line, in seconds, if it has one.
pub fn timestamp(line: &str) -> Option<f64> {
    let rest = line.strip_prefix('[')?;
    let end = rest.find(']')?;
    rest[..end].trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printk_prefixes_come_off_and_indentation_stays() {
        assert_eq!(
            message("[    1.234567] cxl_acpi: hello\r"),
            "cxl_acpi: hello"
        );
        assert_eq!(message("[    1.234567]     ok 1 - t"), "    ok 1 - t");
        assert_eq!(
            message("[ 1502.520319][T14140] BUG: KASAN: x"),
            "BUG: KASAN: x"
        );
        assert_eq!(message("[   23.010589][    C0] UBSAN: y"), "UBSAN: y");
        assert_eq!(
            message("<4>[79512.652553] ---[ end trace ]---"),
            "---[ end trace ]---"
        );
        assert_eq!(message("<6>plain"), "plain");
        // Not printk prefixes: left alone.
        assert_eq!(message("[ OK ] Started"), "[ OK ] Started");
        assert_eq!(
            message("[<ffffffff8135067c>] ? f+0x1/0x2"),
            "[<ffffffff8135067c>] ? f+0x1/0x2"
        );
        assert_eq!(message("<html>"), "<html>");
        assert_eq!(message("ok 1 - x"), "ok 1 - x");
        assert_eq!(timestamp("[   12.500000] x"), Some(12.5));
        assert_eq!(timestamp("x"), None);
    }
}
