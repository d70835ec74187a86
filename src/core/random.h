/* Randomness for spreading retries (back-off jitter). Every call draws from
 * the kernel (getrandom), so no seed is shared between processes: replicas
 * started together do not retry in lockstep, which rand() without srand()
 * made them do. Not for secrets. */
#ifndef PT_CORE_RANDOM_H
#define PT_CORE_RANDOM_H

/* A uniformly distributed number in [0, 1). */
double pt_random_unit(void);

#endif
