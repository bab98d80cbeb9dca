/*
 * dynlib.h - optional libraries opened at their first use (dlopen) rather
 * than by the dynamic loader at process start (src/base/dynlib.c).
 *
 * oneDNN, MPI, FluidSynth and libpng are each needed by a few commands
 * only, and loading them with everything they depend on costs a process
 * more than it spends tokenizing a file (bench/startup.sh). So the build
 * compiles against their headers but links none of them: the file that
 * uses one lists the functions it calls (an X-macro), opens the library
 * the first time it is needed, and calls through the table. A library
 * that is missing at run time, or lacks a function, is simply not there:
 * the caller falls back (another kernel backend, one process) or says so.
 *
 * Internal header; not part of the public API.
 */
#ifndef ARIA_DYNLIB_H
#define ARIA_DYNLIB_H

#include <stddef.h>

/* One library to open: the file name to ask the dynamic loader for (its
   soname, found by the Makefile when it probes for the library), the
   symbols that must all be found, and symbols that may be missing. */
typedef struct {
    const char *what;            /* for messages: "oneDNN" */
    const char *file;            /* "libdnnl.so.2" */
    const char *const *need;     /* NULL-terminated */
    const char *const *want;     /* NULL-terminated, or NULL */
    int global;                  /* RTLD_GLOBAL (libraries that dlopen
                                    plug-ins of their own, like Open MPI) */
} aria_dl_spec;

/* Opens spec->file and stores the address of each symbol of spec->need in
   need[i] and of spec->want in want[i] (NULL when absent). Returns the
   handle (kept open for the life of the process), or NULL with a
   one-line reason in why[cap] (need[] is then not to be used). */
void *aria_dl_open(const aria_dl_spec *spec, void **need, void **want, char *why, size_t cap);

/* 1 when the library `file` is mapped into this process now (loaded by
   anyone), without loading it. */
int aria_dl_is_loaded(const char *file);

/* The state of each optional library, for aria_libs_describe (defined
   beside the code that uses it; each opens its library if that was not
   tried yet): 1 loaded, with its file name in *file; 0 not loadable, with
   the reason in *why; -1 not in this build. */
int aria_dl_state_onednn(const char **file, const char **why);
int aria_dl_state_mpi(const char **file, const char **why);
int aria_dl_state_fluidsynth(const char **file, const char **why);
int aria_dl_state_png(const char **file, const char **why);

/* The table a file calls an optional library through. FNS is an X-macro
   listing the functions (FNS(X) expands to X(f) for each); the library's
   header must be included, for their types, and <pthread.h>. Defines
   `tab` (tab.f: the address of f), tab_ready() (opens the library once,
   from any thread; 1 when every function was found) and tab_why (the
   reason when not). */
#define ARIA_DL_DECL_(f) __typeof__(f) *f;
#define ARIA_DL_NAME_(f) #f,
#define ARIA_DL_SET_(f) memcpy(&t->f, &p[i++], sizeof p[0]);
#define ARIA_DL_TABLE(tab, FNS, what, soname)                                           \
    static struct {                                                                     \
        FNS(ARIA_DL_DECL_)                                                              \
        int loaded;                                                                     \
    } tab;                                                                              \
    static pthread_once_t tab##_once = PTHREAD_ONCE_INIT;                               \
    static char tab##_why[256];                                                         \
    static void tab##_load(void) {                                                      \
        static const char *const need[] = {FNS(ARIA_DL_NAME_) NULL};                   \
        void *p[sizeof need / sizeof *need - 1];                                        \
        aria_dl_spec spec = {what, soname, need, NULL, 0};                              \
        if (!aria_dl_open(&spec, p, NULL, tab##_why, sizeof tab##_why)) return;        \
        __typeof__(tab) *t = &tab;                                                      \
        size_t i = 0;                                                                   \
        FNS(ARIA_DL_SET_)                                                               \
        t->loaded = 1;                                                                  \
    }                                                                                   \
    static int tab##_ready(void) {                                                      \
        pthread_once(&tab##_once, tab##_load);                                          \
        return tab.loaded;                                                              \
    }

/* A macro's value as a string literal, for sonames made from version
   macros: ARIA_DL_STR(DNNL_VERSION_MAJOR) is "2". */
#define ARIA_DL_STR_(x) #x
#define ARIA_DL_STR(x) ARIA_DL_STR_(x)

#endif
