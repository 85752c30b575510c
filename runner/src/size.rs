//! Memory sizes as users write them on the command line and in manifests.

/// Parses 1G, 512M, 1024K, 4096 (MiB) and plain byte counts with a B suffix.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, mult) = match t.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        None => (t, 1u64 << 20),
        Some((i, _)) => {
            let mult = match t[i..].to_ascii_uppercase().as_str() {
                "B" => 1,
                "K" | "KB" | "KIB" => 1 << 10,
                "M" | "MB" | "MIB" => 1 << 20,
                "G" | "GB" | "GIB" => 1 << 30,
                "T" | "TB" | "TIB" => 1 << 40,
                other => {
                    return Err(format!(
                        "unknown size suffix '{other}' in '{s}' (use K, M, G or T)"
                    ))
                }
            };
            (&t[..i], mult)
        }
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("'{s}' is not a size (expected e.g. 512M or 2G)"))?;
    n.checked_mul(mult)
        .filter(|&b| b > 0)
        .ok_or_else(|| format!("size '{s}' is zero or too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_suffixes() {
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("512mib"), Ok(512 << 20));
        assert_eq!(parse_size("2048"), Ok(2048 << 20));
        assert_eq!(parse_size("4096B"), Ok(4096));
        assert!(parse_size("0").is_err());
        assert!(parse_size("1Q").unwrap_err().contains("'Q'"));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("99999999999T").is_err());
    }
}
