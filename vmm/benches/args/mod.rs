//! The benchmarks' command-line options: `--name VALUE` pairs after `--`.

/// The number given as `name VALUE`, or `default`; panics naming the
/// option if VALUE is not a number.
pub fn arg(args: &[String], name: &str, default: u64) -> u64 {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name}: not a number: {v}"))
        })
        .unwrap_or(default)
}
