/* Scratch files for the unit tests that read configuration from disk
 * (kubeconfig, in-cluster files, tokens): a private directory and a writer.
 * Include after <cmocka.h>. */
#ifndef PT_SPEC_TEST_FILES_H
#define PT_SPEC_TEST_FILES_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Writes text to path, replacing the file. */
static inline void test_write_file(const char *path, const char *text)
{
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
}

/* Writes text beside path and renames it into place, so that a reader never
 * sees a half-written file: as kubelet swaps the files of a projected volume
 * and build tools replace their outputs. */
static inline void test_replace_file(const char *path, const char *text)
{
  /* A dot file in the same directory: directory scans skip it, and the
   * rename stays within one file system. */
  char tmp[600];
  const char *base = strrchr(path, '/');
  base = base ? base + 1 : path;
  snprintf(tmp, sizeof(tmp), "%.*s.tmp-%s", (int)(base - path), path, base);
  test_write_file(tmp, text);
  assert_int_equal(rename(tmp, path), 0);
}

/* A new directory from a mkdtemp template with a CA file "ca.crt" ("PEM")
 * and a token file "token" ("  file-token"), and the path of its "config"
 * (not written). Buffers are 256 bytes. */
static inline void test_kube_scratch(char *dir, char *config, char *ca, char *token)
{
  assert_non_null(mkdtemp(dir));
  snprintf(config, 256, "%s/config", dir);
  snprintf(ca, 256, "%s/ca.crt", dir);
  snprintf(token, 256, "%s/token", dir);
  test_write_file(ca, "PEM\n");
  test_write_file(token, "  file-token\n");
}

#endif
