//! Which Smalltalk wrote the image: Pharo, Squeak or Cuis, told from
//! evidence in the heap (never from the file name).
//!
//! Each clue adds points to the dialects it points at:
//!
//! | clue | points |
//! |---|---|
//! | a marker class in the class table (Pharo: `FixedLayout`, `GlobalVariable`, `RPackage`; Squeak: `MorphicProject`, `ReleaseBuilder`; Cuis: `Feature`, `CodePackage`) | 3 to its dialect |
//! | class objects hold a `…Layout` object in slot 3 (Pharo 5+ slots) | 3 Pharo |
//! | the scheduler association is a `GlobalVariable` (Pharo 7+) | 3 Pharo |
//! | class names carry the `PC` prefix of the Pharo VM's test kernel (`PCArray`) | 3 Pharo |
//! | special objects 14 and 37 are both nil: the Pharo numbering leaves them unused (§4.3) | 2 Pharo |
//! | special object 14 is set (TheDisplay in the Squeak numbering) | 1 Squeak, 1 Cuis |
//! | special object 37 is a class (ClassFullBlockClosure in the Squeak numbering) | 1 Squeak, 1 Cuis |
//! | special object 8 (`Smalltalk`) is a `SmalltalkImage` | 1 Pharo, 1 Squeak |
//! | special object 8 is a `SystemDictionary` (Cuis has no `SmalltalkImage`) | 1 Cuis |
//!
//! The dialect with the most points wins when it has at least 3 and leads
//! the next by at least 2; otherwise the answer is [`Dialect::Unknown`].
//! The marker search reads every class's name, the one costly step of
//! wiring a large image, so it is skipped when the other clues already
//! decide beyond what any dialect's markers could change.
//! Minimal bootstrapped kernels (Pharo Candle) carry no marker class; the
//! special objects array then decides. The Pharo clues were checked on the
//! four Pharo images of the corpus; the Squeak and Cuis markers come from
//! those systems' class lists, as no Squeak or Cuis image is in the corpus.

use crate::class_table::ClassTable;
use crate::memory::{Oop, ReadView};
use crate::special_objects::{index, SpecialObjects};

/// A Smalltalk dialect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// Pharo (pharo.org).
    Pharo,
    /// Squeak (squeak.org).
    Squeak,
    /// Cuis (cuis.st).
    Cuis,
    /// Not enough evidence (e.g. the builder's synthetic images).
    Unknown,
}

impl Dialect {
    /// The name scripts see: `pharo`, `squeak`, `cuis`, `unknown`.
    pub const fn name(self) -> &'static str {
        match self {
            Dialect::Pharo => "pharo",
            Dialect::Squeak => "squeak",
            Dialect::Cuis => "cuis",
            Dialect::Unknown => "unknown",
        }
    }
    /// Which numbering of the special objects array applies (§4.3).
    pub const fn uses_pharo_numbering(self) -> bool {
        matches!(self, Dialect::Pharo)
    }
}

/// Marker classes: a class of this name exists only in that dialect.
pub const MARKERS: &[(&str, Dialect)] = &[
    ("FixedLayout", Dialect::Pharo),
    ("GlobalVariable", Dialect::Pharo),
    ("RPackage", Dialect::Pharo),
    ("MorphicProject", Dialect::Squeak),
    ("ReleaseBuilder", Dialect::Squeak),
    ("Feature", Dialect::Cuis),
    ("CodePackage", Dialect::Cuis),
];

/// One piece of evidence and the points it gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clue {
    /// The evidence, in words (e.g. a class found by name).
    pub what: String,
    /// Points the evidence gives to each dialect it favours.
    pub points: Vec<(Dialect, u32)>,
}

/// The verdict and the clues behind it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialectReport {
    /// The dialect with the most points, when it leads by enough.
    pub dialect: Dialect,
    /// Every piece of evidence found, in the order it was looked for.
    pub clues: Vec<Clue>,
    /// Points per dialect: Pharo, Squeak, Cuis.
    pub scores: [(Dialect, u32); 3],
}

/// Facts gathered from the heap, from which [`judge`] decides.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Evidence {
    /// Marker classes found in the class table.
    pub markers: Vec<(&'static str, Dialect)>,
    /// Were the class names searched for markers?
    pub markers_searched: bool,
    /// Class Array holds a `…Layout` object in slot 3.
    pub layout_objects: bool,
    /// Class name of the scheduler association.
    pub scheduler_binding_class: Option<String>,
    /// Class Array's name, e.g. `Array` or `PCArray`.
    pub array_name: Option<String>,
    /// Special object 14 is not nil.
    pub display_set: bool,
    /// Special object 37 is a class.
    pub full_block_class_set: bool,
    /// Class name of special object 8.
    pub smalltalk_class: Option<String>,
}

impl Evidence {
    /// Reads the facts: a few special objects and classes, then, unless
    /// those already decide (see [`Evidence::markers_could_matter`]), the
    /// name of every class of the class table. No heap walk.
    pub fn gather(view: &ReadView<'_>, specials: &SpecialObjects, classes: &ClassTable) -> Self {
        let common = specials.common();
        let array = common.class_array();
        let layout_objects = array
            .and_then(|a| view.slot(a, 3))
            .and_then(|l| classes.class_name_of(view, l))
            .is_some_and(|n| n.ends_with("Layout"));
        let name_of = |o: Option<Oop>| o.and_then(|o| classes.class_name_of(view, o));
        let mut e = Evidence {
            markers: Vec::new(),
            markers_searched: false,
            layout_objects,
            scheduler_binding_class: name_of(common.scheduler_association()),
            array_name: array.and_then(|a| classes.class_name(view, a)),
            display_set: specials.get(index::squeak::THE_DISPLAY).is_some(),
            full_block_class_set: specials
                .get(index::squeak::CLASS_FULL_BLOCK_CLOSURE)
                .is_some_and(|c| classes.is_class(view, c)),
            smalltalk_class: name_of(common.smalltalk_dictionary()),
        };
        if e.markers_could_matter() {
            e.markers = find_markers(view, classes);
            e.markers_searched = true;
        }
        e
    }

    /// Could marker classes change the verdict of the other clues? Not
    /// when the leader is ahead of every other dialect by more than all
    /// that dialect's markers could give it. Searching them means reading
    /// every class's name, the one costly step of wiring a large image.
    pub fn markers_could_matter(&self) -> bool {
        let r = judge(self);
        let (leader, points) = r
            .scores
            .iter()
            .copied()
            .max_by_key(|s| s.1)
            .expect("three scores");
        if points < MIN_POINTS {
            return true;
        }
        r.scores.iter().any(|&(d, p)| {
            let markers =
                u32::try_from(MARKERS.iter().filter(|m| m.1 == d).count()).unwrap_or(u32::MAX);
            d != leader && points < p + MARKER_POINTS * markers + MIN_LEAD
        })
    }
}

/// The marker classes present: one pass over the class table's entries.
fn find_markers(view: &ReadView<'_>, classes: &ClassTable) -> Vec<(&'static str, Dialect)> {
    let name_slot = classes.layout().name_slot;
    let mut found: Vec<(&'static str, Dialect)> = Vec::new();
    for &(_, class) in classes.entries() {
        // Metaclasses have no name of their own: skip whatever does not
        // hold a byte object in the name slot.
        let Some(name) = view.slot(class, name_slot) else {
            continue;
        };
        let Some(bytes) = view.bytes(name).filter(|_| view.is_bytes(name)) else {
            continue;
        };
        for &(m, d) in MARKERS {
            if bytes == m.as_bytes() && !found.iter().any(|&(n, _)| n == m) {
                found.push((m, d));
            }
        }
    }
    found
}

/// Points of one marker class.
pub const MARKER_POINTS: u32 = 3;

/// Minimum points for a verdict, and the lead it needs over the runner-up.
pub const MIN_POINTS: u32 = 3;
/// Points by which the winner must lead the runner-up (see [`MIN_POINTS`]).
pub const MIN_LEAD: u32 = 2;

/// Weighs the evidence (see the module documentation for the points).
pub fn judge(e: &Evidence) -> DialectReport {
    use Dialect::*;
    let mut clues = Vec::new();
    let mut clue = |what: String, points: Vec<(Dialect, u32)>| clues.push(Clue { what, points });
    for &(m, d) in &e.markers {
        clue(format!("class {m} exists"), vec![(d, MARKER_POINTS)]);
    }
    if e.layout_objects {
        clue(
            "classes hold layout objects (slot 3)".into(),
            vec![(Pharo, 3)],
        );
    }
    if e.scheduler_binding_class.as_deref() == Some("GlobalVariable") {
        clue(
            "the scheduler association is a GlobalVariable".into(),
            vec![(Pharo, 3)],
        );
    }
    if let Some(n) = &e.array_name {
        if n.len() > 5 && n.starts_with("PC") && n.ends_with("Array") {
            clue(
                format!("class names carry the PC prefix of the Pharo VM's test kernel ({n})"),
                vec![(Pharo, 3)],
            );
        }
    }
    match (e.display_set, e.full_block_class_set) {
        (false, false) => clue(
            "special objects 14 and 37 are nil, as in the Pharo numbering".into(),
            vec![(Pharo, 2)],
        ),
        (display, full_block) => {
            if display {
                clue(
                    "special object 14 (TheDisplay) is set".into(),
                    vec![(Squeak, 1), (Cuis, 1)],
                );
            }
            if full_block {
                clue(
                    "special object 37 (ClassFullBlockClosure) is a class".into(),
                    vec![(Squeak, 1), (Cuis, 1)],
                );
            }
        }
    }
    match e.smalltalk_class.as_deref() {
        Some("SmalltalkImage") => clue(
            "Smalltalk (special object 8) is a SmalltalkImage".into(),
            vec![(Pharo, 1), (Squeak, 1)],
        ),
        Some("SystemDictionary") => clue(
            "Smalltalk (special object 8) is a SystemDictionary".into(),
            vec![(Cuis, 1)],
        ),
        _ => {}
    }
    if !e.markers_searched && e.markers.is_empty() {
        clue(
            "marker classes not searched: the other clues decide".into(),
            vec![],
        );
    }
    let mut scores = [(Pharo, 0), (Squeak, 0), (Cuis, 0)];
    for c in &clues {
        for &(d, p) in &c.points {
            if let Some(s) = scores.iter_mut().find(|s| s.0 == d) {
                s.1 += p;
            }
        }
    }
    let mut ranked = scores;
    ranked.sort_by_key(|s| std::cmp::Reverse(s.1));
    let dialect = if ranked[0].1 >= MIN_POINTS && ranked[0].1 >= ranked[1].1 + MIN_LEAD {
        ranked[0].0
    } else {
        Unknown
    };
    DialectReport {
        dialect,
        clues,
        scores,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(e: Evidence) -> Dialect {
        judge(&e).dialect
    }

    #[test]
    fn a_pharo_candle_kernel_is_told_by_its_special_objects() {
        let e = Evidence {
            smalltalk_class: Some("SmalltalkImage".into()),
            array_name: Some("Array".into()),
            ..Default::default()
        };
        // Weak clues: the markers are worth searching.
        assert!(e.markers_could_matter());
        let searched = Evidence {
            markers_searched: true,
            ..e
        };
        let r = judge(&searched);
        assert_eq!(r.dialect, Dialect::Pharo);
        assert_eq!(r.scores[0], (Dialect::Pharo, 3));
        assert_eq!(r.clues.len(), 2);
    }

    #[test]
    fn markers_decide_between_squeak_and_cuis() {
        let squeak = Evidence {
            markers: vec![("MorphicProject", Dialect::Squeak)],
            display_set: true,
            full_block_class_set: true,
            smalltalk_class: Some("SmalltalkImage".into()),
            ..Default::default()
        };
        assert_eq!(verdict(squeak), Dialect::Squeak);
        let cuis = Evidence {
            markers: vec![("Feature", Dialect::Cuis), ("CodePackage", Dialect::Cuis)],
            display_set: true,
            smalltalk_class: Some("SystemDictionary".into()),
            ..Default::default()
        };
        assert_eq!(verdict(cuis), Dialect::Cuis);
        let pharo = Evidence {
            markers: vec![("FixedLayout", Dialect::Pharo)],
            layout_objects: true,
            scheduler_binding_class: Some("GlobalVariable".into()),
            smalltalk_class: Some("SmalltalkImage".into()),
            ..Default::default()
        };
        assert_eq!(verdict(pharo.clone()), Dialect::Pharo);
        // Pharo 8's clues without markers already decide: no search needed.
        let cheap = Evidence {
            markers: vec![],
            ..pharo
        };
        assert!(!cheap.markers_could_matter());
        assert_eq!(verdict(cheap), Dialect::Pharo);
    }

    #[test]
    fn weak_or_mixed_evidence_is_unknown() {
        // The builder: a SystemDictionary as Smalltalk, 37 set, 14 nil.
        let synth = Evidence {
            full_block_class_set: true,
            smalltalk_class: Some("SystemDictionary".into()),
            array_name: Some("Array".into()),
            ..Default::default()
        };
        let r = judge(&synth);
        assert_eq!(r.dialect, Dialect::Unknown, "{r:?}");
        // Markers of two dialects cancel out.
        let mixed = Evidence {
            markers: vec![
                ("Feature", Dialect::Cuis),
                ("MorphicProject", Dialect::Squeak),
            ],
            display_set: true,
            ..Default::default()
        };
        assert_eq!(verdict(mixed), Dialect::Unknown);
    }

    #[test]
    fn the_pc_prefix_is_pharo() {
        let e = Evidence {
            array_name: Some("PCArray".into()),
            smalltalk_class: Some("PCSmalltalk".into()),
            ..Default::default()
        };
        assert_eq!(verdict(e), Dialect::Pharo);
    }
}
