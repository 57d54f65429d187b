//! The checked-in header is what cbindgen makes of this crate now: a call
//! or struct changed without regenerating `include/spur_loader.h` fails
//! here. `SPUR_BLESS_HEADER=1` rewrites the header instead.

use std::path::Path;

#[test]
fn the_checked_in_header_is_a_fresh_generation() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config =
        cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).expect("cbindgen.toml");
    let bindings = cbindgen::Builder::new()
        .with_config(config)
        .with_src(crate_dir.join("src/lib.rs"))
        .generate()
        .expect("cbindgen generates the header");
    let dir = tempfile::tempdir().unwrap();
    let fresh = dir.path().join("spur_loader.h");
    bindings.write_to_file(&fresh);
    let fresh = std::fs::read_to_string(&fresh).unwrap();
    let checked_in = crate_dir.join("../../include/spur_loader.h");
    if std::env::var_os("SPUR_BLESS_HEADER").is_some() {
        std::fs::write(&checked_in, &fresh).unwrap();
        return;
    }
    let old = std::fs::read_to_string(&checked_in).unwrap_or_default();
    if old != fresh {
        let first = old
            .lines()
            .zip(fresh.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(old.lines().count().min(fresh.lines().count()));
        panic!(
            "include/spur_loader.h differs from a fresh generation from line {} on \
             (fresh: {:?}); regenerate it with SPUR_BLESS_HEADER=1 cargo test -p spur-capi --test header",
            first + 1,
            fresh.lines().nth(first)
        );
    }
    // Every call the crate exports is declared.
    for name in [
        "spur_load",
        "spur_release",
        "spur_wire",
        "spur_snapshot",
        "spur_last_error",
    ] {
        assert!(
            fresh.contains(&format!(" {name}(")),
            "{name} is not in the header"
        );
    }
}
