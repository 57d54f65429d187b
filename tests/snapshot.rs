//! Snapshots of loaded heaps: byte-identical round trips in place, relocated
//! snapshots that load again without swizzling, gaps and bridges kept, header
//! fields carried over (§7), injected write failures that leave the target as
//! it was, background snapshots from a forked child, stale temporary files.

use spur_format::error::Chain;
use spur_format::layout::to_usize;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use spur_format::{HeaderOverrides, ImageHeader, NewAddr, SegmentTable, Walk, WordSize, L32, L64};
use spur_loader::{
    load_path, read_prefix, snapshot_in_background, snapshot_in_background_by, snapshot_to_path,
    verify, write_atomically, BackgroundSnapshot, BackgroundWriter, FileSource, LoadOptions,
    LoadedHeap, Placement, PlacementRequest, SnapshotError, SnapshotOptions, SnapshotPlan,
};
use spur_synth::SynthSpec;
use spur_tests::{address_space, corpus_dir, CORPUS};

fn spec(word: WordSize, kib: u64) -> SynthSpec {
    SynthSpec::new(word, kib << 10)
}

/// Builder images of every kind the snapshot writer must handle.
fn kinds() -> Vec<(&'static str, SynthSpec)> {
    spur_tests::image_kinds()
}

fn write_synth(dir: &Path, name: &str, spec: &SynthSpec) -> PathBuf {
    let path = dir.join(name);
    spur_synth::write_image_file(spec, &path).unwrap();
    path
}

fn parse(bytes: &[u8]) -> (ImageHeader, SegmentTable) {
    let h = ImageHeader::parse(bytes, bytes.len() as u64).unwrap();
    let t = SegmentTable::read(&h, |off| {
        let o = to_usize(off);
        Ok::<_, spur_format::FormatError>(bytes[o..o + 16].try_into().unwrap())
    })
    .unwrap();
    (h, t)
}

/// Options that keep the source image's prefix, as `vm-loader snapshot` does.
fn keeping_prefix(path: &Path, heap: &LoadedHeap) -> SnapshotOptions {
    let src = FileSource::open(path).unwrap();
    SnapshotOptions {
        prefix: read_prefix(&src, heap.header()).unwrap(),
        ..Default::default()
    }
}

fn snapshot(heap: &LoadedHeap, out: &Path, opts: &SnapshotOptions) {
    let r = snapshot_to_path(heap, out, opts, &mut |_| {}).unwrap();
    assert_eq!(r.bytes_written, std::fs::metadata(out).unwrap().len());
}

/// Files in `dir` other than `keep`.
fn others(dir: &Path, keep: &[&Path]) -> Vec<String> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| !keep.iter().any(|k| k == p))
        .map(|p| p.display().to_string())
        .collect();
    v.sort();
    v
}

// ---- round trips ----

#[test]
#[ignore = "needs SPUR_CORPUS"]
fn corpus_images_round_trip_in_place_byte_for_byte() {
    let dir = corpus_dir();
    let _lock = address_space();
    let out_dir = tempfile::tempdir().unwrap();
    for img in CORPUS {
        let path = dir.join(img.file);
        let original = std::fs::read(&path).unwrap();
        let heap = load_path(&path, &LoadOptions::default()).unwrap();
        assert_eq!(heap.placement(), Placement::OldBase, "{}", img.file);
        let out = out_dir.path().join(img.file);
        snapshot(&heap, &out, &keeping_prefix(&path, &heap));
        let written = std::fs::read(&out).unwrap();
        // Header and data identical; trailing bytes after the data aside.
        let end = heap.header().data_offset() + heap.header().data_size;
        assert_eq!(written.len() as u64, end, "{}", img.file);
        assert!(
            written[..] == original[..to_usize(end)],
            "{}: the snapshot differs from the original at byte {:?}",
            img.file,
            written.iter().zip(&original).position(|(a, b)| a != b)
        );
    }
}

#[test]
fn builder_images_round_trip_in_place_byte_for_byte_with_gaps_and_bridges() {
    let _lock = address_space();
    let dir = tempfile::tempdir().unwrap();
    for (name, spec) in kinds() {
        let path = write_synth(dir.path(), &format!("{name}.image"), &spec);
        let original = std::fs::read(&path).unwrap();
        let heap = load_path(&path, &LoadOptions::default()).unwrap();
        assert_eq!(heap.placement(), Placement::OldBase, "{name}");
        let out = dir.path().join(format!("{name}.out.image"));
        snapshot(&heap, &out, &keeping_prefix(&path, &heap));
        let written = std::fs::read(&out).unwrap();
        assert!(
            written == original,
            "{name}: differs at byte {:?} (lengths {} and {})",
            written.iter().zip(&original).position(|(a, b)| a != b),
            written.len(),
            original.len()
        );
        // The same segments, gaps and bridges, read back by the format crate.
        let (ho, to) = parse(&original);
        let (hw, tw) = parse(&written);
        assert_eq!(tw, to, "{name}");
        assert_eq!(hw, ho, "{name}");
        assert_eq!(tw.segments.len(), spec.segments, "{name}");
        if spec.segments > 1 {
            assert_eq!(tw.segments[0].gap_after, spec.gap_bytes, "{name}");
        }

        // Without the prefix the header and data are the same, from offset 0.
        if ho.prefix_bytes > 0 {
            let bare = dir.path().join(format!("{name}.bare.image"));
            snapshot(&heap, &bare, &SnapshotOptions::default());
            let b = std::fs::read(&bare).unwrap();
            assert!(b[..] == original[to_usize(ho.prefix_bytes)..], "{name}");
        }
    }
}

#[test]
fn header_fields_are_carried_over_or_overridden() {
    let _lock = address_space();
    let dir = tempfile::tempdir().unwrap();
    let mut s = spec(WordSize::W64, 512);
    s.multiple_bytecode_sets = true;
    let path = write_synth(dir.path(), "h.image", &s);
    // Give the source header non-default requested values and extra flags.
    let mut bytes = std::fs::read(&path).unwrap();
    let mut h = ImageHeader::parse(&bytes, bytes.len() as u64).unwrap();
    h.flags |= 0x10 | 0x400 | (1 << 20);
    h.eden_bytes = 12 << 20;
    h.num_stack_pages = 50;
    h.max_ext_sem_table = 256;
    h.cog_code_size_kib = 2048;
    h.image_version = 7;
    bytes[..128].copy_from_slice(&h.encode());
    std::fs::write(&path, &bytes).unwrap();

    let heap = load_path(&path, &LoadOptions::default()).unwrap();
    let out = dir.path().join("same.image");
    snapshot(&heap, &out, &SnapshotOptions::default());
    let w = std::fs::read(&out).unwrap();
    assert_eq!(ImageHeader::parse(&w, w.len() as u64).unwrap(), h);
    assert_eq!(h.format, 68533, "68533 stays 68533");

    let opts = SnapshotOptions {
        overrides: HeaderOverrides {
            eden_bytes: Some(32 << 20),
            num_stack_pages: Some(120),
            max_ext_sem_table: Some(1024),
            ..Default::default()
        },
        ..Default::default()
    };
    snapshot(&heap, &out, &opts);
    let w = std::fs::read(&out).unwrap();
    let n = ImageHeader::parse(&w, w.len() as u64).unwrap();
    assert_eq!(
        (n.eden_bytes, n.num_stack_pages, n.max_ext_sem_table),
        (32 << 20, 120, 1024)
    );
    assert_eq!(n.flags, h.flags, "flags preserved as read");
    assert_eq!(n.cog_code_size_kib, 2048);
    assert_eq!(n.image_version, 7);
    assert_eq!(w[128..], bytes[128..], "only the header changed");
}

/// Checks that `moved` (one segment, loaded where a relocated snapshot said)
/// holds the objects of `reference` in the same order, every word equal
/// except pointers, which must point to the same objects once `to_old` maps
/// an address of `moved` back to the reference's address space.
fn assert_same_objects_across(
    reference: &LoadedHeap,
    moved: &LoadedHeap,
    to_old: impl Fn(u64) -> Option<u64>,
) -> u64 {
    fn words<L: spur_format::Layout>(heap: &LoadedHeap) -> Vec<(u64, Vec<u64>)> {
        let mut v = Vec::new();
        for (i, s) in heap.segments().iter().enumerate() {
            let bytes = heap.segment_bytes(i);
            let mut w = Walk::<L>::new(bytes, s.new_start.get(), i);
            for o in w.by_ref() {
                let n = to_usize(o.num_slots.max(1));
                let at = o.offset + 8;
                let slots = (0..n)
                    .map(|k| L::get(&bytes[at + k * L::W..at + (k + 1) * L::W]))
                    .collect();
                v.push((o.header.0, slots));
            }
            w.finish().unwrap();
        }
        v
    }
    let (a, b) = match reference.word() {
        WordSize::W64 => (words::<L64>(reference), words::<L64>(moved)),
        WordSize::W32 => (words::<L32>(reference), words::<L32>(moved)),
    };
    assert_eq!(a.len(), b.len(), "object counts differ");
    for (k, ((ha, sa), (hb, sb))) in a.iter().zip(&b).enumerate() {
        assert_eq!(ha, hb, "object {k}: headers differ");
        for (j, (va, vb)) in sa.iter().zip(sb).enumerate() {
            if va != vb {
                assert_eq!(
                    to_old(*vb),
                    Some(*va),
                    "object {k} slot {j}: {vb:#x} does not undo to {va:#x}"
                );
            }
        }
    }
    a.len() as u64
}

/// Loads `path` at `base`, snapshots it to `out`, checks the new header, and
/// then loads `out` at its own old base (no swizzling) and compares it with
/// the original loaded in place.
fn relocated_round_trip(path: &Path, out: &Path, req: PlacementRequest, what: &str) {
    let original = std::fs::read(path).unwrap();
    let (oh, ot) = parse(&original);
    let moved = load_path(
        path,
        &LoadOptions {
            placement: req,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(moved.placement(), Placement::Relocated, "{what}");
    let base = moved.nil().get();
    snapshot(&moved, out, &SnapshotOptions::default());
    let written = std::fs::read(out).unwrap();
    let (h, t) = parse(&written);
    let n = ot.segments.len() as u64;
    assert_eq!(
        h.old_base.get(),
        base,
        "{what}: oldBaseAddr is the new base"
    );
    assert_eq!(
        h.special_objects_oop.get(),
        moved.special_objects().get(),
        "{what}"
    );
    assert_eq!(
        t.segments.len(),
        1,
        "{what}: a coalesced heap is one segment"
    );
    assert_eq!(h.first_segment_size, h.data_size, "{what}");
    assert_eq!(h.data_size, oh.data_size - 16 * (n - 1), "{what}");
    assert_eq!(h.prefix_bytes, 0);
    assert_eq!(
        (h.format, h.flags, h.last_hash, h.free_old_space),
        (oh.format, oh.flags, oh.last_hash, oh.free_old_space),
        "{what}"
    );
    // Where each original segment went, to undo the deltas later.
    let starts: Vec<(u64, u64)> = moved
        .segments()
        .iter()
        .map(|s| (s.new_start.get(), s.old_start.get()))
        .collect();
    let memory: Vec<u8> = (0..moved.segments().len())
        .flat_map(|i| {
            // In a coalesced heap a segment's last 16 bytes are the next one's
            // first: without them the segments make the heap, bridge excluded.
            let b = moved.segment_bytes(i);
            b[..b.len() - 16].to_vec()
        })
        .collect();
    drop(moved);

    let again = load_path(out, &LoadOptions::default()).unwrap();
    assert_eq!(again.placement(), Placement::OldBase, "{what}");
    assert!(!again.swizzled(), "{what}: loads again without swizzling");
    assert_eq!(again.nil().get(), base);
    let v = verify(&again);
    assert!(v.ok(), "{what}: {:#?}", &v.errors[..v.errors.len().min(5)]);
    let bytes = again.segment_bytes(0);
    assert!(
        bytes[..bytes.len() - 16] == memory[..],
        "{what}: the reloaded heap is the relocated heap, byte for byte"
    );
    let reference = load_path(path, &LoadOptions::default()).unwrap();
    assert_eq!(reference.placement(), Placement::OldBase);
    let to_old = |v: u64| {
        starts
            .iter()
            .rev()
            .find(|&&(new, _)| v >= new)
            .map(|&(new, old)| v - new + old)
    };
    let objects = assert_same_objects_across(&reference, &again, to_old);
    assert_eq!(objects, v.objects, "{what}");
}

#[test]
fn relocated_builder_snapshots_load_again_at_the_new_base_without_swizzling() {
    let _lock = address_space();
    let dir = tempfile::tempdir().unwrap();
    for (name, spec) in kinds() {
        let path = write_synth(dir.path(), &format!("{name}.image"), &spec);
        for req in [
            PlacementRequest::At(0x2345_6788),
            PlacementRequest::Relocate,
        ] {
            let out = dir.path().join(format!("{name}.moved.image"));
            relocated_round_trip(&path, &out, req, &format!("{name} {req:?}"));
        }
    }
}

#[test]
#[ignore = "needs SPUR_CORPUS"]
fn relocated_corpus_snapshots_load_again_at_the_new_base_without_swizzling() {
    let dir = corpus_dir();
    let _lock = address_space();
    let out_dir = tempfile::tempdir().unwrap();
    for img in CORPUS {
        let out = out_dir.path().join(img.file);
        relocated_round_trip(
            &dir.join(img.file),
            &out,
            PlacementRequest::At(0x2000_0008),
            img.file,
        );
    }
}

/// A heap of a little over two write chunks: the writes cut at 16 MiB file
/// boundaries, the writeback hints, the reserved blocks and the short last
/// chunk all come into play, in the foreground and in the forked child.
#[test]
fn a_heap_of_several_write_chunks_is_written_byte_for_byte_to_its_exact_length() {
    let _lock = address_space();
    let dir = tempfile::tempdir().unwrap();
    let mut s = spec(WordSize::W64, 33 * 1024 + 12);
    s.prefix = true;
    let path = write_synth(dir.path(), "big.image", &s);
    let before = std::fs::read(&path).unwrap();
    let chunk = spur_loader::snapshot::WRITE_CHUNK as u64;
    assert!(before.len() as u64 > 2 * chunk && !(before.len() as u64).is_multiple_of(chunk));
    let heap = load_path(&path, &LoadOptions::default()).unwrap();
    let opts = keeping_prefix(&path, &heap);
    let mut seen = Vec::new();
    let fg = dir.path().join("fg.image");
    std::fs::write(&fg, b"previous").unwrap();
    let r = snapshot_to_path(&heap, &fg, &opts, &mut |done| seen.push(done)).unwrap();
    assert_eq!(r.bytes_written, before.len() as u64);
    // Progress after every write: no write crosses a chunk boundary of the
    // file, and every boundary is the end of one.
    assert_eq!(seen.last(), Some(&r.bytes_written));
    let mut from = 0;
    for &to in &seen {
        assert!(to > from && (to - 1) / chunk == from / chunk, "{seen:?}");
        from = to;
    }
    assert!(
        seen.contains(&chunk) && seen.contains(&(2 * chunk)),
        "{seen:?}"
    );
    let bg = dir.path().join("bg.image");
    let r = snapshot_in_background(&heap, &bg, &opts)
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(r.bytes_written, before.len() as u64);
    for out in [&fg, &bg] {
        // Reserving the blocks up front leaves the length to the writes.
        assert_eq!(std::fs::metadata(out).unwrap().len(), before.len() as u64);
        assert!(std::fs::read(out).unwrap() == before, "{}", out.display());
    }
    assert_eq!(others(dir.path(), &[&path, &fg, &bg]), Vec::<String>::new());
}

// ---- failures ----

/// A writer that accepts `left` bytes and then fails, as a full disk does.
struct FailAfter<W> {
    inner: W,
    left: u64,
}

impl<W: Write> Write for FailAfter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Err(io::Error::from_raw_os_error(28)); // ENOSPC
        }
        let n = to_usize((buf.len() as u64).min(self.left));
        let n = self.inner.write(&buf[..n])?;
        self.left -= n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Byte counts after which a write fails: none, inside the header, at its
/// end, inside each segment, inside and at the edges of each bridge, and at
/// the very end.
fn failure_points(plan: &SnapshotPlan<'_>) -> Vec<u64> {
    let head = plan.file_len() - plan.layout.data_size;
    let mut v = vec![0, 1, 7, head / 2, head - 1, head, head + 1];
    for s in &plan.layout.segments {
        let start = head + s.data_offset;
        let bridge = start + s.size - 16;
        v.extend([
            start,
            start + 3,
            start + s.size / 2,
            bridge - 1,
            bridge,
            bridge + 5,
            bridge + 8,
            bridge + 15,
        ]);
    }
    v.push(plan.file_len() - 1);
    v.sort_unstable();
    v.dedup();
    v
}

#[test]
fn every_injected_write_failure_leaves_the_previous_image_untouched() {
    let _lock = address_space();
    let dir = tempfile::tempdir().unwrap();
    let mut s = spec(WordSize::W64, 1536);
    s.segments = 3;
    s.gap_bytes = 1 << 20;
    s.prefix = true;
    for relocated in [false, true] {
        let path = write_synth(dir.path(), "img.image", &s);
        let before = std::fs::read(&path).unwrap();
        let req = if relocated {
            PlacementRequest::Relocate
        } else {
            PlacementRequest::OldBase
        };
        let heap = load_path(
            &path,
            &LoadOptions {
                placement: req,
                ..Default::default()
            },
        )
        .unwrap();
        let opts = keeping_prefix(&path, &heap);
        let plan = SnapshotPlan::new(&heap, &opts).unwrap();
        let points = failure_points(&plan);
        assert!(points.len() > 8 * plan.layout.segments.len());
        for n in points {
            // The target is the image the heap came from (OUT == IMAGE).
            let e = write_atomically(&path, |f| {
                plan.write_to(&mut FailAfter { inner: f, left: n }, &mut |_| {})
            })
            .unwrap_err();
            match &e {
                SnapshotError::Write { offset, source, .. } => {
                    assert!(*offset <= n, "failure after {n} bytes reported at {offset}");
                    assert_eq!(source.raw_os_error(), Some(28));
                }
                other => panic!("after {n} bytes: {other}"),
            }
            let after = std::fs::read(&path).unwrap();
            assert!(
                after == before,
                "after a failure at byte {n} the image changed"
            );
            assert_eq!(
                others(dir.path(), &[&path]),
                Vec::<String>::new(),
                "a temporary file was left after a failure at byte {n}"
            );
        }
        // The same writer with no failure replaces the image, here with itself
        // (relocated: with the relocated image).
        write_atomically(&path, |f| plan.write_to(f, &mut |_| {})).unwrap();
        let after = std::fs::read(&path).unwrap();
        assert_eq!(after.len() as u64, plan.file_len());
        assert_eq!(after == before, !relocated);
        assert!(others(dir.path(), &[&path]).is_empty());
    }
}

#[test]
fn a_failed_rename_leaves_no_temporary_file() {
    let _lock = address_space();
    let dir = tempfile::tempdir().unwrap();
    let path = write_synth(dir.path(), "a.image", &spec(WordSize::W32, 256));
    let heap = load_path(&path, &LoadOptions::default()).unwrap();
    // A non-empty folder where the image should go: refused before
    // anything is written, under its own name.
    let target = dir.path().join("taken");
    std::fs::create_dir_all(target.join("inside")).unwrap();
    let e = snapshot_to_path(&heap, &target, &SnapshotOptions::default(), &mut |_| {}).unwrap_err();
    assert!(
        Chain(&e)
            .to_string()
            .starts_with(&format!("{}: a directory", target.display())),
        "{e}"
    );
    assert!(target.join("inside").is_dir());
    assert_eq!(others(dir.path(), &[&path, &target]), Vec::<String>::new());
    // A folder that does not exist: refused before anything is written.
    let e = snapshot_to_path(
        &heap,
        &dir.path().join("no/such/dir/x.image"),
        &SnapshotOptions::default(),
        &mut |_| {},
    )
    .unwrap_err();
    assert!(e.to_string().contains("creating"), "{e}");
}

#[test]
fn stale_temporary_files_of_dead_writers_are_removed_and_live_ones_kept() {
    let _lock = address_space();
    let dir = tempfile::tempdir().unwrap();
    let path = write_synth(dir.path(), "s.image", &spec(WordSize::W64, 256));
    // The pid of a process that has ended.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let stale = dir.path().join(format!(".s.image.snapshot-{dead}-0.tmp"));
    // Left by a writer in another PID namespace, whose pid is live here.
    let stale_elsewhere = dir.path().join(".s.image.snapshot-1-0.tmp");
    // A live writer's file, whatever its pid says: it holds the lock.
    let live = dir.path().join(format!(".s.image.snapshot-{dead}-1.tmp"));
    let unrelated = dir.path().join(".t.image.snapshot-999999999-0.tmp");
    for p in [&stale, &stale_elsewhere, &live, &unrelated] {
        std::fs::write(p, b"partial").unwrap();
    }
    let held = spur_loader::files::is_stale(&live).expect("not locked yet");
    let heap = load_path(&path, &LoadOptions::default()).unwrap();
    snapshot(&heap, &path, &SnapshotOptions::default());
    assert!(!stale.exists(), "the dead writer's file is removed");
    assert!(!stale_elsewhere.exists(), "an unlocked file is removed");
    assert!(live.exists(), "a live writer's file is left alone");
    assert!(unrelated.exists(), "another target's file is left alone");
    drop(held);
}

// ---- background ----

#[test]
fn background_snapshots_write_what_the_foreground_writes() {
    let _lock = address_space();
    let dir = tempfile::tempdir().unwrap();
    let mut s = spec(WordSize::W64, 2048);
    s.segments = 2;
    s.gap_bytes = 1 << 20;
    let path = write_synth(dir.path(), "b.image", &s);
    for req in [PlacementRequest::OldBase, PlacementRequest::At(0x3000_0000)] {
        let (heap, fg) = loaded_and_written(&path, req, dir.path());
        let bg = dir.path().join("bg.image");
        std::fs::write(&bg, b"previous").unwrap();
        let job = snapshot_in_background(&heap, &bg, &SnapshotOptions::default()).unwrap();
        assert!(job.pid() > 0);
        assert!(job.pause().as_millis() < 1000);
        // The parent may drop its heap at once: the child writes its own view.
        drop(heap);
        let r = job.wait().unwrap();
        assert_eq!(r.bytes_written, std::fs::metadata(&bg).unwrap().len());
        assert!(std::fs::read(&bg).unwrap() == std::fs::read(&fg).unwrap());
        assert!(r.child_us > 0);
        if req == PlacementRequest::OldBase {
            assert!(std::fs::read(&bg).unwrap() == std::fs::read(&path).unwrap());
        }
        assert_eq!(others(dir.path(), &[&path, &fg, &bg]), Vec::<String>::new());
    }
}

/// `path` loaded as `req` asks, and its foreground snapshot `fg.image` in `dir`.
fn loaded_and_written(path: &Path, req: PlacementRequest, dir: &Path) -> (LoadedHeap, PathBuf) {
    let heap = load_path(
        path,
        &LoadOptions {
            placement: req,
            ..Default::default()
        },
    )
    .unwrap();
    let fg = dir.join("fg.image");
    snapshot(&heap, &fg, &SnapshotOptions::default());
    (heap, fg)
}

/// A background snapshot by a writer thread, or `None` (with a note) where
/// the kernel offers no write-protection and a child was forked instead;
/// with `SPUR_REQUIRE_UFFD` set (CI sets it) that is a failure.
fn thread_writer(job: &BackgroundSnapshot) -> bool {
    match job.fell_back() {
        None => {
            assert_eq!(job.writer(), BackgroundWriter::Thread);
            assert_eq!(job.pid(), 0);
            true
        }
        Some(why) => {
            assert_eq!(job.writer(), BackgroundWriter::Fork);
            assert!(
                std::env::var_os("SPUR_REQUIRE_UFFD").is_none(),
                "no writer thread: {why}"
            );
            eprintln!("note: {why}; the thread writer's checks ran on a forked child");
            false
        }
    }
}

#[test]
fn a_writer_thread_writes_the_heap_of_the_call_while_the_heap_changes() {
    let _lock = address_space();
    let dir = tempfile::tempdir().unwrap();
    for (word, kib) in [(WordSize::W64, 12 << 10), (WordSize::W32, 6 << 10)] {
        let mut s = spec(word, kib);
        s.segments = 3;
        s.gap_bytes = 3 << 20;
        let path = write_synth(dir.path(), "t.image", &s);
        for req in [PlacementRequest::OldBase, PlacementRequest::Relocate] {
            let (mut heap, fg) = loaded_and_written(&path, req, dir.path());
            let bg = dir.path().join("bg.image");
            let job = snapshot_in_background_by(
                &heap,
                &bg,
                &SnapshotOptions::default(),
                BackgroundWriter::Thread,
            )
            .unwrap();
            let threaded = thread_writer(&job);
            // Every 64 KiB of every segment changes at once, ahead of the writer.
            let mut changed = Vec::new();
            for seg in heap.segments().to_vec() {
                let mut a = seg.new_start.get() + 64;
                while a + 8 < seg.new_start.get() + seg.size - 16 {
                    changed.push(a);
                    a += 64 << 10;
                }
            }
            for &a in &changed {
                heap.write_u64(NewAddr::from_heap_word(a), 0xDEAD_BEEF_0BAD_F00D)
                    .unwrap();
            }
            let r = job.wait().unwrap();
            assert!(
                std::fs::read(&bg).unwrap() == std::fs::read(&fg).unwrap(),
                "{word:?} {req:?}: the snapshot holds the heap of the call"
            );
            if threaded {
                // How many writes came before the writer is up to the
                // scheduler; the file is the same either way.
                assert_eq!(r.writer, BackgroundWriter::Thread);
                assert!(r.copied_chunks <= heap.heap_bytes().div_ceil(2 << 20) + 3);
            } else {
                assert_eq!(r.copied_chunks, 0);
            }
            for &a in &changed {
                assert_eq!(
                    heap.read_u64(NewAddr::from_heap_word(a)),
                    Some(0xDEAD_BEEF_0BAD_F00D)
                );
            }
            // A snapshot right after, dropped heap and all before it ends,
            // still writes the heap it was given: the drop waits.
            let again = dir.path().join("again.image");
            let job = snapshot_in_background_by(
                &heap,
                &again,
                &SnapshotOptions::default(),
                BackgroundWriter::Thread,
            )
            .unwrap();
            let mut want = heap_snapshot_bytes(&heap, dir.path());
            drop(heap);
            job.wait().unwrap();
            assert!(std::fs::read(&again).unwrap() == std::mem::take(&mut want));
            for f in [&fg, &bg, &again] {
                std::fs::remove_file(f).unwrap();
            }
            assert_eq!(others(dir.path(), &[&path]), Vec::<String>::new());
        }
    }
}

#[test]
fn a_writer_thread_keeps_its_view_under_writes_until_it_is_done() {
    let _lock = address_space();
    let dir = tempfile::tempdir().unwrap();
    let path = write_synth(dir.path(), "w.image", &spec(WordSize::W64, 64 << 10));
    let mut heap = load_path(&path, &LoadOptions::default()).unwrap();
    let seg = heap.segments()[0];
    let (lo, words) = (seg.new_start.get() + 64, (seg.size - 128) / 8);
    for round in 0..3u64 {
        let want = heap_snapshot_bytes(&heap, dir.path());
        let out = dir.path().join("w-out.image");
        let mut job = snapshot_in_background_by(
            &heap,
            &out,
            &SnapshotOptions::default(),
            BackgroundWriter::Thread,
        )
        .unwrap();
        thread_writer(&job);
        // Writes all over the heap, the chunk the writer is reading among
        // them, for as long as it writes.
        let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ round;
        let mut writes = 0u64;
        let r = loop {
            if let Some(r) = job.try_wait().unwrap() {
                break r;
            }
            for _ in 0..64 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let a = lo + (x % words) * 8;
                heap.write_u64(NewAddr::from_heap_word(a), x).unwrap();
                writes += 1;
            }
        };
        assert!(writes > 0);
        assert_eq!(r.bytes_written, want.len() as u64);
        assert!(
            std::fs::read(&out).unwrap() == want,
            "round {round}: the file holds the heap of the call"
        );
        std::fs::remove_file(&out).unwrap();
    }
    assert_eq!(others(dir.path(), &[&path]), Vec::<String>::new());
}

/// Starts background snapshots of `heap` to `out` until one's temporary
/// file can be taken away before its rename, and returns that one's error,
/// which must be the rename's `ENOENT`; `out` is then left absent.
fn rename_fails(
    heap: &LoadedHeap,
    out: &Path,
    start: impl Fn(&LoadedHeap, &Path) -> BackgroundSnapshot,
) -> SnapshotError {
    for _attempt in 0..10 {
        let job = start(heap, out);
        if std::fs::remove_file(job.temp_path()).is_err() {
            // Renamed already: try again.
            job.wait().unwrap();
            std::fs::remove_file(out).unwrap();
            continue;
        }
        let e = job.wait().unwrap_err();
        match &e {
            SnapshotError::ChildFailed(io) => assert_eq!(io.raw_os_error(), Some(2)), // ENOENT
            other => panic!("{other}"),
        }
        assert!(!out.exists());
        return e;
    }
    panic!("the writer always renamed first");
}

/// The bytes a foreground snapshot of `heap` writes.
fn heap_snapshot_bytes(heap: &LoadedHeap, dir: &Path) -> Vec<u8> {
    let p = dir.join("want.image");
    snapshot(heap, &p, &SnapshotOptions::default());
    let b = std::fs::read(&p).unwrap();
    std::fs::remove_file(&p).unwrap();
    b
}

#[test]
fn a_failing_writer_thread_is_reported_and_leaves_nothing() {
    let _lock = address_space();
    let dir = tempfile::tempdir().unwrap();
    let path = write_synth(dir.path(), "f.image", &spec(WordSize::W64, 8 << 10));
    let heap = load_path(&path, &LoadOptions::default()).unwrap();
    let out = dir.path().join("out.image");
    rename_fails(&heap, &out, |heap, out| {
        let job = snapshot_in_background_by(
            heap,
            out,
            &SnapshotOptions::default(),
            BackgroundWriter::Thread,
        )
        .unwrap();
        thread_writer(&job);
        job
    });
    assert_eq!(others(dir.path(), &[&path]), Vec::<String>::new());
    // The heap is writable again once the writer is done.
    let mut heap = heap;
    let nil = heap.nil();
    heap.write_u64(NewAddr::from_heap_word(nil.get() + 8), 0)
        .unwrap();
}

#[test]
fn a_failing_background_writer_is_reported_and_leaves_nothing() {
    let _lock = address_space();
    let dir = tempfile::tempdir().unwrap();
    let path = write_synth(dir.path(), "c.image", &spec(WordSize::W32, 256));
    let heap = load_path(&path, &LoadOptions::default()).unwrap();
    // A folder as the target is refused before the fork.
    let target = dir.path().join("taken");
    std::fs::create_dir_all(target.join("inside")).unwrap();
    let e = snapshot_in_background(&heap, &target, &SnapshotOptions::default()).unwrap_err();
    assert!(matches!(e, SnapshotError::Target { .. }), "{e}");
    assert_eq!(others(dir.path(), &[&path, &target]), Vec::<String>::new());
    // The child's temporary taken away under it: its rename fails.
    let out = dir.path().join("out.image");
    let e = rename_fails(&heap, &out, |heap, out| {
        snapshot_in_background(heap, out, &SnapshotOptions::default()).unwrap()
    });
    assert!(e.to_string().contains("writer process failed"), "{e}");
    assert_eq!(others(dir.path(), &[&path, &target]), Vec::<String>::new());
}

#[test]
fn a_killed_background_writer_is_reported_and_its_file_removed() {
    let _lock = address_space();
    let dir = tempfile::tempdir().unwrap();
    let path = write_synth(dir.path(), "k.image", &spec(WordSize::W64, 16 << 10));
    let heap = load_path(&path, &LoadOptions::default()).unwrap();
    let before = std::fs::read(&path).unwrap();
    let mut killed = false;
    for _attempt in 0..10 {
        // The target is the source image: it must survive the kill.
        let job = snapshot_in_background(&heap, &path, &SnapshotOptions::default()).unwrap();
        let status = std::process::Command::new("kill")
            .args(["-9", &job.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        match job.wait() {
            Err(SnapshotError::ChildKilled(9)) => {
                killed = true;
                break;
            }
            // The child was quicker than the kill: the image was rewritten with itself.
            Ok(_) => {}
            Err(other) => panic!("{other}"),
        }
    }
    assert!(killed, "never caught the writer before it finished");
    assert!(std::fs::read(&path).unwrap() == before);
    assert_eq!(others(dir.path(), &[&path]), Vec::<String>::new());
}

// ---- composed images ----

#[test]
fn a_composed_folder_is_written_back_as_the_single_file_it_came_from() {
    let _lock = address_space();
    let dir = tempfile::tempdir().unwrap();
    for word in [WordSize::W64, WordSize::W32] {
        let mut s = spec(word, 2048);
        s.segments = 3;
        s.gap_bytes = 1 << 20;
        let path = write_synth(dir.path(), "c.image", &s);
        let original = std::fs::read(&path).unwrap();
        let heap = load_path(&path, &LoadOptions::default()).unwrap();
        let folder = dir.path().join("c");
        spur_loader::write_composed(&heap, &folder, &Default::default()).unwrap();
        drop(heap);

        let heap = load_path(&folder, &LoadOptions::default()).unwrap();
        assert_eq!(heap.placement(), Placement::OldBase);
        let out = dir.path().join("back.image");
        snapshot(&heap, &out, &SnapshotOptions::default());
        let written = std::fs::read(&out).unwrap();
        let (ho, to) = parse(&original);
        let (hw, tw) = parse(&written);
        assert_eq!(tw, to, "{word:?}: the same segments, gaps and bridges");
        let hs = to_usize(ho.header_size);
        assert!(written[hs..] == original[hs..], "{word:?}: the same data");
        // The window size travels in header.ston as an extra field: the
        // whole header, and so the whole file, is the same.
        assert_eq!(hw, ho);
        assert_eq!(written, original);
    }
}

#[test]
fn a_heap_with_a_perm_space_is_refused() {
    let _lock = address_space();
    let dir = tempfile::tempdir().unwrap();
    let path = write_synth(dir.path(), "p.image", &spec(WordSize::W64, 1024));
    let heap = load_path(&path, &LoadOptions::default()).unwrap();
    let nil = heap.nil().get();
    let folder = dir.path().join("p");
    spur_loader::write_composed(&heap, &folder, &Default::default()).unwrap();
    drop(heap);
    // Perm space: one Array [nil, nil, 5] at Pharo's perm base, counted in dataSize.
    let perm = spur_format::read::composed::perm_space_base(WordSize::W64);
    let mut data = spur_format::ObjHeader::new(51, 2, 3, 0)
        .0
        .to_le_bytes()
        .to_vec();
    for v in [nil, nil, (5 << 3) | 1] {
        data.extend_from_slice(&u64::to_le_bytes(v));
    }
    std::fs::write(folder.join("permSpace.data"), &data).unwrap();
    std::fs::write(
        folder.join("permSpace.ston"),
        spur_format::write::composed::segment_ston(perm, data.len() as u64),
    )
    .unwrap();
    let h = std::fs::read_to_string(folder.join("header.ston")).unwrap();
    let size: u64 = h
        .split("#dataSize : ")
        .nth(1)
        .and_then(|r| r.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    std::fs::write(
        folder.join("header.ston"),
        h.replacen(
            &format!("#dataSize : {size},"),
            &format!("#dataSize : {},", size + data.len() as u64),
            1,
        ),
    )
    .unwrap();
    let heap = load_path(&folder, &LoadOptions::default()).unwrap();
    assert!(heap.perm_space().is_some());
    let out = dir.path().join("p.out.image");
    let e = snapshot_to_path(&heap, &out, &SnapshotOptions::default(), &mut |_| {}).unwrap_err();
    assert!(matches!(e, SnapshotError::PermSpace { bytes: 32 }), "{e}");
    assert!(e.to_string().contains("perm space"), "{e}");
    assert!(!out.exists());
}

// ---- property ----

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig {
        cases: 24,
        failure_persistence: None,
        ..Default::default()
    })]

    /// Any image the builder can make (word size, segments and gaps, prefix,
    /// bytecode sets, free chunks, seed) loaded at its old addresses and
    /// snapshotted in place is the same file, byte for byte.
    #[test]
    fn any_builder_image_snapshots_in_place_byte_for_byte(
        w64 in proptest::bool::ANY,
        kib in 64u64..512,
        segments in 1usize..5,
        gap_slots in 0u64..(1 << 14),
        prefix in proptest::bool::ANY,
        sista in proptest::bool::ANY,
        free_chunks in proptest::bool::ANY,
        seed in proptest::num::u64::ANY,
    ) {
        let word = if w64 { WordSize::W64 } else { WordSize::W32 };
        let spec = SynthSpec {
            segments,
            gap_bytes: gap_slots * 8,
            prefix,
            multiple_bytecode_sets: sista,
            free_chunks,
            seed,
            ..spec(word, kib)
        };
        proptest::prop_assume!(spec.validate().is_ok());
        let _lock = address_space();
        let dir = tempfile::tempdir().unwrap();
        let path = write_synth(dir.path(), "p.image", &spec);
        let original = std::fs::read(&path).unwrap();
        let heap = load_path(&path, &LoadOptions::default()).unwrap();
        proptest::prop_assert_eq!(heap.placement(), Placement::OldBase);
        let out = dir.path().join("p.out.image");
        snapshot(&heap, &out, &keeping_prefix(&path, &heap));
        let written = std::fs::read(&out).unwrap();
        proptest::prop_assert!(
            written == original,
            "differs at byte {:?} (lengths {} and {})",
            written.iter().zip(&original).position(|(a, b)| a != b),
            written.len(),
            original.len()
        );
    }
}
