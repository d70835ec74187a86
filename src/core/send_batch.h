/* Many sockets written in one system call: the event stream's fan-out.
 *
 * Each item is a gather write to one socket that never blocks, as
 * sendmsg(fd, iov, MSG_DONTWAIT | MSG_NOSIGNAL) would do it: its result is
 * the bytes the kernel took (possibly fewer than offered, possibly 0 when
 * the socket's buffer is full) or a negative errno. The items go to the
 * kernel together through an io_uring (liburing) when the kernel and the
 * process's seccomp profile allow one; each send still completes before
 * pt_send_batch_run returns, so nothing stays in flight and no buffer has
 * to outlive the call. Where io_uring cannot be had (an older kernel,
 * kernel.io_uring_disabled, a container runtime's default seccomp profile),
 * or when the caller asks for plain system calls, each item is one sendmsg.
 * With 10,000 readers the system call's own cost, not the bytes, is most of
 * the work (docs/performance.md). One loop thread: not thread-safe. */
#ifndef PT_CORE_SEND_BATCH_H
#define PT_CORE_SEND_BATCH_H

#include <stdbool.h>
#include <errno.h>
#include <stddef.h>
#include <sys/types.h>
#include <sys/uio.h>

struct pt_send_batch;

struct pt_send_item {
  int fd;
  const struct iovec *iov;
  int iovcnt;
  ssize_t result; /* out: bytes taken, or -errno (-EAGAIN: none could be taken now) */
};

/* An item's result when the kernel took the send but its completion was
 * lost (the ring failed under it): some of its bytes may have gone out, so
 * the stream cannot go on, and sending them again would corrupt it. */
#define PT_SEND_LOST (-ECANCELED)

/* A batch sender, or NULL without memory. With use_io_uring false, or when
 * io_uring cannot be set up, it sends with one sendmsg per item. */
struct pt_send_batch *pt_send_batch_create(bool use_io_uring);
void pt_send_batch_destroy(struct pt_send_batch *b);

/* Whether the items go to the kernel through io_uring; when not, why:
 * the errno io_uring's setup failed with, 0 when it was not asked for. */
bool pt_send_batch_uses_io_uring(const struct pt_send_batch *b, int *setup_error);

/* Sends every item and fills its result. Returns 0, or the errno of the
 * io_uring failure that made this call give the ring up (the sends after it,
 * and every later call, are one sendmsg each). */
int pt_send_batch_run(struct pt_send_batch *b, struct pt_send_item *items, size_t n);

#endif
