//! A class histogram of the heap, like Smalltalk's space tally: instances
//! and bytes per class, in one walk over every segment.

use std::collections::BTreeMap;

use spur_format::raw::{BRIDGE_BYTES, CLASS_TABLE_PAGE_SLOTS, LAST_CLASS_INDEX_PUN};
use spur_format::{Layout, Obj, WordSize, L32, L64};
use spur_loader::parallel::{self, Guess};
use spur_loader::{LoadedHeap, Threads};

use spur_loader::conv::{u64_of, usize_of};

use crate::class_table::ClassTable;
use crate::error::RuntimeError;
use crate::memory::{ObjectMemory, Oop, ReadView};
use crate::special_objects::SpecialObjects;

/// Instances and bytes of one class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassStats {
    /// The class, when its index names one.
    pub class: Option<Oop>,
    /// Its name, or `<class index N>` for an index with no class.
    pub name: String,
    /// Its instances in the heap.
    pub instances: u64,
    /// Bytes of the instances: headers, overflow words and slots.
    pub bytes: u64,
}

/// The histogram and the walk's totals.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Histogram {
    /// Sorted by bytes, largest first (then by instances, then by name).
    pub rows: Vec<ClassStats>,
    /// Everything the walk visited (bridges excluded): instances, free
    /// chunks and hidden objects (class index ≤ 31: class-table pages,
    /// free lists, object stacks, forwarders).
    pub objects: u64,
    /// Free chunks visited.
    pub free_chunks: u64,
    /// Bytes of those free chunks, headers included.
    pub free_bytes: u64,
    /// Hidden objects visited (class index ≤ 31).
    pub hidden: u64,
    /// Bytes of those hidden objects, headers included.
    pub hidden_bytes: u64,
}

impl Histogram {
    /// Instances counted in the rows.
    pub fn instances(&self) -> u64 {
        self.rows.iter().map(|r| r.instances).sum()
    }
    /// Bytes counted in the rows.
    pub fn bytes(&self) -> u64 {
        self.rows.iter().map(|r| r.bytes).sum()
    }
    /// The row of `class`.
    pub fn row(&self, class: Oop) -> Option<&ClassStats> {
        self.rows.iter().find(|r| r.class == Some(class))
    }
}

/// Counts the instances of every class of `heap`, reading the special
/// objects and the class table first to name them, on as many threads as
/// the machine offers.
pub fn class_histogram(memory: &ObjectMemory) -> Result<Histogram, RuntimeError> {
    class_histogram_with(memory, Threads::Available)
}

/// [`class_histogram`] on at most `threads` threads. The histogram is the
/// same whatever the number.
pub fn class_histogram_with(
    memory: &ObjectMemory,
    threads: Threads,
) -> Result<Histogram, RuntimeError> {
    class_histogram_in_parts(memory, threads, MIN_PART_BYTES)
}

/// Segments are split into parts of at least this many bytes, one per thread.
pub const MIN_PART_BYTES: u64 = 8 << 20;

/// [`class_histogram_with`], splitting each segment into parts of at least
/// `min_part` bytes (at most one per thread).
///
/// A part's walk starts at a guessed object start: the first place past the
/// part's boundary where [`GUESS_STEPS`](parallel::GUESS_STEPS) headers in a row look like objects
/// of this heap. The walk of the part before checks the guess: once it has
/// reached the guess, it must land on one of the object starts that the
/// guessed walk met in its first [`PREFIX_BYTES`](parallel::PREFIX_BYTES); from there both walks are
/// the same walk, and the earlier part ends where the later one began
/// counting. A guess it does not land on is ignored and the earlier walk
/// goes on through that part itself, so every object is counted once, as
/// the walk from the segment's start meets it, whatever was guessed.
pub fn class_histogram_in_parts(
    memory: &ObjectMemory,
    threads: Threads,
    min_part: u64,
) -> Result<Histogram, RuntimeError> {
    let heap = memory.heap();
    let view = memory.view();
    let specials = SpecialObjects::read(&view, heap.special_objects(), heap.nil())?;
    let classes = ClassTable::read(&view, &specials)?;
    histogram_in_parts(heap, &view, &classes, threads, min_part)
}

/// The histogram with a class table already read.
pub fn histogram_with(
    heap: &LoadedHeap,
    view: &ReadView<'_>,
    classes: &ClassTable,
) -> Result<Histogram, RuntimeError> {
    histogram_in_parts(heap, view, classes, Threads::Available, MIN_PART_BYTES)
}

fn histogram_in_parts(
    heap: &LoadedHeap,
    view: &ReadView<'_>,
    classes: &ClassTable,
    threads: Threads,
    min_part: u64,
) -> Result<Histogram, RuntimeError> {
    let _span = tracing::debug_span!("histogram").entered();
    let slots = usize_of(classes.pages() as u64 * CLASS_TABLE_PAGE_SLOTS);
    let threads = threads.count();
    let mut tally = Tally::new(slots);
    for (i, s) in heap.segments().iter().enumerate() {
        let bytes = heap.segment_bytes(i);
        let limit = bytes.len().saturating_sub(usize_of(BRIDGE_BYTES));
        let parts = threads
            .min(usize_of(u64_of(limit) / min_part.max(1)))
            .max(1);
        let found = match heap.word() {
            WordSize::W64 => tally_segment::<L64>(bytes, limit, parts, slots),
            WordSize::W32 => tally_segment::<L32>(bytes, limit, parts, slots),
        };
        match found {
            Ok(t) => tally.merge(t),
            Err((offset, what)) => {
                let e = spur_format::FormatError::BadObject {
                    segment: i,
                    offset: u64_of(offset),
                    addr: s.new_start.get().wrapping_add(u64_of(offset)),
                    what,
                };
                return Err(RuntimeError::ClassTable {
                    addr: s.new_start.get(),
                    why: format!("the heap walk failed: {e}"),
                });
            }
        }
    }
    let mut h = Histogram {
        objects: tally.objects,
        free_chunks: tally.free_chunks,
        free_bytes: tally.free_bytes,
        hidden: tally.hidden,
        hidden_bytes: tally.hidden_bytes,
        ..Histogram::default()
    };
    let mut rows: Vec<ClassStats> = Vec::new();
    let all = tally
        .counts
        .iter()
        .enumerate()
        .filter(|(_, c)| c.0 > 0)
        .filter_map(|(i, &c)| Some((u32::try_from(i).ok()?, c)))
        .chain(tally.beyond);
    for (index, (instances, bytes)) in all {
        let class = classes.class_at(view, index);
        // Duplicate entries of one class (after a become) share a row.
        if let Some(r) = class.and_then(|c| rows.iter_mut().find(|r| r.class == Some(c))) {
            r.instances += instances;
            r.bytes += bytes;
            continue;
        }
        let name = class
            .and_then(|c| classes.class_name(view, c))
            .unwrap_or_else(|| format!("<class index {index}>"));
        rows.push(ClassStats {
            class,
            name,
            instances,
            bytes,
        });
    }
    rows.sort_by(|a, b| {
        b.bytes
            .cmp(&a.bytes)
            .then(b.instances.cmp(&a.instances))
            .then_with(|| a.name.cmp(&b.name))
    });
    h.rows = rows;
    Ok(h)
}

/// Counts of a stretch of the heap.
struct Tally {
    /// (instances, bytes) by class index below the class table's size.
    counts: Vec<(u64, u64)>,
    /// The same for class indices past the table.
    beyond: BTreeMap<u32, (u64, u64)>,
    objects: u64,
    free_chunks: u64,
    free_bytes: u64,
    hidden: u64,
    hidden_bytes: u64,
}

impl Tally {
    fn new(slots: usize) -> Self {
        Tally {
            counts: vec![(0, 0); slots],
            beyond: BTreeMap::new(),
            objects: 0,
            free_chunks: 0,
            free_bytes: 0,
            hidden: 0,
            hidden_bytes: 0,
        }
    }

    #[inline(always)]
    fn add<L: Layout>(&mut self, obj: &Obj) {
        self.objects += 1;
        let bytes =
            L::WORD.body_bytes(obj.num_slots).unwrap_or(0) + if obj.has_overflow() { 8 } else { 0 };
        let ci = obj.header.class_index();
        if obj.header.is_free_chunk() {
            self.free_chunks += 1;
            self.free_bytes += bytes;
        } else if ci <= LAST_CLASS_INDEX_PUN {
            self.hidden += 1;
            self.hidden_bytes += bytes;
        } else {
            let c = match self.counts.get_mut(ci as usize) {
                Some(c) => c,
                None => self.beyond.entry(ci).or_default(),
            };
            c.0 += 1;
            c.1 += bytes;
        }
    }

    fn merge(&mut self, other: Tally) {
        for (c, o) in self.counts.iter_mut().zip(&other.counts) {
            c.0 += o.0;
            c.1 += o.1;
        }
        for (ci, o) in other.beyond {
            let c = self.beyond.entry(ci).or_default();
            c.0 += o.0;
            c.1 += o.1;
        }
        self.objects += other.objects;
        self.free_chunks += other.free_chunks;
        self.free_bytes += other.free_bytes;
        self.hidden += other.hidden;
        self.hidden_bytes += other.hidden_bytes;
    }
}

/// Counts the objects of one segment (objects in `bytes[..limit]`) in
/// `parts` parts, one thread each; the answer, or the offset and reason at
/// which the walk from the segment's start fails, is that walk's.
fn tally_segment<L: Layout>(
    bytes: &[u8],
    limit: usize,
    parts: usize,
    slots: usize,
) -> Result<Tally, (usize, String)> {
    let guesses = parallel::guesses::<L>(bytes, limit, parts, slots);
    tally_from_guesses::<L>(bytes, limit, &guesses, slots)
}

/// [`tally_segment`] with the guesses made: part 0 starts at offset 0, and
/// part `k` at `guesses[k - 1]` when there is one.
fn tally_from_guesses<L: Layout>(
    bytes: &[u8],
    limit: usize,
    guesses: &[Option<Guess>],
    slots: usize,
) -> Result<Tally, (usize, String)> {
    let walked = parallel::walk_in_parts::<L, Tally>(
        bytes,
        limit,
        guesses,
        || Tally::new(slots),
        |t, obj| t.add::<L>(obj),
    );
    if let Some(e) = walked.failed {
        return Err(e);
    }
    let mut total = Tally::new(slots);
    for t in walked.parts {
        total.merge(t);
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use spur_loader::{LoadOptions, PlacementRequest};
    use spur_synth::SynthSpec;

    fn same_tally(a: &Tally, b: &Tally) -> bool {
        (
            &a.counts,
            &a.beyond,
            a.objects,
            a.free_chunks,
            a.free_bytes,
            a.hidden,
            a.hidden_bytes,
        ) == (
            &b.counts,
            &b.beyond,
            b.objects,
            b.free_chunks,
            b.free_bytes,
            b.hidden,
            b.hidden_bytes,
        )
    }

    /// Guesses at every 8-byte offset of a stretch (object starts and the
    /// insides of objects alike, whatever their walks meet) give the counts
    /// of the walk from the start, and so does a heap with a broken header,
    /// whose error is the same too.
    #[test]
    fn any_guess_gives_the_walk_from_the_start() {
        let (bytes, _) = spur_synth::image_bytes(&SynthSpec::new(WordSize::W64, 4 << 20)).unwrap();
        let mut heap = spur_loader::load(bytes.as_slice(), &LoadOptions::default()).unwrap();
        let slots = 4096;
        for damaged in [false, true] {
            if damaged {
                // An object near the end claims more slots than the segment holds.
                let seg = heap.segment_bytes_mut(0);
                let at = seg.len() - (256 << 10);
                let at = spur_format::Walk::<L64>::new(seg, 0, 0)
                    .find(|o| o.offset >= at && !o.has_overflow())
                    .unwrap()
                    .offset;
                seg[at + 7] = 254;
            }
            let seg = heap.segment_bytes(0);
            let limit = seg.len() - usize_of(BRIDGE_BYTES);
            let one = tally_from_guesses::<L64>(seg, limit, &[], slots);
            let mut tried = 0;
            for first in (1 << 20..(1 << 20) + 4096).step_by(8) {
                let make = |at: usize| Guess::walked_from::<L64>(seg, at, limit);
                let guesses = [make(first), None, make(first + (1 << 20) + 8)];
                tried += usize::from(guesses[0].is_some());
                let got = tally_from_guesses::<L64>(seg, limit, &guesses, slots);
                match (&one, &got) {
                    (Ok(a), Ok(b)) => assert!(same_tally(a, b), "guess at {first}"),
                    (Err(a), Err(b)) => assert_eq!(a, b, "guess at {first}"),
                    _ => panic!("guess at {first}: one walk failed, the other did not"),
                }
            }
            assert!(tried > 50, "only {tried} guesses had a walk");
            assert_eq!(one.is_err(), damaged);
        }
    }

    #[test]
    fn the_histogram_accounts_for_every_object() {
        let (bytes, r) =
            spur_synth::image_bytes(&SynthSpec::new(WordSize::W64, 256 << 10)).unwrap();
        let heap = spur_loader::load(
            bytes.as_slice(),
            &LoadOptions {
                placement: PlacementRequest::Relocate,
                ..Default::default()
            },
        )
        .unwrap();
        let h = class_histogram(&ObjectMemory::new(heap)).unwrap();
        assert_eq!(h.objects, r.objects);
        assert_eq!(h.free_chunks, r.free_chunks);
        assert_eq!(h.free_bytes, r.free_bytes);
        assert_eq!(h.instances() + h.free_chunks + h.hidden, h.objects);
        assert!(h.rows.windows(2).all(|w| w[0].bytes >= w[1].bytes));
        let one = |name: &str| h.rows.iter().find(|r| r.name == name).unwrap().instances;
        assert_eq!(one("UndefinedObject"), 1);
        assert_eq!(one("True"), 1);
        assert_eq!(one("False"), 1);
        assert!(h.rows.iter().all(|r| !r.name.starts_with('<')));
        // Hidden: free lists, hidden roots, 2 class-table pages.
        assert_eq!(h.hidden, 4);
    }
}
