#include "core/send_batch.h"

#include <errno.h>
#include <liburing.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* Sends per io_uring_enter: the ring's size. */
#define RING_ENTRIES 256u

#define SEND_FLAGS (MSG_DONTWAIT | MSG_NOSIGNAL)

struct pt_send_batch {
  bool ring_ok;
  int setup_error;
  struct io_uring ring;
  struct msghdr msgs[RING_ENTRIES]; /* read by the kernel while a chunk is submitted */
};

static void ring_setup(struct pt_send_batch *b)
{
  /* SUBMIT_ALL: a send that fails its preparation does not stop the ones
   * after it from being submitted (kernels from 5.18); older kernels refuse
   * the flag and get a ring without it. */
  int r = io_uring_queue_init(RING_ENTRIES, &b->ring, IORING_SETUP_SUBMIT_ALL);
  if (r == -EINVAL)
    r = io_uring_queue_init(RING_ENTRIES, &b->ring, 0);
  b->ring_ok = r == 0;
  b->setup_error = r < 0 ? -r : 0;
}

struct pt_send_batch *pt_send_batch_create(bool use_io_uring)
{
  struct pt_send_batch *b = calloc(1, sizeof(*b));
  if (b && use_io_uring)
    ring_setup(b);
  return b;
}

void pt_send_batch_destroy(struct pt_send_batch *b)
{
  if (!b)
    return;
  if (b->ring_ok)
    io_uring_queue_exit(&b->ring);
  free(b);
}

bool pt_send_batch_uses_io_uring(const struct pt_send_batch *b, int *setup_error)
{
  if (setup_error)
    *setup_error = b->setup_error;
  return b->ring_ok;
}

static void fill_msg(struct msghdr *m, const struct pt_send_item *it)
{
  memset(m, 0, sizeof(*m));
  m->msg_iov = (struct iovec *)it->iov;
  m->msg_iovlen = (size_t)it->iovcnt;
}

static void send_one(struct pt_send_item *it)
{
  struct msghdr m;
  fill_msg(&m, it);
  ssize_t r;
  do
    r = sendmsg(it->fd, &m, SEND_FLAGS);
  while (r < 0 && errno == EINTR);
  it->result = r < 0 ? -errno : r;
}

/* One chunk of at most RING_ENTRIES items through the ring. Returns how
 * many items, from the first, the kernel took (each has its result); the
 * caller sends the rest itself. When the kernel does not take the whole
 * chunk the ring is given up for good: closing it drops what it did not
 * take, so nothing is submitted later with buffers that no longer exist. */
static size_t ring_chunk(struct pt_send_batch *b, struct pt_send_item *items, size_t n)
{
  bool seen[RING_ENTRIES] = {false};
  for (size_t i = 0; i < n; i++) {
    struct io_uring_sqe *sqe = io_uring_get_sqe(&b->ring);
    fill_msg(&b->msgs[i], &items[i]);
    io_uring_prep_sendmsg(sqe, items[i].fd, &b->msgs[i], SEND_FLAGS);
    io_uring_sqe_set_data64(sqe, i);
  }
  int submitted;
  int tries = 0;
  do
    submitted = io_uring_submit_and_wait(&b->ring, (unsigned)n);
  while ((submitted == -EINTR || submitted == -EAGAIN || submitted == -EBUSY) && ++tries < 8);
  size_t taken = submitted > 0 ? (size_t)submitted : 0, got = 0;
  if (taken > n)
    taken = n;
  while (got < taken) {
    /* Sends that cannot block (MSG_DONTWAIT) complete inside the submission:
     * this finds their completions waiting. */
    struct io_uring_cqe *cqe;
    int r = io_uring_wait_cqe(&b->ring, &cqe);
    if (r == -EINTR)
      continue;
    if (r < 0)
      break;
    uint64_t i = io_uring_cqe_get_data64(cqe);
    if (i < taken && !seen[i]) {
      seen[i] = true;
      items[i].result = cqe->res;
      got++;
    }
    io_uring_cqe_seen(&b->ring, cqe);
  }
  if (taken == n && got == n)
    return n;
  io_uring_queue_exit(&b->ring);
  b->ring_ok = false;
  b->setup_error = submitted < 0 ? -submitted : EIO;
  for (size_t i = 0; i < taken; i++)
    if (!seen[i])
      items[i].result = PT_SEND_LOST;
  return taken;
}

int pt_send_batch_run(struct pt_send_batch *b, struct pt_send_item *items, size_t n)
{
  bool ring = b->ring_ok;
  for (size_t at = 0; at < n;) {
    size_t m = n - at < RING_ENTRIES ? n - at : RING_ENTRIES;
    size_t taken = b->ring_ok ? ring_chunk(b, items + at, m) : 0;
    for (size_t i = at + taken; i < at + m; i++)
      send_one(&items[i]);
    at += m;
  }
  return ring && !b->ring_ok ? b->setup_error : 0;
}
