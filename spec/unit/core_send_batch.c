/* The batch sender, through io_uring where this kernel gives one and with
 * one sendmsg per item: every socket gets exactly its bytes, in order, over
 * more items than one submission holds; a full socket takes part or none;
 * a closed peer and a bad descriptor are errors of their own item only. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include "core/send_batch.h"

#define PAIRS 300 /* more than one submission's 256 */

struct pair {
  int w, r;
};

static void open_pair(struct pair *p)
{
  int sv[2];
  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  p->w = sv[0];
  p->r = sv[1];
  assert_int_equal(fcntl(p->w, F_SETFL, O_NONBLOCK), 0);
  assert_int_equal(fcntl(p->r, F_SETFL, O_NONBLOCK), 0);
}

static void close_pair(struct pair *p)
{
  close(p->w);
  if (p->r >= 0)
    close(p->r);
}

/* Everything the peer can read now. */
static size_t drain(int fd, char *out, size_t cap)
{
  size_t n = 0;
  for (;;) {
    ssize_t r = read(fd, out + n, cap - n);
    if (r <= 0)
      return n;
    n += (size_t)r;
  }
}

static struct pt_send_batch *make(bool io_uring)
{
  struct pt_send_batch *b = pt_send_batch_create(io_uring);
  assert_non_null(b);
  int err = -1;
  bool uses = pt_send_batch_uses_io_uring(b, &err);
  if (!io_uring) {
    assert_false(uses);
    assert_int_equal(err, 0);
  } else if (!uses) {
    /* A kernel or seccomp profile without io_uring: the reason is kept. */
    assert_true(err > 0);
    print_message("io_uring not available here (%s): the plain path is tested twice\n", strerror(err));
  }
  return b;
}

static void test_every_socket_gets_its_bytes(void **state)
{
  bool io_uring = *(const bool *)*state;
  struct pt_send_batch *b = make(io_uring);
  static struct pair pairs[PAIRS];
  static struct pt_send_item items[PAIRS + 1];
  static char heads[PAIRS][16];
  static struct iovec iovs[PAIRS][2];
  static const char body[] = "data: {\"v\":1}\n\n";
  for (int round = 0; round < 3; round++) {
    for (int i = 0; i < PAIRS; i++) {
      if (round == 0)
        open_pair(&pairs[i]);
      int hl = snprintf(heads[i], sizeof(heads[i]), "%d.%d:", round, i);
      iovs[i][0] = (struct iovec){heads[i], (size_t)hl};
      iovs[i][1] = (struct iovec){(void *)body, sizeof(body) - 1};
      items[i] = (struct pt_send_item){.fd = pairs[i].w, .iov = iovs[i], .iovcnt = 2, .result = 12345};
    }
    assert_int_equal(pt_send_batch_run(b, items, PAIRS), 0); /* the ring, if any, kept */
    for (int i = 0; i < PAIRS; i++) {
      char want[64], got[256];
      int wl = snprintf(want, sizeof(want), "%s%s", heads[i], body);
      assert_int_equal(items[i].result, wl);
      assert_int_equal(drain(pairs[i].r, got, sizeof(got)), (size_t)wl);
      assert_memory_equal(got, want, (size_t)wl);
    }
  }
  for (int i = 0; i < PAIRS; i++)
    close_pair(&pairs[i]);
  pt_send_batch_destroy(b);
}



/* A socket whose buffer is full takes what fits and then nothing, the
 * others in the batch are not held back, and what went out is what the
 * results say. */
static void test_full_socket(void **state)
{
  bool io_uring = *(const bool *)*state;
  struct pt_send_batch *b = make(io_uring);
  struct pair full, ok;
  open_pair(&full);
  open_pair(&ok);
  size_t size = 1 << 20;
  char *big = malloc(size), *back = malloc(4 * size);
  assert_non_null(big);
  assert_non_null(back);
  for (size_t i = 0; i < size; i++)
    big[i] = (char)('a' + i % 26);
  struct iovec iv = {big, size}, small = {"x", 1};
  size_t sent = 0;
  bool saw_eagain = false;
  for (int k = 0; k < 16 && !saw_eagain; k++) {
    struct pt_send_item items[2] = {{.fd = full.w, .iov = &iv, .iovcnt = 1}, {.fd = ok.w, .iov = &small, .iovcnt = 1}};
    pt_send_batch_run(b, items, 2);
    assert_int_equal(items[1].result, 1);
    if (items[0].result == -EAGAIN)
      saw_eagain = true;
    else {
      assert_true(items[0].result > 0);
      assert_true((size_t)items[0].result <= size);
      /* The stream goes on from where the kernel stopped. */
      sent += (size_t)items[0].result;
      iv = (struct iovec){big + sent % size, size - sent % size};
    }
  }
  assert_true(saw_eagain);
  size_t got = drain(full.r, back, 4 * size);
  assert_int_equal(got, sent);
  for (size_t i = 0; i < got; i++)
    if (back[i] != (char)('a' + i % size % 26))
      fail_msg("byte %zu differs", i);
  free(big);
  free(back);
  close_pair(&full);
  close_pair(&ok);
  pt_send_batch_destroy(b);
}



/* A peer gone is EPIPE (no SIGPIPE), a closed descriptor EBADF, and
 * neither touches the items around them. */
static void test_errors_stay_in_their_item(void **state)
{
  bool io_uring = *(const bool *)*state;
  struct pt_send_batch *b = make(io_uring);
  struct pair a, gone, c;
  open_pair(&a);
  open_pair(&gone);
  open_pair(&c);
  close(gone.r);
  gone.r = -1;
  int closed_fd = dup(a.w);
  close(closed_fd);
  struct iovec iv = {"hello", 5};
  struct pt_send_item items[4] = {{.fd = a.w, .iov = &iv, .iovcnt = 1},
                                  {.fd = gone.w, .iov = &iv, .iovcnt = 1},
                                  {.fd = closed_fd, .iov = &iv, .iovcnt = 1},
                                  {.fd = c.w, .iov = &iv, .iovcnt = 1}};
  assert_int_equal(pt_send_batch_run(b, items, 4), 0);
  assert_int_equal(items[0].result, 5);
  assert_int_equal(items[1].result, -EPIPE);
  assert_int_equal(items[2].result, -EBADF);
  assert_int_equal(items[3].result, 5);
  char buf[16];
  assert_int_equal(drain(a.r, buf, sizeof(buf)), 5);
  assert_int_equal(drain(c.r, buf, sizeof(buf)), 5);
  pt_send_batch_run(b, items, 0); /* nothing to send is nothing done */
  close_pair(&a);
  close_pair(&gone);
  close_pair(&c);
  pt_send_batch_destroy(b);
}



int main(void)
{
  /* Each test twice: through io_uring (where this kernel gives one), then
   * with one sendmsg per item. */
  static bool io_uring = true, plain = false;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_prestate(test_every_socket_gets_its_bytes, &io_uring),
      cmocka_unit_test_prestate(test_every_socket_gets_its_bytes, &plain),
      cmocka_unit_test_prestate(test_full_socket, &io_uring),
      cmocka_unit_test_prestate(test_full_socket, &plain),
      cmocka_unit_test_prestate(test_errors_stay_in_their_item, &io_uring),
      cmocka_unit_test_prestate(test_errors_stay_in_their_item, &plain),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
