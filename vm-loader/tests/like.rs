//! `vm-loader synth --like IMAGE`: the image written follows IMAGE's mix of
//! classes, loads and verifies, and stays within the word size's address
//! space.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;
use spur_format::WordSize;
use spur_synth::SynthSpec;

mod common;
use common::*;

/// Each class's share of the instances `stats --json` counts.
fn shares(image: &Path) -> BTreeMap<String, f64> {
    let j = json(&["stats", "--json", s(image)]);
    let total = j["total"]["instances"].as_u64().unwrap() as f64;
    j["classes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r: &Value| {
            (
                r["class"].as_str().unwrap().to_owned(),
                r["instances"].as_u64().unwrap() as f64 / total,
            )
        })
        .collect()
}

/// The share of the heap's bytes that `stats --json` finds in free chunks.
fn free_share(image: &Path) -> f64 {
    let j = json(&["stats", "--json", s(image)]);
    let n = &j["not_counted"];
    let free = n["free_bytes"].as_u64().unwrap() as f64;
    let all = j["total"]["bytes"].as_u64().unwrap() as f64
        + free
        + n["hidden_bytes"].as_u64().unwrap() as f64;
    free / all
}

/// Writes `--like source` at `mib` MiB, checks that it verifies intact,
/// that every class with at least 1 % of the source's instances has a
/// share of the new image's within a fifth of its own, plus 0.3 points
/// (the builder's fixed structure and its free chunks take some too), and
/// that free chunks take about the share of the bytes they take in the
/// source (within a quarter, plus one point for the builder's own few).
/// Answers how many classes were compared.
fn follows(source: &Path, out: &Path, mib: &str) -> usize {
    let j = json(&[
        "synth",
        "--json",
        "--like",
        s(source),
        "--heap-mib",
        mib,
        s(out),
    ]);
    assert!(j["objects"].as_u64().unwrap() > 10_000, "{j}");
    let v = json(&["verify", "--json", s(out)]);
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["warnings"].as_array().unwrap().len(), 0, "{v}");
    let want = shares(source);
    let got = shares(out);
    let mut compared = 0;
    for (class, &a) in want.iter().filter(|(_, &a)| a >= 0.01) {
        let b = got.get(class).copied().unwrap_or(0.0);
        assert!(
            (b - a).abs() <= a / 5.0 + 0.003,
            "{class}: {:.4} of the source's instances, {:.4} of the new image's",
            a,
            b
        );
        compared += 1;
    }
    let (a, b) = (free_share(source), free_share(out));
    assert!(
        (b - a).abs() <= a / 4.0 + 0.01,
        "free chunks: {a:.4} of the source's bytes, {b:.4} of the new image's"
    );
    compared
}

#[test]
fn like_a_builder_image_follows_its_classes() {
    let dir = tempfile::tempdir().unwrap();
    for (word, name) in [(WordSize::W64, "w64"), (WordSize::W32, "w32")] {
        let (src, _) = write(dir.path(), name, &SynthSpec::new(word, 2 << 20));
        let out = dir.path().join(format!("{name}-like.image"));
        let n = follows(&src, &out, "6");
        assert!(n >= 8, "{name}: only {n} classes over 1 %");
        let j = json(&["info", "--json", s(&out)]);
        assert_eq!(j["word_size"], word.bytes(), "{name}: {j}");
    }
}

/// A source whose mix is far from the builder's own: mostly instances of
/// two classes the builder lacks, one of pointers and one of 16-bit data,
/// and compiled methods.
#[test]
fn like_an_unusual_mix_follows_it() {
    let dir = tempfile::tempdir().unwrap();
    let class = |name: &str, inst_spec, fixed_slots, instances, bytes| spur_synth::LikeClass {
        name: name.to_owned(),
        inst_spec,
        fixed_slots,
        instances,
        bytes,
    };
    let like = spur_synth::Like {
        classes: vec![
            class("SynthPair", 1, 2, 6000, 6000 * 24),
            class("SynthShorts", 12, 0, 2500, 2500 * 40),
            class("CompiledMethod", 24, 0, 1000, 1000 * 120),
            class("Array", 2, 0, 500, 500 * 64),
        ],
        free_chunks: 0,
        free_bytes: 0,
    };
    let src = dir.path().join("mix.image");
    let mut f = std::fs::File::create(&src).unwrap();
    spur_synth::write_image_like(&SynthSpec::new(WordSize::W64, 2 << 20), Some(&like), &mut f)
        .unwrap();
    drop(f);
    let v = json(&["verify", "--json", s(&src)]);
    assert_eq!(v["ok"], true, "{v}");
    let want = shares(&src);
    assert!(want["SynthPair"] > 0.5, "{want:?}");
    let out = dir.path().join("mix-like.image");
    let n = follows(&src, &out, "6");
    assert!(n >= 4, "only {n} classes over 1 %");
}

#[test]
fn a_32_bit_like_stays_below_4_gib() {
    let dir = tempfile::tempdir().unwrap();
    let (src, _) = write(dir.path(), "w32", &SynthSpec::new(WordSize::W32, 1 << 20));
    let out = dir.path().join("huge.image");
    assert_refused(
        &["synth", "--like", s(&src), "--heap-mib", "4096", s(&out)],
        "address limit",
    );
    assert!(!out.exists());
}

/// `--like` the corpus image `name` at `mib` MiB: at least `classes`
/// classes over 1 % compared, and the word size kept.
fn follows_corpus(name: &str, mib: &str, classes: usize, word: u64) {
    let src = spur_tests::corpus_dir().join(name);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("like.image");
    let n = follows(&src, &out, mib);
    assert!(n >= classes, "{name}: only {n} classes over 1 %");
    let j = json(&["info", "--json", s(&out)]);
    assert_eq!(j["word_size"], word, "{name}: {j}");
}

#[test]
#[ignore = "needs SPUR_CORPUS"]
fn like_the_pharo_8_kernel_follows_its_classes() {
    follows_corpus("pharo8-kernel-empharo-64.image", "16", 10, 8);
}

/// The 32-bit source of the project's large image of small objects
/// (`docs/benchmarks.md`): about 40 bytes an object.
#[test]
#[ignore = "needs SPUR_CORPUS"]
fn like_the_codeparadise_client_follows_its_classes() {
    follows_corpus("pharo-tiny-codeparadise-client-32.image", "8", 8, 4);
}
