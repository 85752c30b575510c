//! The stable-Rust driver: every corpus input, then `iterations` inputs
//! drawn from a seeded generator (random bytes, or a corpus input mutated:
//! bytes flipped, inserted, removed, spliced). No coverage feedback, so it
//! goes less deep than libFuzzer per execution, but it runs anywhere, the
//! same inputs for the same seed, and gives CI a fixed, repeatable dose.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::Target;

/// SplitMix64: small, fast, and good enough to pick bytes.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A value in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next_u64() as u8).collect()
    }
}

/// One generated input: fresh random bytes or a mutated corpus entry.
pub fn generate(rng: &mut Rng, corpus: &[Vec<u8>], max_len: usize) -> Vec<u8> {
    if corpus.is_empty() || rng.below(4) == 0 {
        let len = rng.below(max_len + 1);
        return rng.bytes(len);
    }
    let mut v = corpus[rng.below(corpus.len())].clone();
    for _ in 0..1 + rng.below(8) {
        match rng.below(6) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            1 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] = rng.next_u64() as u8;
            }
            2 => {
                let i = rng.below(v.len() + 1);
                let n = 1 + rng.below(16);
                let add = rng.bytes(n);
                v.splice(i..i, add);
            }
            3 if !v.is_empty() => {
                let i = rng.below(v.len());
                let n = 1 + rng.below(16.min(v.len() - i));
                v.drain(i..i + n);
            }
            4 => {
                let other = &corpus[rng.below(corpus.len())];
                if !other.is_empty() {
                    let from = rng.below(other.len());
                    let i = rng.below(v.len() + 1);
                    v.splice(i..i, other[from..].iter().copied());
                }
            }
            _ if !v.is_empty() => {
                // Interesting values at a random place.
                let i = rng.below(v.len());
                let val: u8 = [0, 0xff, 0x7f, 0x80, 1][rng.below(5)];
                v[i] = val;
            }
            _ => {}
        }
    }
    v.truncate(max_len.max(1) * 4);
    v
}

/// What a run did.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stats {
    pub executions: u64,
    pub elapsed: Duration,
}

/// An input that made the target panic.
#[derive(Clone, Debug)]
pub struct Crash {
    pub input: Vec<u8>,
    pub message: String,
}

/// Runs `target` once on `input`; a panic becomes a `Crash`.
pub fn run_one(target: &Target, input: &[u8]) -> Result<(), Crash> {
    catch_unwind(AssertUnwindSafe(|| (target.run)(input))).map_err(|e| Crash {
        input: input.to_vec(),
        message: e
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "panic".into()),
    })
}

/// Every corpus input, then `iterations` generated ones from `seed`; stops
/// at the first crash.
pub fn run(
    target: &Target,
    corpus: &[Vec<u8>],
    iterations: u64,
    seed: u64,
    max_len: usize,
) -> Result<Stats, Crash> {
    let start = Instant::now();
    let mut executions = 0;
    for input in corpus {
        run_one(target, input)?;
        executions += 1;
    }
    let mut rng = Rng::new(seed);
    for _ in 0..iterations {
        let input = generate(&mut rng, corpus, max_len);
        run_one(target, &input)?;
        executions += 1;
    }
    Ok(Stats {
        executions,
        elapsed: start.elapsed(),
    })
}

/// The fuzz/ directory of this checkout.
pub fn fuzz_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The files of `dir` (sorted by name), or none if it does not exist.
pub fn load_dir(dir: &Path) -> Vec<Vec<u8>> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    paths.sort();
    paths.iter().filter_map(|p| std::fs::read(p).ok()).collect()
}

/// A target's seed corpus and crash regressions (`fuzz/corpus/<name>`,
/// `fuzz/regressions/<name>`).
pub fn corpus_of(target: &Target) -> Vec<Vec<u8>> {
    let mut c = load_dir(&fuzz_dir().join("corpus").join(target.name));
    c.extend(load_dir(&fuzz_dir().join("regressions").join(target.name)));
    c
}
