/* spur_info: a VM's loading front end in C, on the spur_loader library.
 *
 * Loads an image (a single file or a composed folder), prints its header
 * and segments, the class histogram's top ten, wires the runtime, prints
 * the resume point and the memory a VM would run in, and writes a
 * snapshot. One "key: value" line per fact, so that a script (and
 * vm-loader/tests/capi.rs) can compare it with vm-loader's JSON.
 *
 *   spur_info [--relocate] [--map-files] [--snapshot OUT [--background]] IMAGE
 *
 * Build against the static library (docs/embedding.md, "From C"):
 *   cargo build --release -p spur-capi
 *   cc -std=c99 -Iinclude examples/c/spur_info.c target/release/libspur_capi.a \
 *      -lpthread -ldl -lm -lrt -lutil -o spur_info
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "spur_loader.h"

static const char *prog = "spur_info";

/* A failed call: its one line, as vm-loader prints it, and exit code 2.
 * `SPUR_DEBUG_STATUS` in the environment also names the call and status. */
static int fail(const char *call, SpurStatus s) {
  fprintf(stderr, "%s: %s\n", prog, spur_last_error());
  if (getenv("SPUR_DEBUG_STATUS") != NULL) {
    fprintf(stderr, "%s: %s returned %s\n", prog, call, spur_status_name(s));
  }
  return 2;
}

#define CHECK(call)                  \
  do {                               \
    SpurStatus s_ = (call);          \
    if (s_ != SPUR_OK) {             \
      rc = fail(#call, s_);          \
      goto out;                      \
    }                                \
  } while (0)

int main(int argc, char **argv) {
  const char *path = NULL, *snapshot = NULL;
  int relocate = 0, map_files = 0, background = 0;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--relocate") == 0) {
      relocate = 1;
    } else if (strcmp(argv[i], "--map-files") == 0) {
      map_files = 1;
    } else if (strcmp(argv[i], "--background") == 0) {
      background = 1;
    } else if (strcmp(argv[i], "--snapshot") == 0 && i + 1 < argc) {
      snapshot = argv[++i];
    } else if (argv[i][0] != '-' && path == NULL) {
      path = argv[i];
    } else {
      fprintf(stderr, "usage: %s [--relocate] [--map-files] [--snapshot OUT [--background]] IMAGE\n", prog);
      return 2;
    }
  }
  if (path == NULL) {
    fprintf(stderr, "usage: %s [--relocate] [--map-files] [--snapshot OUT [--background]] IMAGE\n", prog);
    return 2;
  }

  int rc = 0;
  SpurImage img = {0};
  int loaded = 0;
  char name[256];
  size_t len = 0;

  SpurLoadOptions opts;
  CHECK(spur_load_options_default(&opts));
  if (relocate) opts.placement = SPUR_PLACE_RELOCATE;
  /* The promise that nobody changes the folder's files while we run. */
  if (map_files) opts.map_files_unchanged = 1;
  CHECK(spur_load(path, &opts, &img));
  loaded = 1;

  SpurHeader h;
  CHECK(spur_header(img, &h));
  printf("input: %s\n", h.composed ? "composed" : "file");
  printf("format: %" PRIu32 "\n", h.format);
  printf("word_size: %" PRIu32 "\n", h.word_size);
  printf("byte_order: %s\n", h.big_endian ? "big" : "little");
  printf("multiple_bytecode_sets: %u\n", (unsigned)h.multiple_bytecode_sets);
  printf("prefix_bytes: %" PRIu64 "\n", h.prefix_bytes);
  printf("header_size: %" PRIu64 "\n", h.header_size);
  printf("data_size: %" PRIu64 "\n", h.data_size);
  printf("old_base: 0x%" PRIx64 "\n", h.old_base);
  printf("special_objects_oop: 0x%" PRIx64 "\n", h.special_objects_oop);
  printf("last_hash: 0x%" PRIx64 "\n", h.last_hash);
  printf("flags: 0x%" PRIx64 "\n", h.flags);
  printf("first_segment_size: %" PRIu64 "\n", h.first_segment_size);
  printf("free_old_space: %" PRIu64 "\n", h.free_old_space);
  printf("eden_bytes: %" PRIu32 "\n", h.eden_bytes);
  printf("stack_pages: %u\n", (unsigned)h.stack_pages);
  printf("cog_code_size: %" PRIu64 "\n", h.cog_code_size);
  printf("max_ext_sem_table: %u\n", (unsigned)h.max_ext_sem_table);
  printf("image_version: %u\n", (unsigned)h.image_version);
  printf("extra_vm_memory: %" PRIu32 "\n", h.extra_vm_memory);
  printf("saved_window: %" PRIu32 "x%" PRIu32 "\n", h.saved_window_width, h.saved_window_height);

  SpurPlacement p;
  CHECK(spur_placement(img, &p));
  printf("placement: %s\n", p.relocated ? "relocated" : "old-base");
  printf("swizzled: %u\n", (unsigned)p.swizzled);
  printf("segments: %" PRIu64 "\n", p.segments);
  for (uint64_t i = 0; i < p.segments; i++) {
    SpurSegment s;
    CHECK(spur_segment(img, i, &s));
    printf("segment: %" PRIu64 " old 0x%" PRIx64 " new 0x%" PRIx64 " size %" PRIu64 "%s\n", s.index,
           s.old_start, s.new_start, s.size, s.mapped ? " mapped" : "");
  }

  /* The class histogram, as `vm-loader stats`, before wiring. */
  SpurHistogram hist;
  CHECK(spur_histogram(img, &hist));
  printf("histogram: %" PRIu64 " classes, %" PRIu64 " instances, %" PRIu64 " bytes\n", hist.rows,
         hist.instances, hist.bytes);
  for (uint64_t i = 0; i < hist.rows && i < 10; i++) {
    SpurClassStats row;
    CHECK(spur_histogram_row(img, i, &row, name, sizeof name, &len));
    printf("class: %" PRIu64 " %" PRIu64 " %s\n", row.instances, row.bytes, name);
  }

  /* The snapshot is of the heap as loaded, as `vm-loader snapshot` writes it. */
  if (snapshot != NULL) {
    SpurSnapshotResult r;
    if (background) {
      SpurJob job;
      CHECK(spur_snapshot_background(img, snapshot, NULL, &job));
      CHECK(spur_job_wait(job, &r));
    } else {
      CHECK(spur_snapshot(img, snapshot, NULL, &r));
    }
    printf("snapshot: %" PRIu64 " bytes in %" PRIu64 " segment(s)%s\n", r.bytes_written, r.segments,
           r.composed ? ", composed" : "");
  }

  CHECK(spur_wire(img, NULL));
  CHECK(spur_dialect(img, name, sizeof name, &len));
  printf("dialect: %s\n", name);

  SpurResumePoint rp;
  CHECK(spur_resume_point(img, &rp));
  printf("resume.process: 0x%" PRIx64 "\n", rp.process);
  printf("resume.context: 0x%" PRIx64 "\n", rp.context);
  printf("resume.method: 0x%" PRIx64 "\n", rp.method);
  printf("resume.receiver: 0x%" PRIx64 "\n", rp.receiver);
  printf("resume.pc: %" PRIu64 "\n", rp.pc);
  printf("resume.stack_pointer: %" PRIu64 "\n", rp.stack_pointer);
  printf("resume.in_block: %u\n", (unsigned)rp.in_block);
  CHECK(spur_resume_selector(img, name, sizeof name, &len));
  printf("resume.selector: %s\n", name);
  CHECK(spur_resume_method_name(img, name, sizeof name, &len));
  printf("resume.method_name: %s\n", name);

  SpurSpecialObjects so;
  CHECK(spur_special_objects(img, &so));
  printf("special_objects: 0x%" PRIx64 " length %" PRIu64 " nil 0x%" PRIx64 " false 0x%" PRIx64
         " true 0x%" PRIx64 "\n",
         so.array, so.length, so.nil, so.false_object, so.true_object);

  SpurClassTable ct;
  CHECK(spur_class_table(img, &ct));
  printf("class_table: %" PRIu64 " pages, %" PRIu64 " classes\n", ct.pages, ct.classes);

  SpurNewSpace ns;
  CHECK(spur_new_space(img, &ns));
  printf("new_space: 0x%" PRIx64 "..0x%" PRIx64 " %" PRIu64 " bytes, eden 0x%" PRIx64 " %" PRIu64
         " bytes, survivors %" PRIu64 ", %s\n",
         ns.start, ns.end, ns.bytes, ns.eden_start, ns.eden_bytes, ns.survivor_bytes,
         ns.below_old_space ? "below-old-space" : "elsewhere");

  SpurStackZone sz;
  CHECK(spur_stack_zone(img, &sz));
  printf("stack_zone: 0x%" PRIx64 " %" PRIu64 " bytes, %" PRIu64 " pages of %" PRIu64 "\n", sz.start,
         sz.bytes, sz.pages, sz.page_bytes);

out:
  if (loaded && spur_release(img) != SPUR_OK) {
    rc = fail("spur_release", SPUR_E_HANDLE);
  }
  return rc;
}
