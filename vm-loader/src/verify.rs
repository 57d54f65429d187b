//! `vm-loader verify`: load the heap, then check it as the VMs do.

use std::fmt::Write;

use anyhow::Result;
use serde::Serialize;
use spur_loader::{Finding, Report};

use crate::cli::LoadArgs;
use crate::load::{load_image, placement_text};
use crate::out::emit;
use crate::Outcome;

/// The JSON of `verify`.
#[derive(Debug, Serialize)]
pub struct VerifyJson {
    pub ok: bool,
    pub placement: &'static str,
    pub swizzled: bool,
    /// Why the heap was relocated although its old addresses were asked for
    /// (what held them), or null.
    pub fallback: Option<String>,
    pub objects: u64,
    pub free_chunks: u64,
    pub classes: u64,
    pub errors: Vec<FindingJson>,
    pub warnings: Vec<FindingJson>,
    /// Findings beyond those listed, counted only.
    pub errors_dropped: u64,
    pub warnings_dropped: u64,
    /// How long the checks took (the load not included), in microseconds.
    pub verify_us: u64,
}

#[derive(Debug, Serialize)]
pub struct FindingJson {
    pub addr: u64,
    pub kind: &'static str,
    pub what: String,
}

impl From<&Finding> for FindingJson {
    fn from(f: &Finding) -> Self {
        FindingJson {
            addr: f.addr,
            kind: f.kind.name(),
            what: f.what.clone(),
        }
    }
}

pub fn run(args: &LoadArgs, json: bool) -> Result<Outcome> {
    let heap = load_image(args)?;
    let t = std::time::Instant::now();
    let report = spur_loader::verify_with(&heap, args.place.threads());
    let verify_us = u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX);
    let mut j = to_json(&report, heap.placement().name(), heap.swizzled());
    j.verify_us = verify_us;
    j.fallback = heap.fallback_reason().map(str::to_owned);
    emit(json, &j, || text(&j))?;
    Ok(if j.ok { Outcome::Ok } else { Outcome::Corrupt })
}

fn to_json(r: &Report, placement: &'static str, swizzled: bool) -> VerifyJson {
    VerifyJson {
        ok: r.ok(),
        placement,
        swizzled,
        fallback: None,
        objects: r.objects,
        free_chunks: r.free_chunks,
        classes: r.classes,
        errors: r.errors.iter().map(FindingJson::from).collect(),
        warnings: r.warnings.iter().map(FindingJson::from).collect(),
        errors_dropped: r.errors_dropped,
        warnings_dropped: r.warnings_dropped,
        verify_us: 0,
    }
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn text(j: &VerifyJson) -> String {
    let mut s = String::new();
    let n_err = j.errors.len() as u64 + j.errors_dropped;
    let n_warn = j.warnings.len() as u64 + j.warnings_dropped;
    let verdict = if j.ok {
        "intact".to_string()
    } else {
        format!("CORRUPT ({})", plural(n_err, "error", "errors"))
    };
    let _ = writeln!(
        s,
        "{verdict}: {}, {}, {}, {}; loaded {}",
        plural(j.objects, "object", "objects"),
        plural(j.free_chunks, "free chunk", "free chunks"),
        plural(j.classes, "class", "classes"),
        plural(n_warn, "warning", "warnings"),
        placement_text(j.placement, j.swizzled)
    );
    for (label, list, dropped) in [
        ("error", &j.errors, j.errors_dropped),
        ("warning", &j.warnings, j.warnings_dropped),
    ] {
        for f in list {
            let _ = writeln!(s, "{label}: [{}] {:#x}: {}", f.kind, f.addr, f.what);
        }
        if dropped > 0 {
            let _ = writeln!(s, "{label}: ... and {dropped} more not listed");
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use spur_loader::FindingKind;

    #[test]
    fn a_report_with_errors_is_corrupt_and_lists_each_finding() {
        let mut r = Report {
            objects: 10,
            ..Default::default()
        };
        r.errors.push(Finding {
            kind: FindingKind::Pointer,
            addr: 0x1008,
            what: "slot 2 points into the middle of 0x1000".into(),
        });
        let j = to_json(&r, "relocated", true);
        assert!(!j.ok);
        let t = text(&j);
        let lines: Vec<_> = t.lines().collect();
        assert_eq!(lines.len(), 2, "{t}");
        assert!(lines[0].starts_with("CORRUPT (1 error): 10 objects"), "{t}");
        assert_eq!(
            lines[1],
            "error: [pointer] 0x1008: slot 2 points into the middle of 0x1000"
        );
    }
}
