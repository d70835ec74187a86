/* libFuzzer: the kubeconfig reader (YAML through libyaml, merged files, paths,
 * inline *-data members). The input is written as a kubeconfig file and
 * loaded as the server and the kubectl plugin load one, exec plugins refused.
 * Invariants beyond sanitizer cleanliness: a failure says why and leaves
 * nothing allocated; a success has an http(s) server without a trailing
 * slash, a source, absolute file paths, no exec plugin; the private directory
 * of decoded *-data members is gone after pt_kubeconfig_clear(). */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/kubeconfig.h"

static char dir[64];

static void fuzz_fail(const char *what)
{
  fprintf(stderr, "invariant broken: %s\n", what);
  abort();
}

static void check_path(const char *p, const char *what)
{
  if (p && p[0] != '/')
    fuzz_fail(what);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  if (!dir[0]) {
    snprintf(dir, sizeof(dir), "/tmp/pt-fuzz-kubeconfig-XXXXXX");
    if (!mkdtemp(dir))
      abort();
  }
  char path[128];
  snprintf(path, sizeof(path), "%s/config", dir);
  FILE *f = fopen(path, "w");
  if (!f)
    abort();
  fwrite(data, 1, size, f);
  fclose(f);

  const char *files[] = {path};
  struct pt_kubeconfig_options opt = {.files = files, .nfiles = 1, .allow_exec = false};
  struct pt_kubeconfig cfg;
  memset(&cfg, 0, sizeof(cfg));
  char err[512] = "";
  int r = pt_kubeconfig_open(&cfg, &opt, err, sizeof(err));
  if (r < 0) {
    if (!err[0])
      fuzz_fail("a failure without a reason");
    if (cfg.server || cfg.token || cfg.ca_file || cfg.tmpdir || cfg.source)
      fuzz_fail("a failure left members behind");
    return 0;
  }
  if (r != 0)
    fuzz_fail("neither 0 nor a negative errno");
  if (!cfg.server || (strncmp(cfg.server, "https://", 8) != 0 && strncmp(cfg.server, "http://", 7) != 0))
    fuzz_fail("a server that is not an http(s) URL");
  size_t sl = strlen(cfg.server);
  if (cfg.server[sl - 1] == '/')
    fuzz_fail("a server URL with a trailing slash");
  if (!cfg.source)
    fuzz_fail("no source");
  if (cfg.exec)
    fuzz_fail("an exec plugin although exec is refused");
  check_path(cfg.ca_file, "a relative CA path");
  check_path(cfg.client_cert, "a relative client certificate path");
  check_path(cfg.client_key, "a relative client key path");
  check_path(cfg.token_file, "a relative token file path");
  char *tmpdir = cfg.tmpdir ? strdup(cfg.tmpdir) : NULL;
  char *token = NULL;
  /* Only the static token: a tokenFile of the input could name any file. */
  if (!cfg.token_file && pt_kubeconfig_token(&cfg, &token) == 0 && cfg.token && (!token || strcmp(token, cfg.token)))
    fuzz_fail("the token to send is not the static token");
  free(token);
  pt_kubeconfig_clear(&cfg);
  if (tmpdir) {
    struct stat st;
    if (stat(tmpdir, &st) == 0)
      fuzz_fail("the directory of decoded data members survived clear");
    free(tmpdir);
  }
  return 0;
}
