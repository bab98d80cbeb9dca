/*
 * test_fetch.c - scripts/get-model.sh, the download of the released
 * checkpoints, against a local "hub": a folder laid out as
 * REPOSITORY/resolve/main/FILE, served over file:// and over HTTP on the
 * loopback interface (Debian's python3 -m http.server, when present). No
 * other address is ever used.
 *
 * The manifest of the test names files whose sizes and SHA-256 are written
 * here as constants (computed once from the bytes below with sha256sum),
 * so the script's checks are compared with known values: a good file
 * arrives whole and the printed command names it; a file whose checksum
 * does not match (a corrupted download) and one of the wrong size are
 * refused with exit 1 and leave nothing behind, not even a .part; a
 * manifest line without a checksum downloads, says "unverified" and
 * prints the SHA-256 it computed; an unknown name is a usage error.
 */
#include <criterion/criterion.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "aria.h"

#define WEIGHTS "weights-0123456789\n" /* 19 bytes */
#define WEIGHTS_SHA "3196a67198b089a5e49d9ab62aed861de3ccaa5b65ce9e3835b5c95b0db17ab0"
#define CONFIG "{\"d_model\": 64}\n"    /* 16 bytes */
#define CONFIG_SHA "a832afd454a3da3166ecfb92d91659fe6fbef15415e2b09ae365bfe281246cfc"

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *f) {
    (void)st, (void)flag, (void)f;
    return remove(p);
}
static void rm_rf(const char *dir) { nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS); }

static void put(const char *path, const char *text) {
    cr_assert_eq(aria_write_file_atomic(path, text, strlen(text), NULL), ARIA_OK, "%s", path);
}

static int exists(const char *path) { return access(path, F_OK) == 0; }

typedef struct {
    char root[64];  /* the test's folder */
    char hub[128];  /* the served folder */
    char out[128];  /* --dir */
    char manifest[128];
} fixture;

static void setup(fixture *f) {
    strcpy(f->root, "/tmp/aria_fetch_XXXXXX");
    cr_assert(mkdtemp(f->root));
    snprintf(f->hub, sizeof f->hub, "%s/hub", f->root);
    snprintf(f->out, sizeof f->out, "%s/models", f->root);
    snprintf(f->manifest, sizeof f->manifest, "%s/checkpoints.tsv", f->root);
    char p[300];
    const char *dirs[] = {"hub", "hub/me", "hub/me/tiny", "hub/me/tiny/resolve", "hub/me/tiny/resolve/main"};
    for (size_t i = 0; i < sizeof dirs / sizeof *dirs; i++) {
        snprintf(p, sizeof p, "%s/%s", f->root, dirs[i]);
        cr_assert_eq(mkdir(p, 0777), 0, "%s", p);
    }
    snprintf(p, sizeof p, "%s/me/tiny/resolve/main/model.safetensors", f->hub);
    put(p, WEIGHTS);
    snprintf(p, sizeof p, "%s/me/tiny/resolve/main/config.json", f->hub);
    put(p, CONFIG);
    put(f->manifest, "# a test manifest\n"
                     "tiny-gen\tme/tiny\tmodel.safetensors\t19\t" WEIGHTS_SHA "\tweights\n"
                     "tiny-gen\tme/tiny\tconfig.json\t16\t" CONFIG_SHA "\tshape\n"
                     /* the served bytes are not these: a corrupted download */
                     "tiny-corrupt\tme/tiny\tmodel.safetensors\t19\t"
                     "0000a67198b089a5e49d9ab62aed861de3ccaa5b65ce9e3835b5c95b0db17ab0\tweights\n"
                     "tiny-short\tme/tiny\tmodel.safetensors\t20\t\tweights\n"
                     "tiny-unverified\tme/tiny\tconfig.json\t\t\tshape\n"
                     "tiny-missing\tme/tiny\tnot-there.safetensors\t\t\tweights\n");
}

/* Runs the script; stdout and stderr are returned together. */
static int fetch(const fixture *f, const char *base, const char *name, char *out, size_t cap) {
    char cmd[1024], log[160];
    snprintf(log, sizeof log, "%s/log.txt", f->root);
    snprintf(cmd, sizeof cmd, "sh scripts/get-model.sh --manifest %s --dir %s --base-url %s %s >%s 2>&1",
             f->manifest, f->out, base, name, log);
    int st = system(cmd);
    FILE *fp = fopen(log, "r");
    size_t n = fp ? fread(out, 1, cap - 1, fp) : 0;
    out[n] = 0;
    if (fp) fclose(fp);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void check_downloads(const fixture *f, const char *base) {
    char msg[8192], p[300];
    uint8_t *b;
    size_t len;
    cr_assert_eq(fetch(f, base, "tiny-gen", msg, sizeof msg), 0, "%s", msg);
    snprintf(p, sizeof p, "%s/tiny-gen/model.safetensors", f->out);
    cr_assert_eq(aria_read_file(p, &b, &len, NULL), ARIA_OK, "%s", msg);
    cr_expect(len == strlen(WEIGHTS) && !memcmp(b, WEIGHTS, len));
    free(b);
    snprintf(p, sizeof p, "%s/tiny-gen/config.json", f->out);
    cr_expect(exists(p));
    snprintf(p, sizeof p, "generate --model %s/tiny-gen/model.safetensors", f->out);
    cr_expect(strstr(msg, p) != NULL, "prints the command to use it: %s", msg);
    cr_expect(strstr(msg, "unverified") == NULL, "%s", msg);
    snprintf(p, sizeof p, "%s/tiny-gen/model.safetensors.part", f->out);
    cr_expect(!exists(p));
    cr_expect_eq(fetch(f, base, "tiny-gen", msg, sizeof msg), 0, "%s", msg);
    cr_expect(strstr(msg, "already there") != NULL, "a second run checks and keeps: %s", msg);

    cr_expect_eq(fetch(f, base, "tiny-corrupt", msg, sizeof msg), 1, "%s", msg);
    cr_expect(strstr(msg, "refused") && strstr(msg, "sha256 " WEIGHTS_SHA), "%s", msg);
    snprintf(p, sizeof p, "%s/tiny-corrupt", f->out);
    cr_expect(!exists(p), "a refused download leaves nothing behind");

    cr_expect_eq(fetch(f, base, "tiny-short", msg, sizeof msg), 1, "%s", msg);
    cr_expect(strstr(msg, "19 bytes, the manifest says 20") != NULL, "%s", msg);
    snprintf(p, sizeof p, "%s/tiny-short", f->out);
    cr_expect(!exists(p));

    cr_expect_eq(fetch(f, base, "tiny-unverified", msg, sizeof msg), 0, "%s", msg);
    cr_expect(strstr(msg, "unverified") && strstr(msg, CONFIG_SHA) && strstr(msg, "16 bytes"), "%s", msg);
    snprintf(p, sizeof p, "%s/tiny-unverified/config.json", f->out);
    cr_expect(exists(p));

    cr_expect_eq(fetch(f, base, "tiny-missing", msg, sizeof msg), 1, "%s", msg);
    snprintf(p, sizeof p, "%s/tiny-missing", f->out);
    cr_expect(!exists(p), "a failed download leaves nothing behind");
}

Test(fetch, file_url) {
    if (system("command -v curl >/dev/null 2>&1") != 0) cr_skip_test("no curl (install curl)");
    fixture f;
    setup(&f);
    char base[200], msg[4096];
    snprintf(base, sizeof base, "file://%s", f.hub);
    check_downloads(&f, base);
    cr_expect_eq(fetch(&f, base, "no-such-model", msg, sizeof msg), 2);
    cr_expect(strstr(msg, "unknown model") && strstr(msg, "tiny-gen"), "%s", msg);
    rm_rf(f.root);
}

Test(fetch, loopback_http) {
    if (system("command -v curl >/dev/null 2>&1") != 0) cr_skip_test("no curl (install curl)");
    if (access("/usr/bin/python3", X_OK) != 0) cr_skip_test("no /usr/bin/python3 for a loopback HTTP server");
    fixture f;
    setup(&f);
    char log[160];
    snprintf(log, sizeof log, "%s/server.txt", f.root);
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) { /* port 0: the system picks a free one, the server prints it */
        FILE *o = freopen(log, "w", stdout);
        (void)o;
        dup2(1, 2);
        execl("/usr/bin/python3", "python3", "-u", "-m", "http.server", "0", "--bind", "127.0.0.1", "--directory",
              f.hub, (char *)NULL);
        _exit(127);
    }
    int port = 0;
    for (int tries = 0; tries < 100 && !port; tries++) {
        usleep(50000);
        FILE *fp = fopen(log, "r");
        char line[256];
        while (fp && fgets(line, sizeof line, fp))
            if (sscanf(line, "Serving HTTP on 127.0.0.1 port %d", &port) == 1) break;
        if (fp) fclose(fp);
    }
    if (!port) {
        kill(pid, SIGTERM);
        waitpid(pid, NULL, 0);
        cr_skip_test("the loopback HTTP server did not start");
    }
    char base[64];
    snprintf(base, sizeof base, "http://127.0.0.1:%d", port);
    check_downloads(&f, base);
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
    rm_rf(f.root);
}
