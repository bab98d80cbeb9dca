/*
 * dist.h - the few collective operations data-parallel training needs
 * (src/dist/dist.c): all-reduce sums, broadcast from rank 0, and agree on
 * an error so every process stops together. Starting and stopping MPI is
 * public (aria_dist_start / aria_dist_stop in include/aria.h): the caller
 * decides, from how its process was launched.
 *
 * Built with -DHAVE_MPI these are MPI calls on MPI_COMM_WORLD; without it
 * (or when the caller did not start MPI) the world is one process and
 * every collective is a no-op, so callers are written once for both. Internal header; not part of the public API.
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

/* 1 when this library was built with MPI (aria_dist_built_with_mpi). */
int dist_built_with_mpi(void);
/* Why aria_dist_start could not load the MPI library ("" when it did, or
   was not asked to): the process then runs alone. */
const char *dist_mpi_error(void);
/* The job as it stands: one process unless MPI is running (started by
   aria_dist_start, include/aria.h). */
dist_world dist_get(void);

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
