/*
 * dist.c - collectives for data-parallel training (see dist.h): MPI on
 * MPI_COMM_WORLD when built with -DHAVE_MPI and started by a launcher,
 * one process with no-op collectives otherwise.
 *
 * Every MPI call of the project is in this file, behind HAVE_MPI, so the
 * rest builds and runs the same without MPI installed. The MPI library is
 * not linked but opened by aria_dist_start (src/base/dynlib.h), so only a
 * process started by a launcher loads it, and a machine without it still
 * trains in one process. The only state is that table and MPI's own world
 * (MPI_Initialized tells whether it is up); MPI failures
 * abort the whole job through MPI's default error handler, so a process
 * never waits on a peer that died.
 *
 * MPI is started only under a launcher rather than always (singleton
 * init): a singleton Open MPI forks a helper daemon and takes a third of
 * a second, and it fails in sandboxes without networking, which plain
 * `aria train` must not depend on. Whether a launcher started the process
 * is in its environment, which the library never reads: the caller hands
 * aria_dist_launch_info its reader (getenv), so the variables' names stay
 * here beside the MPI code and the reading stays with the caller.
 */
#include "dist/dist.h"

#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/dynlib.h"

#ifdef HAVE_MPI
#include <mpi.h>
#include <pthread.h>

/* The file to open: the soname the Makefile's probe linked against, else
   Open MPI's (Debian's libopenmpi3). */
#ifndef ARIA_MPI_SONAME
#define ARIA_MPI_SONAME "libmpi.so.40"
#endif

/* Every MPI function called below. */
#define MPI_FNS(X) \
    X(MPI_Initialized) X(MPI_Finalized) X(MPI_Init_thread) X(MPI_Finalize) X(MPI_Comm_rank) X(MPI_Comm_size) \
    X(MPI_Allreduce) X(MPI_Bcast) X(MPI_Comm_split_type) X(MPI_Comm_free)

/* Open MPI's predefined handles (MPI_COMM_WORLD, MPI_FLOAT, ...) are the
   addresses of objects in libmpi, named through OMPI_PREDEFINED_GLOBAL;
   every one used below is listed here and looked up with the functions.
   MPICH's handles are constants and need nothing. */
#ifdef OPEN_MPI
#define MPI_GLOBALS(X) \
    X(ompi_mpi_comm_world) X(ompi_mpi_info_null) X(ompi_mpi_op_sum) X(ompi_mpi_op_min) X(ompi_mpi_byte) \
    X(ompi_mpi_int) X(ompi_mpi_long) X(ompi_mpi_float) X(ompi_mpi_double)
#else
#define MPI_GLOBALS(X)
#endif

#define DECL_FN(f) __typeof__(f) *f;
#define DECL_GLOBAL(g) void *g;
#define NAME(f) #f,
static struct {
    MPI_FNS(DECL_FN)
    MPI_GLOBALS(DECL_GLOBAL)
    int loaded;
} dl;
static pthread_once_t dl_once = PTHREAD_ONCE_INIT;
static char dl_why[256];

static void dl_load(void) {
    static const char *const need[] = {MPI_FNS(NAME) MPI_GLOBALS(NAME) NULL};
    enum { N_NEED = sizeof need / sizeof *need - 1 };
    void *p[N_NEED];
    /* global: Open MPI's components, which it opens itself, resolve
       symbols of libmpi */
    aria_dl_spec spec = {"MPI", ARIA_MPI_SONAME, need, NULL, 1};
    if (!aria_dl_open(&spec, p, NULL, dl_why, sizeof dl_why)) return;
    size_t i = 0;
#define SET(f) memcpy(&dl.f, &p[i++], sizeof p[0]);
    MPI_FNS(SET)
    MPI_GLOBALS(SET)
#undef SET
    dl.loaded = 1;
}

/* From here on, the calls and handles go through the table. */
#ifdef OPEN_MPI
#undef OMPI_PREDEFINED_GLOBAL
#define OMPI_PREDEFINED_GLOBAL(type, global) ((type)dl.global)
#endif
#define MPI_Initialized dl.MPI_Initialized
#define MPI_Finalized dl.MPI_Finalized
#define MPI_Init_thread dl.MPI_Init_thread
#define MPI_Finalize dl.MPI_Finalize
#define MPI_Comm_rank dl.MPI_Comm_rank
#define MPI_Comm_size dl.MPI_Comm_size
#define MPI_Allreduce dl.MPI_Allreduce
#define MPI_Bcast dl.MPI_Bcast
#define MPI_Comm_split_type dl.MPI_Comm_split_type
#define MPI_Comm_free dl.MPI_Comm_free
#endif

int aria_dl_state_mpi(const char **file, const char **why) {
#ifdef HAVE_MPI
    pthread_once(&dl_once, dl_load);
    *file = ARIA_MPI_SONAME;
    *why = dl_why;
    return dl.loaded;
#else
    *file = *why = "";
    return -1;
#endif
}

const char *dist_mpi_error(void) {
#ifdef HAVE_MPI
    return dl_why;
#else
    return "";
#endif
}

int dist_built_with_mpi(void) {
#ifdef HAVE_MPI
    return 1;
#else
    return 0;
#endif
}

int aria_dist_built_with_mpi(void) { return dist_built_with_mpi(); }

/* The variables that Open MPI's mpirun, PMIx launchers (srun --mpi=pmix,
   prterun) and MPICH's Hydra / PMI-1 set in each process they start, and
   those of them that say how many processes were started. */
static const char *const LAUNCH_VARS[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE"};
static const char *const LAUNCH_SIZE_VARS[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE"};

aria_launch aria_dist_launch_info(char *(*lookup)(const char *name)) {
    aria_launch l = {0, 1};
    if (!lookup) return l;
    for (size_t i = 0; i < sizeof LAUNCH_VARS / sizeof *LAUNCH_VARS; i++)
        if (lookup(LAUNCH_VARS[i])) l.under_launcher = 1;
    for (size_t i = 0; i < sizeof LAUNCH_SIZE_VARS / sizeof *LAUNCH_SIZE_VARS; i++) {
        const char *v = lookup(LAUNCH_SIZE_VARS[i]);
        if (v && atoi(v) > 1) {
            l.size = atoi(v);
            break;
        }
    }
    return l;
}

#ifdef HAVE_MPI
static int mpi_up(void) {
    if (!dl.loaded) return 0;
    int init = 0, fin = 0;
    MPI_Initialized(&init);
    MPI_Finalized(&fin);
    return init && !fin;
}
#endif

void aria_dist_start(const aria_launch *launch) {
#ifdef HAVE_MPI
    if (!launch || !launch->under_launcher) return;
    pthread_once(&dl_once, dl_load);
    if (!dl.loaded || mpi_up()) return;
    /* only the main thread talks to MPI; the thread pool never does */
    int provided;
    MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided);
#else
    (void)launch;
#endif
}

void aria_dist_stop(void) {
#ifdef HAVE_MPI
    if (mpi_up()) MPI_Finalize();
#endif
}

dist_world dist_get(void) {
    dist_world w = {0, 1, 0};
#ifdef HAVE_MPI
    if (mpi_up()) {
        MPI_Comm_rank(MPI_COMM_WORLD, &w.rank);
        MPI_Comm_size(MPI_COMM_WORLD, &w.size);
        w.mpi = 1;
    }
#endif
    return w;
}

int aria_dist_rank(void) { return dist_get().rank; }
int aria_dist_size(void) { return dist_get().size; }

/* MPI counts are int: large arenas go in pieces of 2^30 elements. */
#define CHUNK ((size_t)1 << 30)

void dist_sum_f32(const dist_world *w, float *buf, size_t n) {
#ifdef HAVE_MPI
    if (!w->mpi || w->size == 1) return;
    for (size_t i = 0; i < n; i += CHUNK) {
        size_t k = n - i < CHUNK ? n - i : CHUNK;
        MPI_Allreduce(MPI_IN_PLACE, buf + i, (int)k, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    }
#else
    (void)w, (void)buf, (void)n;
#endif
}

void dist_sum_f64(const dist_world *w, double *buf, size_t n) {
#ifdef HAVE_MPI
    if (!w->mpi || w->size == 1) return;
    for (size_t i = 0; i < n; i += CHUNK) {
        size_t k = n - i < CHUNK ? n - i : CHUNK;
        MPI_Allreduce(MPI_IN_PLACE, buf + i, (int)k, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    }
#else
    (void)w, (void)buf, (void)n;
#endif
}

void dist_bcast(const dist_world *w, void *buf, size_t bytes) {
#ifdef HAVE_MPI
    if (!w->mpi || w->size == 1) return;
    for (size_t i = 0; i < bytes; i += CHUNK) {
        size_t k = bytes - i < CHUNK ? bytes - i : CHUNK;
        MPI_Bcast((char *)buf + i, (int)k, MPI_BYTE, 0, MPI_COMM_WORLD);
    }
#else
    (void)w, (void)buf, (void)bytes;
#endif
}

int dist_same(const dist_world *w, const long *vals, int n) {
#ifdef HAVE_MPI
    if (!w->mpi || w->size == 1 || n <= 0) return 1;
    /* one MIN reduction of (v, -v) gives both the minimum and the maximum;
       in pieces on the stack, so that no allocation can fail here */
    enum { PIECE = 16 };
    long mm[2 * PIECE];
    int same = 1;
    for (int at = 0; at < n; at += PIECE) {
        int k = n - at < PIECE ? n - at : PIECE;
        for (int i = 0; i < k; i++) {
            mm[i] = vals[at + i];
            mm[k + i] = vals[at + i] == LONG_MIN ? LONG_MAX : -vals[at + i];
        }
        MPI_Allreduce(MPI_IN_PLACE, mm, 2 * k, MPI_LONG, MPI_MIN, MPI_COMM_WORLD);
        for (int i = 0; i < k; i++) same &= mm[i] == -mm[k + i];
    }
    return same;
#else
    (void)w, (void)vals, (void)n;
    return 1;
#endif
}

int dist_agree(const dist_world *w, int rc, aria_error *err) {
#ifdef HAVE_MPI
    if (!w->mpi || w->size == 1) return rc;
    int mine = rc ? w->rank : w->size, first;
    MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    if (first == w->size) return ARIA_OK;
    struct {
        int rc;
        char msg[sizeof err->msg];
    } m;
    memset(&m, 0, sizeof m);
    if (w->rank == first) {
        m.rc = rc;
        if (err) {
            int room = (int)sizeof m.msg - 1; /* err->msg need not be terminated */
            if (first == 0) snprintf(m.msg, sizeof m.msg, "%.*s", room, err->msg);
            else snprintf(m.msg, sizeof m.msg, "process %d: %.*s", first, room - 24, err->msg);
        }
    }
    MPI_Bcast(&m, (int)sizeof m, MPI_BYTE, first, MPI_COMM_WORLD);
    if (err) memcpy(err->msg, m.msg, sizeof err->msg);
    return m.rc;
#else
    (void)w, (void)err;
    return rc;
#endif
}

int dist_default_threads(const dist_world *w) {
    cpu_set_t set;
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    int cpus = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : (int)online;
    if (cpus < 1) cpus = 1;
#ifdef HAVE_MPI
    /* unbound processes on one machine would each start a thread per CPU */
    if (w->mpi && w->size > 1) {
        MPI_Comm node;
        int local = 1;
        MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node);
        MPI_Comm_size(node, &local);
        MPI_Comm_free(&node);
        if (cpus >= online && local > 1) cpus = cpus / local > 0 ? cpus / local : 1;
    }
#else
    (void)w;
#endif
    return cpus;
}
