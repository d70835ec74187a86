#include "core/random.h"

#include <stdint.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

double pt_random_unit(void)
{
  uint64_t r;
  if (getrandom(&r, sizeof(r), GRND_NONBLOCK) != (ssize_t)sizeof(r)) {
    /* Only before the kernel's pool is initialised (early boot): the time
     * and the process id still differ between replicas. splitmix64 spreads
     * them over all bits. */
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    r = ((uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30)) + ((uint64_t)getpid() << 17);
    r += 0x9e3779b97f4a7c15ull;
    r = (r ^ (r >> 30)) * 0xbf58476d1ce4e5b9ull;
    r = (r ^ (r >> 27)) * 0x94d049bb133111ebull;
    r ^= r >> 31;
  }
  /* The top 53 bits: every double in [0, 1) with that spacing is equally likely. */
  return (double)(r >> 11) * 0x1.0p-53;
}
