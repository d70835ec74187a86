/* Unit tests of PULLTRACE_UI_DIR's reader: the tree is read on the thread pool
 * into a snapshot (hidden files and oversized trees left out), a change is
 * picked up by a later scan, an unchanged tree is not read again, a missing
 * directory has no snapshot, and destroy with a scan in flight frees it all. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "test_files.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "core/hash.h"
#include "server/ui_dir.h"

static void write_text(const char *dir, const char *rel, const char *text)
{
  char path[512];
  snprintf(path, sizeof(path), "%s/%s", dir, rel);
  test_replace_file(path, text);
}

static const struct pt_embedded_file *find(const struct pt_embedded_file *files, const uint64_t *etags,
                                           const char *name, uint64_t *etag)
{
  for (size_t i = 0; files && files[i].name; i++) {
    if (strcmp(files[i].name, name) == 0) {
      *etag = etags[i];
      return &files[i];
    }
  }
  return NULL;
}

static void run_until_generation(uv_loop_t *loop, struct pt_ui_dir *d, uint64_t gen)
{
  while (pt_ui_dir_generation(d) < gen)
    uv_run(loop, UV_RUN_ONCE);
}

static void test_snapshot_and_change(void **state)
{
  (void)state;
  char dir[] = "/tmp/pt-ui-dir-XXXXXX";
  assert_non_null(mkdtemp(dir));
  char sub[600];
  snprintf(sub, sizeof(sub), "%s/assets", dir);
  assert_int_equal(mkdir(sub, 0700), 0);
  write_text(dir, "index.html", "<html>one</html>");
  write_text(dir, "assets/app.js", "console.log(1)");
  write_text(dir, ".secret", "never served");

  uv_loop_t loop;
  assert_int_equal(uv_loop_init(&loop), 0);
  struct pt_ui_dir *d = pt_ui_dir_create(&loop, dir, 0.02);
  assert_non_null(d);
  /* Nothing read on the loop: no snapshot before the thread pool's answer. */
  assert_null(pt_ui_dir_files(d, NULL));
  run_until_generation(&loop, d, 1);

  const uint64_t *etags = NULL;
  const struct pt_embedded_file *files = pt_ui_dir_files(d, &etags);
  assert_non_null(files);
  uint64_t tag = 0;
  const struct pt_embedded_file *f = find(files, etags, "index.html", &tag);
  assert_non_null(f);
  assert_int_equal(f->size, strlen("<html>one</html>"));
  assert_memory_equal(f->data, "<html>one</html>", f->size);
  assert_int_equal(f->data[f->size], '\0');
  assert_true(tag == pt_fnv1a(PT_FNV1A_INIT, f->data, f->size));
  assert_non_null(find(files, etags, "assets/app.js", &tag));
  assert_null(find(files, etags, ".secret", &tag));

  /* Unchanged scans publish nothing new. */
  uint64_t gen = pt_ui_dir_generation(d);
  for (int i = 0; i < 5; i++) {
    uv_sleep(25);
    uv_run(&loop, UV_RUN_NOWAIT);
  }
  assert_int_equal(pt_ui_dir_generation(d), gen);
  /* A change (another size) is picked up by a later scan. */
  write_text(dir, "index.html", "<html>two, longer</html>");
  write_text(dir, "assets/new.css", "body{}");
  /* Two files changed: a scan between the two renames sees only the first. */
  for (;;) {
    run_until_generation(&loop, d, gen + 1);
    gen = pt_ui_dir_generation(d);
    files = pt_ui_dir_files(d, &etags);
    if (find(files, etags, "assets/new.css", &tag))
      break;
  }
  f = find(files, etags, "index.html", &tag);
  assert_non_null(f);
  assert_memory_equal(f->data, "<html>two, longer</html>", f->size);

  /* The directory emptied: a snapshot with no files. */
  char path[700];
  const char *names[] = {"index.html", "assets/app.js", "assets/new.css", ".secret"};
  for (size_t i = 0; i < 4; i++) {
    snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
    assert_int_equal(unlink(path), 0);
  }
  rmdir(sub);
  do {
    run_until_generation(&loop, d, gen + 1);
    gen = pt_ui_dir_generation(d);
    files = pt_ui_dir_files(d, &etags);
    assert_non_null(files);
  } while (files[0].name);

  pt_ui_dir_destroy(d);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&loop), 0);
  rmdir(dir);
}

static void test_missing_dir_and_destroy(void **state)
{
  (void)state;
  uv_loop_t loop;
  assert_int_equal(uv_loop_init(&loop), 0);
  struct pt_ui_dir *d = pt_ui_dir_create(&loop, "/nonexistent/pt-ui", 0.01);
  assert_non_null(d);
  for (int i = 0; i < 5; i++) {
    uv_sleep(15);
    uv_run(&loop, UV_RUN_NOWAIT);
  }
  assert_null(pt_ui_dir_files(d, NULL));
  assert_int_equal(pt_ui_dir_generation(d), 0);
  pt_ui_dir_destroy(d);
  uv_run(&loop, UV_RUN_DEFAULT);

  /* Destroyed at once, its first scan queued or running: freed all the same. */
  char dir[] = "/tmp/pt-ui-dir-XXXXXX";
  assert_non_null(mkdtemp(dir));
  write_text(dir, "index.html", "<html></html>");
  d = pt_ui_dir_create(&loop, dir, 1);
  pt_ui_dir_destroy(d);
  pt_ui_dir_destroy(NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&loop), 0);
  char path[600];
  snprintf(path, sizeof(path), "%s/index.html", dir);
  unlink(path);
  rmdir(dir);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_snapshot_and_change),
    cmocka_unit_test(test_missing_dir_and_destroy),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
