/* The C interface against bad input: NULL pointers, bad paths, damaged
 * images, bad options, indices out of range, calls in the wrong order,
 * double releases and handles never given out. Every call must return the
 * expected error code with a one-line message, and nothing may crash or
 * leak (tests/valgrind.sh runs this under memcheck).
 *
 *   abuse GOOD_IMAGE SCRATCH_DIR
 *
 * Prints "msg NAME: MESSAGE" for the messages vm-loader also prints (the
 * test driver, vm-loader/tests/capi.rs, compares them) and one line per
 * failed expectation; ends with "N passed, N failed" and exits 1 if any
 * failed. */
#define _POSIX_C_SOURCE 200809L
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "spur_loader.h"

static int passed = 0, failed = 0;

/* `got` must be `want`, with a message that is one non-empty line (or
 * empty after a success). */
static void expect(const char *what, SpurStatus got, SpurStatus want) {
  const char *msg = spur_last_error();
  int ok = got == want;
  if (msg == NULL) {
    ok = 0;
    msg = "(NULL)";
  } else if (want == SPUR_OK) {
    ok = ok && msg[0] == '\0';
  } else {
    ok = ok && msg[0] != '\0' && strchr(msg, '\n') == NULL;
  }
  if (ok) {
    passed++;
  } else {
    failed++;
    printf("FAILED %s: got %s, want %s; message \"%s\"\n", what, spur_status_name(got),
           spur_status_name(want), msg);
  }
}

/* As `expect`, and the message must contain `needle`. */
static void expect_msg(const char *what, SpurStatus got, SpurStatus want, const char *needle) {
  expect(what, got, want);
  if (strstr(spur_last_error(), needle) == NULL) {
    failed++;
    printf("FAILED %s: message \"%s\" does not say \"%s\"\n", what, spur_last_error(), needle);
  }
}

/* Prints a message for the driver to compare with vm-loader's. */
/* Do the two files hold the same bytes? */
static int same_file(const char *a, const char *b) {
  FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
  int same = fa != NULL && fb != NULL;
  while (same) {
    int ca = fgetc(fa), cb = fgetc(fb);
    if (ca != cb) same = 0;
    if (ca == EOF || cb == EOF) break;
  }
  if (fa) fclose(fa);
  if (fb) fclose(fb);
  return same;
}

static void show(const char *name) { printf("msg %s: %s\n", name, spur_last_error()); }

static void check(const char *what, int cond) {
  if (cond) {
    passed++;
  } else {
    failed++;
    printf("FAILED %s\n", what);
  }
}

/* Reads a whole file; NULL when it cannot. */
static unsigned char *slurp(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) return NULL;
  unsigned char *buf = NULL;
  size_t cap = 0, n = 0;
  for (;;) {
    if (n == cap) {
      cap = cap ? cap * 2 : 1 << 16;
      unsigned char *b = realloc(buf, cap);
      if (b == NULL) {
        free(buf);
        fclose(f);
        return NULL;
      }
      buf = b;
    }
    size_t r = fread(buf + n, 1, cap - n, f);
    if (r == 0) break;
    n += r;
  }
  fclose(f);
  *len = n;
  return buf;
}

static int spit(const char *path, const unsigned char *buf, size_t len) {
  FILE *f = fopen(path, "wb");
  if (f == NULL) return -1;
  size_t w = fwrite(buf, 1, len, f);
  fclose(f);
  return w == len ? 0 : -1;
}

/* Threads load, verify and release the same image at once; each one's
 * last error is its own. */
struct worker {
  const char *path;
  int ok;
};

static void *work(void *arg) {
  struct worker *w = arg;
  SpurImage img;
  SpurLoadOptions o;
  w->ok = 0;
  if (spur_load_options_default(&o) != SPUR_OK) return NULL;
  o.placement = SPUR_PLACE_RELOCATE;
  if (spur_load(w->path, &o, &img) != SPUR_OK) return NULL;
  SpurVerifyReport r;
  int good = spur_verify(img, &r) == SPUR_OK && r.ok;
  /* A failure on this thread ... */
  good = good && spur_segment(img, 1000000, &(SpurSegment){0}) == SPUR_E_RANGE;
  good = good && strstr(spur_last_error(), "out of range") != NULL;
  good = good && spur_release(img) == SPUR_OK;
  /* ... and the success after it clears only this thread's message. */
  good = good && spur_last_error()[0] == '\0';
  w->ok = good;
  return NULL;
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: abuse GOOD_IMAGE SCRATCH_DIR\n");
    return 2;
  }
  const char *good = argv[1], *dir = argv[2];
  char path[4096];
  SpurImage img = {0}, none = {0};
  SpurStatus s;

  check("abi version", spur_abi_version() == SPUR_ABI_VERSION);
  check("status names", strcmp(spur_status_name(SPUR_E_NULL), "SPUR_E_NULL") == 0 &&
                            strcmp(spur_status_name(12345), "unknown status") == 0);

  /* NULL pointers, bad paths. */
  expect_msg("load NULL path", spur_load(NULL, NULL, &img), SPUR_E_NULL, "path is NULL");
  expect_msg("load NULL out", spur_load(good, NULL, NULL), SPUR_E_NULL, "out is NULL");
  expect("options NULL", spur_load_options_default(NULL), SPUR_E_NULL);
  expect("load empty path", spur_load("", NULL, &img), SPUR_E_ARGUMENT);
  snprintf(path, sizeof path, "%s/no-such-folder/x.image", dir);
  expect("load missing file", spur_load(path, NULL, &img), SPUR_E_IMAGE);
  show("missing");
  snprintf(path, sizeof path, "%s/empty-folder", dir);
  mkdir(path, 0700);
  expect("load a folder that is no composed image", spur_load(path, NULL, &img), SPUR_E_IMAGE);
  show("folder");
  SpurLoadOptions bad;
  spur_load_options_default(&bad);
  bad.placement = 9;
  expect_msg("load bad placement", spur_load(good, &bad, &img), SPUR_E_ARGUMENT, "placement 9");
  bad.placement = SPUR_PLACE_AT;
  bad.base = 0x1003; /* not 8-aligned */
  expect("load at a misaligned base", spur_load(good, &bad, &img), SPUR_E_IMAGE);
  show("base");

  /* Damaged copies of the good image. */
  size_t len = 0;
  unsigned char *bytes = slurp(good, &len);
  check("read the good image", bytes != NULL && len > 4096);
  if (bytes != NULL && len > 4096) {
    const struct {
      const char *name;
      size_t keep;
      size_t flip; /* offset whose byte is inverted, or 0 */
    } damage[] = {
        {"truncated-header", 40, 0},
        {"truncated-data", 0, 0}, /* half the file */
        {"bad-magic", 0, 1},
        {"bad-segment-size", 0, 0}, /* the first segment's size word */
    };
    for (size_t i = 0; i < sizeof damage / sizeof damage[0]; i++) {
      unsigned char *copy = malloc(len);
      memcpy(copy, bytes, len);
      size_t keep = damage[i].keep ? damage[i].keep : len;
      if (strcmp(damage[i].name, "truncated-data") == 0) keep = len / 2;
      if (damage[i].flip) copy[damage[i].flip] ^= 0xff;
      if (strcmp(damage[i].name, "bad-segment-size") == 0) {
        /* firstSegSize: offset 72 of a 64-bit header, 48 of a 32-bit
         * one (docs/format.md §1.3); 0xb5 starts 68021 and 68533. */
        size_t off = copy[0] == 0xb5 ? 72 : 48;
        for (int b = 0; b < 4; b++) copy[off + b] = 0x7f;
      }
      snprintf(path, sizeof path, "%s/%s.image", dir, damage[i].name);
      check("write a damaged copy", spit(path, copy, keep) == 0);
      free(copy);
      s = spur_load(path, NULL, &img);
      expect(damage[i].name, s, SPUR_E_IMAGE);
      char name[64];
      snprintf(name, sizeof name, "%s", damage[i].name);
      show(name);
    }
  }
  /* A heap whose first objects are overwritten: loaded or refused, but
   * never accepted as sound. */
  if (bytes != NULL && len > 4096) {
    size_t header = bytes[0] == 0xb5 ? 128 : 64;
    for (size_t i = header + 8; i < header + 40; i++) bytes[i] ^= 0x5a;
    snprintf(path, sizeof path, "%s/damaged-heap.image", dir);
    check("write a damaged heap", spit(path, bytes, len) == 0);
    for (size_t i = header + 8; i < header + 40; i++) bytes[i] ^= 0x5a; /* undone */
    s = spur_load(path, NULL, &img);
    if (s == SPUR_OK) {
      SpurVerifyReport vr;
      expect("verify a damaged heap", spur_verify(img, &vr), SPUR_OK);
      check("a damaged heap has errors", !vr.ok && vr.errors > 0);
      SpurFinding f;
      char what[256];
      size_t wlen = 0;
      expect("first finding", spur_finding(img, 0, &f, what, sizeof what, &wlen), SPUR_OK);
      check("a finding says what and where", f.is_error && wlen > 0 && f.kind != NULL && f.kind[0] != '\0');
      printf("finding %s at 0x%" PRIx64 ": %s\n", f.kind, f.addr, what);
      expect("release the damaged heap", spur_release(img), SPUR_OK);
    } else {
      expect("load a damaged heap", s, SPUR_E_IMAGE);
    }
  }
  /* specialObjectsOop naming nil (docs/format.md §1.3): the heap loads,
   * wiring refuses it and takes it along; the handle then only answers
   * SPUR_E_STATE, and is still released. */
  if (bytes != NULL && len > 4096) {
    int w64 = bytes[0] == 0xb5;
    size_t word = w64 ? 8 : 4, old_base = w64 ? 16 : 12, specials = w64 ? 24 : 16;
    memcpy(bytes + specials, bytes + old_base, word);
    snprintf(path, sizeof path, "%s/specials-nil.image", dir);
    check("write an image whose special objects are nil", spit(path, bytes, len) == 0);
    s = spur_load(path, NULL, &img);
    expect("load an image whose special objects are nil", s, SPUR_OK);
    if (s == SPUR_OK) {
      expect("wire it", spur_wire(img, NULL), SPUR_E_RUNTIME);
      show("wire-refused");
      uint64_t slot = 0;
      expect_msg("fetch after a failed wire", spur_fetch(img, 0x10, 0, &slot), SPUR_E_STATE,
                 "released when wiring failed");
      expect("wire again after a failed wire", spur_wire(img, NULL), SPUR_E_STATE);
      SpurHeader kept;
      expect("the header is kept after a failed wire", spur_header(img, &kept), SPUR_OK);
      expect("release after a failed wire", spur_release(img), SPUR_OK);
    }
  }
  free(bytes);

  /* Handles never given out. */
  expect("release handle 0", spur_release(none), SPUR_E_HANDLE);
  expect("release a made-up handle", spur_release((SpurImage){0x123456789}), SPUR_E_HANDLE);
  SpurHeader hd;
  expect("header of handle 0", spur_header(none, &hd), SPUR_E_HANDLE);
  expect("job handle 0", spur_job_wait((SpurJob){0}, NULL), SPUR_E_HANDLE);

  /* A good image, used wrongly. */
  expect("load good", spur_load(good, NULL, &img), SPUR_OK);
  expect("header NULL out", spur_header(img, NULL), SPUR_E_NULL);
  expect("header", spur_header(img, &hd), SPUR_OK);
  expect("an image is not a job", spur_job_release((SpurJob){img.id}), SPUR_E_HANDLE);
  SpurSegment seg;
  expect_msg("segment out of range", spur_segment(img, 999, &seg), SPUR_E_RANGE, "out of range");
  expect("segment NULL out", spur_segment(img, 0, NULL), SPUR_E_NULL);
  SpurResumePoint rp;
  expect_msg("resume before wiring", spur_resume_point(img, &rp), SPUR_E_STATE, "spur_wire");
  SpurNewSpace ns;
  expect("new space before wiring", spur_new_space(img, &ns), SPUR_E_STATE);
  SpurFinding f;
  char text[128];
  size_t tlen = 0;
  expect("finding before verify", spur_finding(img, 0, &f, text, sizeof text, &tlen), SPUR_E_STATE);
  SpurClassStats row;
  expect("row before histogram", spur_histogram_row(img, 0, &row, NULL, 0, NULL), SPUR_E_STATE);
  SpurVerifyReport vr;
  expect("verify", spur_verify(img, &vr), SPUR_OK);
  check("the good image verifies", vr.ok);
  expect("finding out of range", spur_finding(img, vr.errors + vr.warnings, &f, text, sizeof text, &tlen),
         SPUR_E_RANGE);
  expect("fallback reason, buffer NULL with cap", spur_fallback_reason(img, NULL, 10, &tlen), SPUR_E_NULL);
  expect("fallback reason, length only", spur_fallback_reason(img, NULL, 0, &tlen), SPUR_OK);

  uint64_t nil = hd.old_base, v = 0;
  expect("fetch from an immediate", spur_fetch(img, 3, 0, &v), SPUR_E_MEMORY);
  expect("fetch past nil's slots", spur_fetch(img, nil, 1000000, &v), SPUR_E_MEMORY);
  expect("fetch from an address outside the heap", spur_fetch(img, 0x10, 0, &v), SPUR_E_MEMORY);
  expect("store into nil", spur_store(img, nil, 0, nil), SPUR_E_MEMORY);
  expect("class at a huge index", spur_class_at(img, 0x3fffff, &v), SPUR_E_RANGE);
  expect("class name before wiring", spur_class_name(img, nil, text, sizeof text, &tlen), SPUR_E_STATE);
  expect("allocate before wiring", spur_allocate_slots(img, 52, 2, 3, &v), SPUR_E_MEMORY);
  expect("bytes into NULL with cap", spur_bytes(img, nil, NULL, 8, NULL), SPUR_E_NULL);
  expect("write bytes from NULL", spur_write_bytes(img, nil, 0, NULL, 4), SPUR_E_NULL);
  expect("small int of nil", spur_small_int(img, nil, &(int64_t){0}), SPUR_E_ARGUMENT);
  expect("huge small int", spur_from_small_int(img, INT64_MAX, &v), SPUR_E_ARGUMENT);
  expect("special object out of range", spur_special_object(img, 100000, &v), SPUR_E_RANGE);

  /* Wiring: a refused option changes nothing. */
  SpurRuntimeOptions ro = {0};
  ro.stack_pages = 70000;
  expect_msg("wire with too many stack pages", spur_wire(img, &ro), SPUR_E_ARGUMENT, "70000");
  show("stack-pages");
  uint8_t wired = 1;
  expect("is wired", spur_is_wired(img, &wired), SPUR_OK);
  check("still loaded after a refused option", wired == 0);
  expect("wire", spur_wire(img, NULL), SPUR_OK);
  expect("wire twice", spur_wire(img, NULL), SPUR_E_STATE);
  expect("resume point", spur_resume_point(img, &rp), SPUR_OK);
  expect("class name of nil", spur_class_name(img, nil, text, sizeof text, &tlen), SPUR_E_RANGE);
  uint64_t nil_class = 0;
  expect("class of nil", spur_class_of(img, nil, &nil_class), SPUR_OK);
  expect("class name of nil's class", spur_class_name(img, nil_class, text, sizeof text, &tlen), SPUR_OK);
  /* UndefinedObject; PCUndefinedObject in pharo-vm-test-img-64. */
  check("nil's class is an UndefinedObject", strstr(text, "UndefinedObject") != NULL && tlen == strlen(text));
  expect("selector into a short buffer", spur_resume_selector(img, text, 2, &tlen), SPUR_OK);
  check("a short buffer is cut and terminated", strlen(text) <= 1 && tlen >= 1);

  /* Every result pointer NULL, on a wired image: each call says which. */
  {
    struct {
      const char *name;
      SpurStatus got;
    } nulls[] = {
        {"spur_header", spur_header(img, NULL)},
        {"spur_placement", spur_placement(img, NULL)},
        {"spur_segment_count", spur_segment_count(img, NULL)},
        {"spur_segment", spur_segment(img, 0, NULL)},
        {"spur_verify", spur_verify(img, NULL)},
        {"spur_finding", spur_finding(img, 0, NULL, NULL, 0, NULL)},
        {"spur_is_wired", spur_is_wired(img, NULL)},
        {"spur_special_objects", spur_special_objects(img, NULL)},
        {"spur_special_object", spur_special_object(img, 0, NULL)},
        {"spur_class_table", spur_class_table(img, NULL)},
        {"spur_class_at", spur_class_at(img, 1, NULL)},
        {"spur_class_of", spur_class_of(img, nil, NULL)},
        {"spur_class_index_of", spur_class_index_of(img, nil, NULL)},
        {"spur_resume_point", spur_resume_point(img, NULL)},
        {"spur_new_space", spur_new_space(img, NULL)},
        {"spur_stack_zone", spur_stack_zone(img, NULL)},
        {"spur_old_space", spur_old_space(img, NULL)},
        {"spur_num_slots", spur_num_slots(img, nil, NULL)},
        {"spur_format_of", spur_format_of(img, nil, NULL)},
        {"spur_fetch", spur_fetch(img, nil, 0, NULL)},
        {"spur_allocate_slots", spur_allocate_slots(img, 52, 2, 1, NULL)},
        {"spur_allocate_bytes", spur_allocate_bytes(img, 52, 1, NULL)},
        {"spur_allocate_words", spur_allocate_words(img, 52, 10, 1, NULL)},
        {"spur_identity_hash", spur_identity_hash(img, nil, NULL)},
        {"spur_eden_free", spur_eden_free(img, NULL)},
        {"spur_small_int", spur_small_int(img, 3, NULL)},
        {"spur_from_small_int", spur_from_small_int(img, 1, NULL)},
        {"spur_histogram", spur_histogram(img, NULL)},
        {"spur_histogram_row", spur_histogram_row(img, 0, NULL, NULL, 0, NULL)},
        {"spur_dialect", spur_dialect(img, NULL, 4, NULL)},
        {"spur_class_name", spur_class_name(img, nil, NULL, 4, NULL)},
        {"spur_resume_selector", spur_resume_selector(img, NULL, 4, NULL)},
        {"spur_resume_method_name", spur_resume_method_name(img, NULL, 4, NULL)},
        {"spur_fallback_reason", spur_fallback_reason(img, NULL, 4, NULL)},
        {"spur_bytes", spur_bytes(img, nil, NULL, 4, NULL)},
        {"spur_snapshot", spur_snapshot(img, NULL, NULL, NULL)},
        {"spur_snapshot_background", spur_snapshot_background(img, NULL, NULL, NULL)},
        {"spur_snapshot_background_thread", spur_snapshot_background_thread(img, NULL, NULL, NULL)},
    };
    for (size_t i = 0; i < sizeof nulls / sizeof nulls[0]; i++) {
      /* The message is that of the last call; check the code of each. */
      if (nulls[i].got == SPUR_E_NULL) {
        passed++;
      } else {
        failed++;
        printf("FAILED %s with a NULL result pointer: got %s\n", nulls[i].name, spur_status_name(nulls[i].got));
      }
    }
    expect_msg("the last NULL call names itself", spur_snapshot_background_thread(img, NULL, NULL, NULL), SPUR_E_NULL,
               "spur_snapshot_background_thread: path is NULL");
  }

  /* Allocation and slots through the object memory. */
  SpurSpecialObjects so;
  expect("special objects", spur_special_objects(img, &so), SPUR_OK);
  uint64_t array_class = 0;
  expect("special object 7 (Array)", spur_special_object(img, 7, &array_class), SPUR_OK);
  uint32_t array_index = 0;
  expect("hash of Array", spur_identity_hash(img, array_class, &array_index), SPUR_OK);
  uint64_t a = 0, one = 0, back = 0;
  expect("allocate an Array", spur_allocate_slots(img, array_index, 2, 3, &a), SPUR_OK);
  expect("SmallInteger 1", spur_from_small_int(img, 1, &one), SPUR_OK);
  expect("store", spur_store(img, a, 2, one), SPUR_OK);
  expect("fetch", spur_fetch(img, a, 2, &back), SPUR_OK);
  check("the slot reads back", back == one);
  expect("fetch a fresh slot", spur_fetch(img, a, 0, &back), SPUR_OK);
  check("a fresh slot is nil", back == so.nil);
  expect("store past the end", spur_store(img, a, 3, one), SPUR_E_MEMORY);
  uint64_t b = 0;
  expect("allocate bytes", spur_allocate_bytes(img, 52, 5, &b), SPUR_OK);
  expect("write bytes", spur_write_bytes(img, b, 1, (const uint8_t *)"abcd", 4), SPUR_OK);
  expect("write bytes past the end", spur_write_bytes(img, b, 2, (const uint8_t *)"abcd", 4), SPUR_E_RANGE);
  uint8_t got[8] = {0};
  size_t glen = 0;
  expect("read bytes", spur_bytes(img, b, got, sizeof got, &glen), SPUR_OK);
  check("bytes read back", glen == 5 && memcmp(got, "\0abcd", 5) == 0);
  expect("allocate more than eden", spur_allocate_slots(img, array_index, 2, (uint64_t)1 << 40, &a),
         SPUR_E_MEMORY);

  /* Snapshots: a path in no folder, a bad format, background and its job. */
  snprintf(path, sizeof path, "%s/no-such-folder/out.image", dir);
  expect("snapshot into a missing folder", spur_snapshot(img, path, NULL, NULL), SPUR_E_WRITE);
  show("snapshot-missing-folder");
  expect("snapshot NULL path", spur_snapshot(img, NULL, NULL, NULL), SPUR_E_NULL);
  SpurSnapshotOptions sopt = {0};
  sopt.format = 7;
  snprintf(path, sizeof path, "%s/out.image", dir);
  expect("snapshot with a bad format", spur_snapshot(img, path, &sopt, NULL), SPUR_E_ARGUMENT);
  sopt.format = SPUR_WRITE_COMPOSED;
  SpurJob job;
  expect("background snapshot to a folder", spur_snapshot_background(img, path, &sopt, &job), SPUR_E_ARGUMENT);
  expect("background snapshot NULL job", spur_snapshot_background(img, path, NULL, NULL), SPUR_E_NULL);
  SpurImage fresh;
  expect("load again", spur_load(good, NULL, &fresh), SPUR_OK);
  SpurSnapshotResult sr;
  expect("background snapshot", spur_snapshot_background(fresh, path, NULL, &job), SPUR_OK);
  expect("release the image while its child writes", spur_release(fresh), SPUR_OK);
  expect("wait", spur_job_wait(job, &sr), SPUR_OK);
  check("the snapshot has bytes", sr.bytes_written > 0);
  expect("wait twice", spur_job_wait(job, &sr), SPUR_E_HANDLE);
  expect("release a waited job", spur_job_release(job), SPUR_E_HANDLE);
  expect("snapshot a released image", spur_snapshot(fresh, path, NULL, NULL), SPUR_E_HANDLE);
  {
    /* By a thread: the same bytes, the image released while it writes. */
    SpurImage by_thread;
    SpurSnapshotResult st;
    char tpath[4096];
    snprintf(tpath, sizeof tpath, "%s/thread.image", dir);
    expect("background snapshot to a folder by a thread", spur_snapshot_background_thread(img, path, &sopt, &job),
           SPUR_E_ARGUMENT);
    expect("load for the thread", spur_load(good, NULL, &by_thread), SPUR_OK);
    expect("background snapshot by a thread", spur_snapshot_background_thread(by_thread, tpath, NULL, &job), SPUR_OK);
    expect("release the image while its thread writes", spur_release(by_thread), SPUR_OK);
    expect("wait for the thread", spur_job_wait(job, &st), SPUR_OK);
    check("the thread wrote what the child wrote", st.bytes_written == sr.bytes_written && same_file(tpath, path));
  }
  expect("background snapshot", spur_snapshot_background(img, path, NULL, &job), SPUR_OK);
  expect("release a running job", spur_job_release(job), SPUR_OK);
  expect("release it twice", spur_job_release(job), SPUR_E_HANDLE);
  SpurImage written;
  expect("load the written snapshot", spur_load(path, NULL, &written), SPUR_OK);
  expect("verify it", spur_verify(written, &vr), SPUR_OK);
  check("the written snapshot verifies", vr.ok);
  expect("release it", spur_release(written), SPUR_OK);

  /* Double release. */
  expect("release", spur_release(img), SPUR_OK);
  expect_msg("release twice", spur_release(img), SPUR_E_HANDLE, "already released");
  expect("header after release", spur_header(img, &hd), SPUR_E_HANDLE);
  expect("fetch after release", spur_fetch(img, nil, 0, &v), SPUR_E_HANDLE);
  expect("wire after release", spur_wire(img, NULL), SPUR_E_HANDLE);

  /* Threads. */
  pthread_t t[4];
  struct worker w[4];
  for (int i = 0; i < 4; i++) {
    w[i].path = good;
    pthread_create(&t[i], NULL, work, &w[i]);
  }
  for (int i = 0; i < 4; i++) {
    pthread_join(t[i], NULL);
    check("a thread's load, verify and release", w[i].ok);
  }

  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
