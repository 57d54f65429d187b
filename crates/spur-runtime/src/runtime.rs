//! Wiring: from a loaded heap to everything an interpreter needs to resume it.

use std::time::Instant;

use spur_format::NewAddr;
use spur_loader::LoadedHeap;

use spur_loader::conv::Micros;

use crate::class_table::ClassTable;
use crate::dialect::{judge, DialectReport, Evidence};
use crate::error::RuntimeError;
use crate::memory::{ClaimedHeadroom, ObjectMemory, Oop, ReadView};
use crate::new_space::{NewSpace, NewSpaceLayout};
use crate::resume::ResumePoint;
use crate::semaphores::{ExternalSemaphoreTable, MAX_EXT_SEM_TABLE_SIZE};
use crate::settings::{HashSeed, ImageSettings};
use crate::special_objects::{CompactClasses, SpecialObjects};
use crate::stack::{StackLayout, StackZone, MAX_STACK_PAGES};

/// What the command line (or an embedder) may override.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuntimeOptions {
    /// Bytes of new space, overriding the header's `edenBytes` (§4.4).
    pub eden_bytes: Option<u64>,
    /// Stack pages, overriding the header's count (§4.4).
    pub stack_pages: Option<u64>,
    /// A size request for the external semaphore table (§4.4).
    pub ext_sem_table: Option<u64>,
    /// Turn the reserved headroom into a free chunk at the end of old
    /// space (§5.3). On by default.
    pub claim_headroom: bool,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        RuntimeOptions {
            eden_bytes: None,
            stack_pages: None,
            ext_sem_table: None,
            claim_headroom: true,
        }
    }
}

impl RuntimeOptions {
    /// Checks what can be checked without an image: the stack page count
    /// and the semaphore table size. (Whether new space holds the
    /// allocation reserve depends on the image's word size and header.)
    pub fn check(&self) -> Result<(), RuntimeError> {
        if let Some(n) = self.stack_pages {
            if n == 0 || n > MAX_STACK_PAGES {
                return Err(RuntimeError::BadStackPages {
                    requested: n,
                    max: MAX_STACK_PAGES,
                });
            }
        }
        if let Some(n) = self.ext_sem_table {
            if n == 0 || n > MAX_EXT_SEM_TABLE_SIZE {
                return Err(RuntimeError::BadSemaphoreTable {
                    requested: n,
                    max: MAX_EXT_SEM_TABLE_SIZE,
                });
            }
        }
        Ok(())
    }
}

/// Old space after wiring (§5.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OldSpace {
    /// nil: the first object.
    pub start: NewAddr,
    /// Where the last segment's objects end (its terminating bridge).
    pub end: NewAddr,
    /// Headroom the loader reserved after the last segment (§5.3).
    pub headroom: u64,
    /// The free chunk made of it, when claimed.
    pub claimed: Option<ClaimedHeadroom>,
    /// `freeOldSpaceInImage`: free chunks the image carried.
    pub free_in_image: u64,
    /// All free old space: what the image carried plus the claimed chunk.
    pub free_bytes: u64,
}

/// Time spent wiring, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WireTimings {
    /// Converting boxed floats (0 unless the word order forced it).
    pub floats_us: u64,
    /// Special objects, class table, dialect, semaphores, resume point.
    pub tables_us: u64,
    /// Headroom, new space and stack zone.
    pub memory_us: u64,
    /// The whole wiring, from the heap to the runtime.
    pub total_us: u64,
}

/// A heap wired for an interpreter: it owns the heap, new space and the
/// stack zone, and releases all of them when dropped.
#[derive(Debug)]
pub struct Runtime {
    memory: ObjectMemory,
    settings: ImageSettings,
    hash_seed: HashSeed,
    floats_converted: Option<u64>,
    specials: SpecialObjects,
    classes: ClassTable,
    compact: CompactClasses,
    dialect: DialectReport,
    stack: StackZone,
    semaphores: ExternalSemaphoreTable,
    old_space: OldSpace,
    resume: ResumePoint,
    timings: WireTimings,
}

impl Runtime {
    /// Wires `heap`. The command-line values are checked first, before
    /// anything changes; then boxed floats are converted if their word
    /// order is not the host's (the only pass over the heap), the headroom
    /// becomes free space, the tables are read, new space and the stack
    /// zone are placed, and the resume point is found. Nothing else walks
    /// the heap.
    pub fn wire(heap: LoadedHeap, opts: &RuntimeOptions) -> Result<Runtime, RuntimeError> {
        Self::wire_memory(ObjectMemory::new(heap), opts)
    }

    /// Wires a heap already held by an [`ObjectMemory`] (one a caller has
    /// changed through it before wiring), as [`wire`](Self::wire) does.
    pub fn wire_memory(
        mut memory: ObjectMemory,
        opts: &RuntimeOptions,
    ) -> Result<Runtime, RuntimeError> {
        let _span = tracing::debug_span!("wire").entered();
        let t0 = Instant::now();
        opts.check()?;
        let word = memory.word();
        let header = memory.heap().header().clone();
        let settings = ImageSettings::from_flags(header.flags);
        let stack_layout = StackLayout::compute(word, opts.stack_pages, header.num_stack_pages)?;
        let new_layout =
            NewSpaceLayout::compute(word, opts.eden_bytes, header.eden_bytes, &stack_layout)?;

        let floats_converted = if settings.floats_need_swapping() {
            let _s = tracing::debug_span!("floats").entered();
            Some(memory.swap_boxed_float_words()?)
        } else {
            None
        };
        let t_floats = t0.elapsed();

        let t1 = Instant::now();
        let claimed = if opts.claim_headroom {
            memory.claim_headroom()?
        } else {
            None
        };
        let t_claim = t1.elapsed();

        let t2 = Instant::now();
        let (specials, classes, compact, dialect, semaphores, resume) = {
            let _s = tracing::debug_span!("tables").entered();
            let view = memory.view();
            let specials =
                SpecialObjects::read(&view, memory.heap().special_objects(), memory.heap().nil())?;
            let classes = ClassTable::read(&view, &specials)?;
            let compact = specials.check_compact_classes(&view, &classes)?;
            let dialect = judge(&Evidence::gather(&view, &specials, &classes));
            let semaphores = ExternalSemaphoreTable::new(
                &view,
                &specials,
                header.max_ext_sem_table,
                opts.ext_sem_table,
            )?;
            let resume = ResumePoint::find(&view, &specials, &classes)?;
            (specials, classes, compact, dialect, semaphores, resume)
        };
        memory.set_class_layout(classes.layout());
        let t_tables = t2.elapsed();

        let t3 = Instant::now();
        let stack = {
            let _s = tracing::debug_span!("memory").entered();
            let new_space = NewSpace::allocate(word, new_layout, memory.heap().nil().get())?;
            memory.attach_new_space(new_space);
            StackZone::allocate(stack_layout)?
        };
        let t_memory = t3.elapsed() + t_claim;

        let heap = memory.heap();
        let last = heap.segments().last().expect("a heap has a segment");
        let old_space = OldSpace {
            start: heap.nil(),
            end: last.objects_end(),
            headroom: heap.headroom(),
            claimed,
            free_in_image: header.free_old_space,
            free_bytes: header.free_old_space + claimed.map_or(0, |c| c.bytes),
        };
        let timings = WireTimings {
            floats_us: t_floats.micros(),
            tables_us: t_tables.micros(),
            memory_us: t_memory.micros(),
            total_us: t0.elapsed().micros(),
        };
        tracing::debug!(?timings, dialect = dialect.dialect.name(), "wired");
        Ok(Runtime {
            hash_seed: HashSeed::from_header(&header),
            memory,
            settings,
            floats_converted,
            specials,
            classes,
            compact,
            dialect,
            stack,
            semaphores,
            old_space,
            resume,
            timings,
        })
    }

    /// The object memory: every object of every space, and every change to them.
    pub fn memory(&self) -> &ObjectMemory {
        &self.memory
    }
    /// The object memory, writable: what an interpreter runs on.
    pub fn memory_mut(&mut self) -> &mut ObjectMemory {
        &mut self.memory
    }
    /// The loaded heap (old space), for what the loader reports.
    pub fn heap(&self) -> &LoadedHeap {
        self.memory.heap()
    }
    /// The object memory's read view.
    pub fn view(&self) -> ReadView<'_> {
        self.memory.view()
    }
    /// The header flags, decoded (§1.4).
    pub fn settings(&self) -> &ImageSettings {
        &self.settings
    }
    /// The identity-hash seed (from `lastHash`).
    pub fn hash_seed(&self) -> HashSeed {
        self.hash_seed
    }
    /// How many boxed floats were converted to the host's word order, if
    /// the image's order differed.
    pub fn floats_converted(&self) -> Option<u64> {
        self.floats_converted
    }
    /// The special objects array.
    pub fn special_objects(&self) -> &SpecialObjects {
        &self.specials
    }
    /// The class table.
    pub fn class_table(&self) -> &ClassTable {
        &self.classes
    }
    /// What the compact-class checks found beyond the fatal ones.
    pub fn compact_classes(&self) -> CompactClasses {
        self.compact
    }
    /// Which dialect wrote the image, and why we think so.
    pub fn dialect(&self) -> &DialectReport {
        &self.dialect
    }
    /// New space (its objects are reached through [`memory`](Self::memory)).
    pub fn new_space(&self) -> &NewSpace {
        self.memory
            .new_space()
            .expect("wiring attaches new space to the object memory")
    }
    /// The stack zone.
    pub fn stack_zone(&self) -> &StackZone {
        &self.stack
    }
    /// The stack zone, for an interpreter to lay out its frames in.
    pub fn stack_zone_mut(&mut self) -> &mut StackZone {
        &mut self.stack
    }
    /// The external semaphore table.
    pub fn semaphores(&self) -> &ExternalSemaphoreTable {
        &self.semaphores
    }
    /// Old space's end, headroom and free space.
    pub fn old_space(&self) -> &OldSpace {
        &self.old_space
    }
    /// Where the image resumes.
    pub fn resume_point(&self) -> &ResumePoint {
        &self.resume
    }
    /// Time spent wiring.
    pub fn timings(&self) -> WireTimings {
        self.timings
    }
    /// The name of the class of `oop` (`Foo`, `Foo class`).
    pub fn class_name_of(&self, oop: Oop) -> Option<String> {
        self.classes.class_name_of(&self.view(), oop)
    }
    /// Gives the heap back, releasing new space and the stack zone.
    pub fn into_heap(self) -> LoadedHeap {
        self.memory.into_heap()
    }
}
