//! A class histogram of the heap, like Smalltalk's space tally: instances
//! and bytes per class, in one walk over every segment.

use spur_format::raw::{CLASS_TABLE_PAGE_SLOTS, LAST_CLASS_INDEX_PUN};
use spur_format::{Layout, Walk, WordSize, L32, L64};
use spur_loader::LoadedHeap;

use spur_loader::conv::usize_of;

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
/// objects and the class table first to name them.
pub fn class_histogram(memory: &ObjectMemory) -> Result<Histogram, RuntimeError> {
    let heap = memory.heap();
    let view = memory.view();
    let specials = SpecialObjects::read(&view, heap.special_objects(), heap.nil())?;
    let classes = ClassTable::read(&view, &specials)?;
    histogram_with(heap, &view, &classes)
}

/// The histogram with a class table already read.
pub fn histogram_with(
    heap: &LoadedHeap,
    view: &ReadView<'_>,
    classes: &ClassTable,
) -> Result<Histogram, RuntimeError> {
    let _span = tracing::debug_span!("histogram").entered();
    let slots = classes.pages() as u64 * CLASS_TABLE_PAGE_SLOTS;
    let mut counts = vec![(0u64, 0u64); usize_of(slots)];
    let mut h = Histogram::default();
    let mut beyond = std::collections::BTreeMap::new();
    match heap.word() {
        WordSize::W64 => walk::<L64>(heap, &mut h, &mut counts, &mut beyond)?,
        WordSize::W32 => walk::<L32>(heap, &mut h, &mut counts, &mut beyond)?,
    }
    let mut rows: Vec<ClassStats> = Vec::new();
    let all = counts
        .iter()
        .enumerate()
        .filter(|(_, c)| c.0 > 0)
        .filter_map(|(i, &c)| Some((u32::try_from(i).ok()?, c)))
        .chain(beyond);
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

fn walk<L: Layout>(
    heap: &LoadedHeap,
    h: &mut Histogram,
    counts: &mut [(u64, u64)],
    beyond: &mut std::collections::BTreeMap<u32, (u64, u64)>,
) -> Result<(), RuntimeError> {
    for (i, s) in heap.segments().iter().enumerate() {
        let mut w = Walk::<L>::new(heap.segment_bytes(i), s.new_start.get(), i);
        for obj in w.by_ref() {
            h.objects += 1;
            let bytes = L::WORD.body_bytes(obj.num_slots).unwrap_or(0)
                + if obj.has_overflow() { 8 } else { 0 };
            let ci = obj.header.class_index();
            if obj.header.is_free_chunk() {
                h.free_chunks += 1;
                h.free_bytes += bytes;
            } else if ci <= LAST_CLASS_INDEX_PUN {
                h.hidden += 1;
                h.hidden_bytes += bytes;
            } else {
                let c = match counts.get_mut(ci as usize) {
                    Some(c) => c,
                    None => beyond.entry(ci).or_default(),
                };
                c.0 += 1;
                c.1 += bytes;
            }
        }
        w.finish().map_err(|e| RuntimeError::ClassTable {
            addr: s.new_start.get(),
            why: format!("the heap walk failed: {e}"),
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use spur_loader::{LoadOptions, PlacementRequest};
    use spur_synth::SynthSpec;

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
