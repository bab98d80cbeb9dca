/*
 * dist.h - the few collective operations data-parallel training needs
 * (src/dist.c): start MPI, all-reduce sums, broadcast from rank 0, and
 * agree on an error so every process stops together.
 *
 * Built with -DHAVE_MPI these are MPI calls on MPI_COMM_WORLD; without it
 * (or when the program was not started by an MPI launcher) the world is
 * one process and every collective is a no-op, so callers are written
 * once for both. Internal header; not part of the public API.
 */
#ifndef ARIA_DIST_H
#define ARIA_DIST_H

#include <stddef.h>

#include "aria.h"

typedef struct {
    int rank;       /* this process, 0 .. size-1 */
    int size;       /* processes in the job */
    int mpi;        /* 1: MPI is running and the calls below communicate */
} dist_world;

/* 1 when this library was built with MPI. */
int dist_built_with_mpi(void);
/* Starts MPI when the process was started by an MPI launcher (mpirun,
   mpiexec, srun: recognised by their environment variables); otherwise
   does nothing and the program runs as one process. Call once, from the
   main thread, before any other thread exists. */
void dist_init(void);
/* Ends MPI if dist_init started it. */
void dist_finalize(void);
/* The job as it stands: one process unless MPI is running. */
dist_world dist_get(void);

/* How many processes the launcher started, from its environment (1 when
   none did): a process that is one of several but has no MPI world would
   train alone and write over the others' files. */
int dist_launched_size(void);

/* In-place sums over all processes; every process receives the result. */
void dist_sum_f32(const dist_world *w, float *buf, size_t n);
void dist_sum_f64(const dist_world *w, double *buf, size_t n);
/* Rank 0's bytes to every process. */
void dist_bcast(const dist_world *w, void *buf, size_t bytes);
/* 1 when every process holds the same n values (each above LONG_MIN). */
int dist_same(const dist_world *w, const long *vals, int n);
/* Every process calls this with its own status at the same point. When
   any failed, all return the status of the lowest failing rank and hold
   its message in err (prefixed with its rank when that is not 0), so one
   process can print it once and all stop together. */
int dist_agree(const dist_world *w, int rc, aria_error *err);
/* CPU threads for each process when the user gave none: the CPUs this
   process may run on, shared among the job's processes on this machine
   when the launcher did not already bind each to its own CPUs. */
int dist_default_threads(const dist_world *w);

#endif
