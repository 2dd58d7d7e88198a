//! The short bounded fuzz run of `cargo test` (stable, no cargo-fuzz): every input committed
//! under `fuzz/corpus/<target>/` goes through the same harness the cargo-fuzz target runs
//! (`bigarrays::fuzzing`), then a seeded mutation loop (bit flips, interesting values,
//! truncation, insertions, duplicated runs) runs from those seeds for a fixed number of
//! inputs per target. A panic in any harness fails the test and prints the input.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bigarrays::fuzzing::{mutate, targets, Rng};

/// Mutated inputs per target (and a time cap, for slow debug builds on busy machines).
const MUTATIONS: usize = 10_000;
const TIME_CAP: Duration = Duration::from_millis(1500);
const MAX_LEN: usize = 8192;

fn corpus(name: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(name);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("a readable corpus entry").path())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).expect("a readable corpus file");
            (p, bytes)
        })
        .collect()
}

fn run(name: &str, f: &dyn Fn(&[u8]), input: &[u8], what: &dyn std::fmt::Display) {
    if catch_unwind(AssertUnwindSafe(|| f(input))).is_err() {
        panic!("{name}: the harness panicked on {what}: {input:02x?}");
    }
}

#[test]
#[cfg_attr(
    not(all(feature = "jpeg", feature = "jxl")),
    ignore = "without the jpeg and jxl features the registry, so the harness list, lacks \
              decode_jpeg or decode_jxl"
)]
fn every_target_has_a_committed_corpus() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let targets = targets();
    for (name, _) in targets {
        assert!(!corpus(name).is_empty(), "fuzz/corpus/{name} is empty");
    }
    let dirs = std::fs::read_dir(root).unwrap().count();
    assert_eq!(dirs, targets.len(), "a corpus directory without a harness");
}

/// The harness list comes from the codec registry; the Makefile's `FUZZ_TARGETS` and the
/// cargo-fuzz binaries must name the same targets, so a new codec cannot miss them.
#[test]
#[cfg_attr(
    not(all(feature = "jpeg", feature = "jxl")),
    ignore = "without the jpeg and jxl features the registry, so the harness list, lacks \
              decode_jpeg or decode_jxl"
)]
fn makefile_and_cargo_fuzz_list_every_target() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut want: Vec<String> = targets().iter().map(|(n, _)| n.clone()).collect();
    want.sort();
    let makefile = std::fs::read_to_string(root.join("Makefile")).unwrap();
    let start = makefile
        .find("FUZZ_TARGETS :=")
        .expect("FUZZ_TARGETS in the Makefile");
    let mut listed = Vec::new();
    for line in makefile[start + "FUZZ_TARGETS :=".len()..].lines() {
        let more = line.trim_end().ends_with('\\');
        listed.extend(
            line.trim_end_matches('\\')
                .split_whitespace()
                .map(str::to_string),
        );
        if !more {
            break;
        }
    }
    listed.sort();
    assert_eq!(listed, want, "the Makefile's FUZZ_TARGETS");
    let cargo = std::fs::read_to_string(root.join("fuzz/Cargo.toml")).unwrap();
    let mut bins: Vec<String> = cargo
        .lines()
        .filter_map(|l| l.strip_prefix("name = \""))
        .filter_map(|l| l.strip_suffix('"'))
        .filter(|n| *n != "bigarrays-fuzz")
        .map(str::to_string)
        .collect();
    bins.sort();
    assert_eq!(bins, want, "the [[bin]]s of fuzz/Cargo.toml");
    for name in &want {
        let file = root.join(format!("fuzz/fuzz_targets/{name}.rs"));
        assert!(file.exists(), "{} is missing", file.display());
    }
}

#[test]
fn corpus_replays_without_panics() {
    for (name, f) in targets() {
        for (path, bytes) in corpus(name) {
            run(name, f, &bytes, &path.display());
        }
    }
}

#[test]
fn seeded_mutations_run_without_panics() {
    for (t, (name, f)) in targets().iter().enumerate() {
        let seeds = corpus(name);
        let mut rng = Rng::new(0x5eed_0000 + t as u64);
        let start = Instant::now();
        let mut runs = 0;
        for i in 0..MUTATIONS {
            if start.elapsed() > TIME_CAP {
                break;
            }
            let (_, seed) = &seeds[rng.below(seeds.len())];
            let input = mutate(&mut rng, seed, MAX_LEN);
            run(name, f, &input, &format_args!("mutation {i} (seed {t})"));
            runs += 1;
        }
        eprintln!("{name}: {runs} mutated inputs in {:.2?}", start.elapsed());
    }
}
