//! `spur-damage IMAGE OUT_DIR COUNT [SEED]`: writes COUNT randomly damaged
//! copies of IMAGE into OUT_DIR, for the outside sweep
//! (`tests/outside-sweep.sh`), and prints one line per copy: its file name,
//! a tab, and the damage done.
//!
//! Each copy gets one to four damages drawn from the systematic list of
//! `spur_tests::mutate::plan` (truncations, bit flips in the header, the
//! bridges and object headers, bent pointers, random words), applied in
//! turn; the same arguments always write the same copies.

use spur_format::layout::to_usize;
use std::path::PathBuf;
use std::process::ExitCode;

use spur_tests::mutate::{plan, Budget, Damage, Rng};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (image, out, count) = match &args[..] {
        [i, o, c] | [i, o, c, _] => (PathBuf::from(i), PathBuf::from(o), c.parse::<usize>()),
        _ => {
            eprintln!("usage: spur-damage IMAGE OUT_DIR COUNT [SEED]");
            return ExitCode::from(2);
        }
    };
    let Ok(count) = count else {
        eprintln!("spur-damage: COUNT must be a number");
        return ExitCode::from(2);
    };
    let seed = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(1u64);
    let run = || -> Result<(), String> {
        let bytes = std::fs::read(&image).map_err(|e| format!("{}: {e}", image.display()))?;
        let damages =
            plan(&bytes, Budget::FULL, seed).map_err(|e| format!("{}: {e}", image.display()))?;
        std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
        let stem = image.file_stem().unwrap_or_default().to_string_lossy();
        // Kinds of damage are drawn evenly, then one damage of the kind:
        // object headers, which are many, would otherwise drown the rest.
        let mut kinds: Vec<(&str, Vec<&Damage>)> = Vec::new();
        for d in &damages {
            let kind = d.kind();
            match kinds.iter_mut().find(|(k, _)| *k == kind) {
                Some((_, v)) => v.push(d),
                None => kinds.push((kind, vec![d])),
            }
        }
        let mut rng = Rng::new(seed ^ 0xD00D);
        for n in 0..count {
            let mut copy = bytes.clone();
            let mut said = Vec::new();
            for _ in 0..=rng.below(4) {
                let (_, of_kind) = &kinds[to_usize(rng.below(kinds.len() as u64))];
                let d = of_kind[to_usize(rng.below(of_kind.len() as u64))];
                copy = d.apply(&copy);
                said.push(d.to_string());
                if copy.is_empty() {
                    break;
                }
            }
            let name = format!("{stem}-{n:05}.image");
            std::fs::write(out.join(&name), &copy).map_err(|e| format!("{name}: {e}"))?;
            println!("{name}\t{}", said.join("; "));
        }
        Ok(())
    };
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("spur-damage: {e}");
            ExitCode::from(2)
        }
    }
}
