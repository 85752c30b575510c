//! Cases × kernels × topologies, then the `--filter` and the `--shard`.

use crate::manifest::{Case, Kernel, Manifest, ManifestError, Topology};

/// One run of one case on one kernel and one topology.
#[derive(Debug, Clone)]
pub struct Job<'m> {
    pub case: &'m Case,
    pub kernel: &'m Kernel,
    pub topology: &'m Topology,
}

impl Job<'_> {
    /// `case/kernel/topology`: what `--filter` matches, what reports name,
    /// and the job's folder under `--out`.
    pub fn id(&self) -> String {
        format!(
            "{}/{}/{}",
            self.case.name, self.kernel.name, self.topology.name
        )
    }
}

/// Every job of the manifest, case by case, then kernel, then topology, in
/// the order the manifest lists them.
pub fn expand(m: &Manifest) -> Vec<Job<'_>> {
    let mut jobs = Vec::new();
    for case in &m.cases {
        for k in &case.kernels {
            for t in &case.topologies {
                jobs.push(Job {
                    case,
                    kernel: m.kernel(k).expect("resolved kernel name"),
                    topology: m.topology(t).expect("resolved topology name"),
                });
            }
        }
    }
    jobs
}

/// `--shard I/N`: the I-th of N (1-based) deterministic slices of the job
/// list; job j (0-based, after the filter) goes to shard j mod N + 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl Shard {
    pub fn parse(what: &str, spec: &str) -> Result<Shard, ManifestError> {
        let bad = || {
            ManifestError(format!(
                "{what} {spec:?}: expected I/N with 1 <= I <= N (e.g. 2/4)"
            ))
        };
        let (i, n) = spec.trim().split_once('/').ok_or_else(bad)?;
        let index: usize = i.trim().parse().map_err(|_| bad())?;
        let count: usize = n.trim().parse().map_err(|_| bad())?;
        if count == 0 || index == 0 || index > count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }

    /// From `--shard`, else from SHARD_INDEX and SHARD_NUMBER (1-based, as
    /// LKFT and GitLab's parallel jobs number them); both or neither.
    pub fn from_cli_or_env(
        cli: Option<&str>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Shard>, ManifestError> {
        if let Some(spec) = cli {
            return Shard::parse("--shard", spec).map(Some);
        }
        match (env("SHARD_INDEX"), env("SHARD_NUMBER")) {
            (None, None) => Ok(None),
            (Some(i), Some(n)) => Shard::parse(
                "SHARD_INDEX/SHARD_NUMBER",
                &format!("{}/{}", i.trim(), n.trim()),
            )
            .map(Some),
            (Some(i), None) => Err(ManifestError(format!(
                "SHARD_INDEX={i:?} is set but SHARD_NUMBER is not"
            ))),
            (None, Some(n)) => Err(ManifestError(format!(
                "SHARD_NUMBER={n:?} is set but SHARD_INDEX is not"
            ))),
        }
    }

    pub fn contains(&self, position: usize) -> bool {
        position % self.count == self.index - 1
    }
}

/// Keeps the jobs whose id matches `filter`, then this shard's share.
pub fn select<'m>(
    jobs: Vec<Job<'m>>,
    filter: Option<&regex::Regex>,
    shard: Option<Shard>,
) -> Vec<Job<'m>> {
    jobs.into_iter()
        .filter(|j| filter.is_none_or(|f| f.is_match(&j.id())))
        .enumerate()
        .filter(|(i, _)| shard.is_none_or(|s| s.contains(*i)))
        .map(|(_, j)| j)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::tests::{load, write_tree};
    use std::collections::BTreeMap;

    const MATRIX: &str = r#"
[[kernel]]
name = "6.12"
[[kernel]]
name = "6.1"
guest = "6.1"
[[topology]]
name = "direct"
file = "direct.toml"
[[topology]]
name = "default"
builtin = true
[[topology]]
name = "plain"
none = true
[[case]]
name = "boot"
command = "true"
[[case]]
name = "cxl"
command = "cxl list"
topologies = ["d*"]
[[case]]
name = "old"
command = "true"
kernels = ["6.1"]
topologies = ["plain"]
"#;

    fn ids(jobs: &[Job]) -> Vec<String> {
        jobs.iter().map(Job::id).collect()
    }

    #[test]
    fn expands_cases_over_their_kernels_and_topologies_in_manifest_order() {
        let dir = write_tree(&[("direct.toml", crate::manifest::tests::DIRECT_TOPOLOGY)]);
        let m = load(&dir, MATRIX).unwrap();
        let jobs = expand(&m);
        assert_eq!(
            ids(&jobs),
            [
                "boot/6.12/direct",
                "boot/6.12/default",
                "boot/6.12/plain",
                "boot/6.1/direct",
                "boot/6.1/default",
                "boot/6.1/plain",
                "cxl/6.12/direct",
                "cxl/6.12/default",
                "cxl/6.1/direct",
                "cxl/6.1/default",
                "old/6.1/plain",
            ]
        );
    }

    #[test]
    fn filter_matches_ids_by_regex() {
        let dir = write_tree(&[("direct.toml", crate::manifest::tests::DIRECT_TOPOLOGY)]);
        let m = load(&dir, MATRIX).unwrap();
        let re = regex::Regex::new("^cxl/.*/direct$|/plain$").unwrap();
        let picked = select(expand(&m), Some(&re), None);
        assert_eq!(
            ids(&picked),
            [
                "boot/6.12/plain",
                "boot/6.1/plain",
                "cxl/6.12/direct",
                "cxl/6.1/direct",
                "old/6.1/plain"
            ]
        );
    }

    #[test]
    fn every_job_lands_in_exactly_one_shard_for_every_shard_count() {
        let dir = write_tree(&[("direct.toml", crate::manifest::tests::DIRECT_TOPOLOGY)]);
        let m = load(&dir, MATRIX).unwrap();
        let all = ids(&expand(&m));
        let re = regex::Regex::new("boot|cxl").unwrap();
        for filter in [None, Some(&re)] {
            let wanted = ids(&select(expand(&m), filter, None));
            for n in 1..=all.len() + 2 {
                let mut seen: BTreeMap<String, usize> = BTreeMap::new();
                let mut sizes = Vec::new();
                for i in 1..=n {
                    let s = Shard { index: i, count: n };
                    let part = ids(&select(expand(&m), filter, Some(s)));
                    // The same shard twice gives the same jobs.
                    assert_eq!(part, ids(&select(expand(&m), filter, Some(s))));
                    sizes.push(part.len());
                    for id in part {
                        *seen.entry(id).or_default() += 1;
                    }
                }
                assert_eq!(seen.len(), wanted.len(), "{n} shards");
                assert!(seen.values().all(|&c| c == 1), "{n} shards: {seen:?}");
                // Round robin: shard sizes differ by at most one.
                let (lo, hi) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
                assert!(hi - lo <= 1, "{n} shards: sizes {sizes:?}");
            }
        }
    }

    #[test]
    fn shard_specs_parse_or_name_what_is_wrong() {
        assert_eq!(
            Shard::parse("--shard", "2/4"),
            Ok(Shard { index: 2, count: 4 })
        );
        assert_eq!(
            Shard::parse("--shard", " 1 / 1 "),
            Ok(Shard { index: 1, count: 1 })
        );
        for bad in ["0/2", "3/2", "1/0", "2", "a/b", "1/2/3", "", "-1/2"] {
            let e = Shard::parse("--shard", bad).unwrap_err().0;
            assert!(e.starts_with(&format!("--shard {bad:?}")), "{bad}: {e}");
        }
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                vars.iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(Shard::from_cli_or_env(None, env(&[])), Ok(None));
        assert_eq!(
            Shard::from_cli_or_env(None, env(&[("SHARD_INDEX", "2"), ("SHARD_NUMBER", "3")])),
            Ok(Some(Shard { index: 2, count: 3 }))
        );
        // The command line wins over the environment.
        assert_eq!(
            Shard::from_cli_or_env(
                Some("1/2"),
                env(&[("SHARD_INDEX", "9"), ("SHARD_NUMBER", "3")])
            ),
            Ok(Some(Shard { index: 1, count: 2 }))
        );
        let e = Shard::from_cli_or_env(None, env(&[("SHARD_INDEX", "1")]))
            .unwrap_err()
            .0;
        assert!(e.contains("SHARD_NUMBER is not"), "{e}");
        let e = Shard::from_cli_or_env(None, env(&[("SHARD_INDEX", "4"), ("SHARD_NUMBER", "3")]))
            .unwrap_err()
            .0;
        assert!(e.contains("SHARD_INDEX/SHARD_NUMBER \"4/3\""), "{e}");
    }
}
