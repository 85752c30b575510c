//! CI's dose of every fuzz target on stable Rust: its seed corpus, every
//! input that once crashed it (fuzz/regressions), and a fixed stream of
//! seeded random and mutated inputs. A panic fails the test with the input
//! written out, as `fuzz-run` would.

use cxlvmm_fuzz::runner::{corpus_of, run};
use cxlvmm_fuzz::TARGETS;

/// Inputs per target beyond the corpus; `FUZZ_ITERATIONS` raises it.
fn iterations() -> u64 {
    std::env::var("FUZZ_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1500)
}

#[test]
fn every_target_survives_its_corpus_regressions_and_a_seeded_stream() {
    let mut report = Vec::new();
    for t in TARGETS {
        let corpus = corpus_of(t);
        assert!(
            !corpus.is_empty(),
            "{}: no seed corpus in fuzz/corpus",
            t.name
        );
        match run(t, &corpus, iterations(), 0x5eed, 4096) {
            Ok(s) => report.push(format!("{}: {} executions", t.name, s.executions)),
            Err(c) => panic!(
                "{} panicked on a {}-byte input: {}\ninput: {:02x?}",
                t.name,
                c.input.len(),
                c.message,
                c.input
            ),
        }
    }
    eprintln!("{}", report.join("\n"));
}

#[test]
fn the_regressions_still_reach_their_code() {
    // Each kept crash input is a real program for its target: it must run
    // to the end now (a panic fails the test above too; this one names it).
    for t in TARGETS {
        let dir = cxlvmm_fuzz::runner::fuzz_dir()
            .join("regressions")
            .join(t.name);
        for input in cxlvmm_fuzz::runner::load_dir(&dir) {
            cxlvmm_fuzz::runner::run_one(t, &input)
                .unwrap_or_else(|c| panic!("{}: {}", t.name, c.message));
        }
    }
}
