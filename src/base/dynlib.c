/*
 * dynlib.c - optional libraries opened at first use (see dynlib.h).
 */
#include "base/dynlib.h"

#include <dlfcn.h>
#include <stdio.h>

#include "aria.h"

void *aria_dl_open(const aria_dl_spec *spec, void **need, void **want, char *why, size_t cap) {
    if (why && cap) why[0] = 0;
    void *h = dlopen(spec->file, RTLD_NOW | (spec->global ? RTLD_GLOBAL : RTLD_LOCAL));
    if (!h) {
        const char *e = dlerror();
        if (why && cap) snprintf(why, cap, "%s not loaded: %s", spec->what, e ? e : spec->file);
        return NULL;
    }
    for (size_t i = 0; spec->need[i]; i++) {
        void *p = dlsym(h, spec->need[i]);
        if (!p) {
            if (why && cap)
                snprintf(why, cap, "%s not used: %s has no %s (another version?)", spec->what, spec->file,
                         spec->need[i]);
            dlclose(h);
            return NULL;
        }
        need[i] = p;
    }
    for (size_t i = 0; spec->want && spec->want[i]; i++) want[i] = dlsym(h, spec->want[i]);
    return h;
}

int aria_dl_is_loaded(const char *file) {
    void *h = dlopen(file, RTLD_NOW | RTLD_NOLOAD);
    if (!h) return 0;
    dlclose(h); /* drops the reference RTLD_NOLOAD took */
    return 1;
}

int aria_libs_describe(char *buf, size_t cap) {
    static const struct {
        const char *name;
        int (*state)(const char **, const char **);
    } libs[] = {{"oneDNN", aria_dl_state_onednn},
                {"MPI", aria_dl_state_mpi},
                {"FluidSynth", aria_dl_state_fluidsynth},
                {"libpng", aria_dl_state_png}};
    size_t at = 0;
    int n = 0;
    if (cap) buf[0] = 0;
    for (size_t i = 0; i < sizeof libs / sizeof *libs; i++) {
        const char *file = "", *why = "";
        int st = libs[i].state(&file, &why);
        n += st == 1;
        int k = st == 1   ? snprintf(buf + at, cap - at, "%s: %s, loaded\n", libs[i].name, file)
                : st == 0 ? snprintf(buf + at, cap - at, "%s\n", why)
                          : snprintf(buf + at, cap - at, "%s: not in this build\n", libs[i].name);
        if (k < 0 || (size_t)k >= cap - at) break;
        at += (size_t)k;
    }
    return n;
}
