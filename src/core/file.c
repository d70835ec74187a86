#include "core/file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int pt_file_read(const char *path, size_t max, char **out, size_t *len)
{
  *out = NULL;
  if (len)
    *len = 0;
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0)
    return -errno;
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int e = errno;
    close(fd);
    return -e;
  }
  if (!S_ISREG(st.st_mode)) {
    close(fd);
    return -EINVAL;
  }
  /* Read to the end rather than trust st_size: the file may grow meanwhile,
   * and one byte beyond max tells a file that is too large. */
  char *buf = malloc(max + 1);
  if (!buf) {
    close(fd);
    return -ENOMEM;
  }
  size_t got = 0;
  int err = 0;
  while (got <= max) {
    ssize_t n = read(fd, buf + got, max + 1 - got);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      err = -errno;
    if (n <= 0)
      break;
    got += (size_t)n;
  }
  close(fd);
  if (!err && got > max)
    err = -EFBIG;
  if (err) {
    free(buf);
    return err;
  }
  buf[got] = '\0';
  *out = buf;
  if (len)
    *len = got;
  return 0;
}

int pt_file_read_trimmed(const char *path, size_t max, char **out)
{
  size_t n;
  int r = pt_file_read(path, max, out, &n);
  if (r)
    return r;
  char *buf = *out;
  size_t start = strspn(buf, " \t\r\n");
  while (n > start && buf[n - 1] && strchr(" \t\r\n", buf[n - 1]))
    buf[--n] = '\0';
  if (n == start) {
    free(buf);
    *out = NULL;
    return -ENODATA;
  }
  memmove(buf, buf + start, n - start + 1);
  return 0;
}
