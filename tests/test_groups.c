/*
 * test_groups.c - honest splits: which files belong together
 * (aria_group_paths: auto, dir, regex, none) and `aria dataset` keeping
 * every group on one side, with the dropped and unreadable files listed
 * by name.
 *
 * The expected groups follow from the naming of the corpora the rule is
 * for (POP909's NNN/NNN.mid and NNN/versions/NNN-vK.mid, GiantMIDI's
 * movements and its "Composer, Title, YOUTUBEID" previews) and from the
 * options' definitions. The split test builds a POP909-shaped folder from
 * the reference vectors' MIDI files (each file once, so that none is a
 * duplicate) and checks, for several seeds, that every song is wholly in
 * validation or wholly in training; the same folder with --group-by none
 * does split songs, which shows the check can fail.
 */
#include <criterion/criterion.h>
#include <ftw.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "aria.h"
#include "cli_helpers.h"

static const char *const PATHS[] = {
    "c/pop909/POP909/001/001.mid",                                  /* 0: song 001 */
    "c/pop909/POP909/001/versions/001-v1.mid",                      /* 1 */
    "c/pop909/POP909/001/versions/001-v2.mid",                      /* 2 */
    "c/pop909/POP909/002/002.mid",                                  /* 3: song 002 */
    "c/pop909/POP909/002/versions/002-v1.mid",                      /* 4 */
    "c/giant/t/Brahms_Sonata_No2_Op2_RhZqUE63B9g_mov_1.mid",        /* 5: one recording */
    "c/giant/t/Brahms_Sonata_No2_Op2_RhZqUE63B9g_mov_2.mid",        /* 6 */
    "c/giant/preview/Chopin, Frederic, Etudes, Op.10, g0hoN6_HDVU.mid", /* 7: preview ... */
    "c/giant/t/Chopin_Etudes_Op10_g0hoN6_HDVU_no_12_cut.mid",       /* 8: ... and its cuts */
    "c/giant/t/Chopin_Etudes_Op10_g0hoN6_HDVU_no_9_cut.mid",        /* 9 */
    "c/mutopia/fur-elise.mid",                                      /* 10: alone */
    "c/mutopia/clair-de-lune.mid",                                  /* 11: alone */
};
#define N_PATHS (sizeof PATHS / sizeof *PATHS)

static size_t group_of(aria_group_mode mode, const char *pattern, size_t *g) {
    size_t n_groups = 0;
    aria_error e = {{0}};
    cr_assert_eq(aria_group_paths(PATHS, N_PATHS, mode, pattern, g, &n_groups, &e), ARIA_OK, "%s", e.msg);
    return n_groups;
}

Test(groups, auto_keeps_versions_and_parts_of_a_piece_together) {
    size_t g[N_PATHS];
    cr_expect_eq(group_of(ARIA_GROUP_AUTO, NULL, g), 6);
    const size_t want[N_PATHS] = {0, 0, 0, 1, 1, 2, 2, 3, 3, 3, 4, 5};
    for (size_t i = 0; i < N_PATHS; i++) cr_expect_eq(g[i], want[i], "%s: group %zu, want %zu", PATHS[i], g[i], want[i]);
}

Test(groups, dir_regex_and_none) {
    size_t g[N_PATHS];
    cr_expect_eq(group_of(ARIA_GROUP_DIR, NULL, g), 5, "001, 002, giant/t, giant/preview, mutopia");
    cr_expect(g[0] == g[1] && g[1] == g[2], "a versions folder counts as its parent");
    cr_expect(g[5] == g[8] && g[7] != g[8] && g[10] == g[11]);

    cr_expect_eq(group_of(ARIA_GROUP_REGEX, "POP909/([0-9]+)/", g), 2 + 7, "two songs, seven unmatched");
    cr_expect(g[0] == g[2] && g[3] == g[4] && g[0] != g[3]);
    cr_expect(g[5] != g[6], "unmatched paths stand alone");

    cr_expect_eq(group_of(ARIA_GROUP_REGEX, "giant/", g), 1 + 7, "no parenthesised part: the whole match");
    cr_expect(g[5] == g[7] && g[0] != g[1]);

    cr_expect_eq(group_of(ARIA_GROUP_NONE, NULL, g), N_PATHS);
    for (size_t i = 0; i < N_PATHS; i++) cr_expect_eq(g[i], i);

    size_t n = 0;
    aria_error e = {{0}};
    cr_expect_eq(aria_group_paths(PATHS, N_PATHS, ARIA_GROUP_REGEX, "([0-9", g, &n, &e), ARIA_ERR_ARG);
    cr_expect(strstr(e.msg, "([0-9") != NULL, "the message quotes the pattern: %s", e.msg);

    aria_group_mode mode;
    const char *pat;
    cr_expect_eq(aria_group_mode_parse("regex:a(b)", &mode, &pat), 0);
    cr_expect(mode == ARIA_GROUP_REGEX && !strcmp(pat, "a(b)"));
    cr_expect_eq(aria_group_mode_parse("dir", &mode, &pat), 0);
    cr_expect_eq(mode, ARIA_GROUP_DIR);
    cr_expect_eq(aria_group_mode_parse("regex:", &mode, &pat), -1);
    cr_expect_eq(aria_group_mode_parse("folder", &mode, &pat), -1);
}

/* ---------------------------------------------------------------------- */
/* aria dataset                                                           */
/* ---------------------------------------------------------------------- */

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *f) {
    (void)st, (void)flag, (void)f;
    return remove(p);
}
static void rm_rf(const char *dir) { nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS); }

static void copy_file(const char *from, const char *to) {
    uint8_t *buf;
    size_t len;
    cr_assert_eq(aria_read_file(from, &buf, &len, NULL), ARIA_OK, "%s", from);
    cr_assert_eq(aria_write_file_atomic(to, buf, len, NULL), ARIA_OK, "%s", to);
    free(buf);
}

#define SONGS 6
#define VERSIONS 3

/* dir/POP909/NNN/NNN.mid and dir/POP909/NNN/versions/NNN-vK.mid, each a
   different reference file. */
static void make_pop_corpus(char *dir) {
    strcpy(dir, "/tmp/aria_grp_inXXXXXX");
    cr_assert(mkdtemp(dir));
    glob_t gl;
    cr_assert_eq(glob("tests/data/vectors/*/*.mid", 0, NULL, &gl), 0);
    size_t next = 0;
    char p[700];
    snprintf(p, sizeof p, "%s/POP909", dir);
    cr_assert_eq(mkdir(p, 0777), 0);
    for (int s = 1; s <= SONGS; s++) {
        snprintf(p, sizeof p, "%s/POP909/%03d", dir, s);
        cr_assert_eq(mkdir(p, 0777), 0);
        snprintf(p, sizeof p, "%s/POP909/%03d/versions", dir, s);
        cr_assert_eq(mkdir(p, 0777), 0);
        for (int v = 0; v < VERSIONS; v++) {
            while (next < gl.gl_pathc && strstr(gl.gl_pathv[next], "decoded.mid")) next++;
            cr_assert_lt(next, gl.gl_pathc, "enough reference files");
            if (v == 0) snprintf(p, sizeof p, "%s/POP909/%03d/%03d.mid", dir, s, s);
            else snprintf(p, sizeof p, "%s/POP909/%03d/versions/%03d-v%d.mid", dir, s, s, v);
            copy_file(gl.gl_pathv[next++], p);
        }
    }
    globfree(&gl);
}

static int run_dataset(const char *in, const char *out, const char *extra, char *err, size_t cap) {
    char cmd[2048], errf[] = "/tmp/aria_grp_errXXXXXX";
    int fd = mkstemp(errf);
    cr_assert(fd >= 0);
    close(fd);
    snprintf(cmd, sizeof cmd, "%s dataset --out %s --seq-len 256 --filters none --jobs 2 %s %s >/dev/null 2>%s",
             aria_bin(), out, extra, in, errf);
    int st = system(cmd);
    FILE *f = fopen(errf, "r");
    size_t n = f ? fread(err, 1, cap - 1, f) : 0;
    err[n] = 0;
    if (f) fclose(f);
    unlink(errf);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Per song: bit 0 a file in training, bit 1 one in validation. */
static void sides(const char *in, const char *out, int side[SONGS + 1], int *n_val) {
    char p[700], line[800];
    memset(side, 0, sizeof(int) * (SONGS + 1));
    *n_val = 0;
    snprintf(p, sizeof p, "%s/val-files.txt", out);
    FILE *f = fopen(p, "r");
    cr_assert(f, "no %s", p);
    char val[SONGS * VERSIONS][800];
    int nv = 0;
    while (fgets(line, sizeof line, f) && nv < SONGS * VERSIONS) {
        line[strcspn(line, "\n")] = 0;
        snprintf(val[nv++], sizeof val[0], "%s", line);
    }
    fclose(f);
    *n_val = nv;
    for (int s = 1; s <= SONGS; s++)
        for (int v = 0; v < VERSIONS; v++) {
            if (v == 0) snprintf(p, sizeof p, "%s/POP909/%03d/%03d.mid", in, s, s);
            else snprintf(p, sizeof p, "%s/POP909/%03d/versions/%03d-v%d.mid", in, s, s, v);
            int in_val = 0;
            for (int k = 0; k < nv; k++) in_val |= !strcmp(val[k], p);
            side[s] |= in_val ? 2 : 1;
        }
}

Test(groups, dataset_never_splits_a_song) {
    char in[64], out[128], err[8192], extra[128];
    make_pop_corpus(in);
    int split_without_groups = 0;
    for (int seed = 0; seed < 4; seed++) {
        for (int grouped = 1; grouped >= 0; grouped--) {
            snprintf(out, sizeof out, "%s-out", in);
            snprintf(extra, sizeof extra, "--val-fraction 0.3 --seed %d%s", seed, grouped ? "" : " --group-by none");
            cr_assert_eq(run_dataset(in, out, extra, err, sizeof err), 0, "%s", err);
            int side[SONGS + 1], n_val;
            sides(in, out, side, &n_val);
            cr_expect_gt(n_val, 0, "seed %d: a validation split", seed);
            for (int s = 1; s <= SONGS; s++) {
                if (grouped) cr_expect(side[s] == 1 || side[s] == 2, "seed %d: song %d on both sides", seed, s);
                split_without_groups += !grouped && side[s] == 3;
            }
            if (grouped) {
                cr_expect(strstr(err, "groups           6") != NULL, "%s", err);
                cr_expect_eq(n_val % VERSIONS, 0, "whole songs: %d files", n_val);
            }
            rm_rf(out);
        }
    }
    cr_expect_gt(split_without_groups, 0, "--group-by none splits songs (the check above can fail)");
    rm_rf(in);
}

Test(groups, dropped_and_unreadable_files_are_named) {
    char in[64], out[128], err[16384], p[700];
    make_pop_corpus(in);
    snprintf(p, sizeof p, "%s/broken.mid", in);
    cr_assert_eq(aria_write_file_atomic(p, "MThd", 4, NULL), ARIA_OK);
    snprintf(p, sizeof p, "%s/zz-copy.mid", in);
    char orig[700];
    snprintf(orig, sizeof orig, "%s/POP909/001/001.mid", in);
    copy_file(orig, p);
    snprintf(out, sizeof out, "%s-out", in);
    cr_assert_eq(run_dataset(in, out, "", err, sizeof err), 0, "%s", err);
    char want[1600];
    snprintf(want, sizeof want, "%s/broken.mid: read_error: ", in);
    cr_expect(strstr(err, want) != NULL, "the summary names the unreadable file: %s", err);
    snprintf(want, sizeof want, "%s/zz-copy.mid: duplicate: same music as %s", in, orig);
    cr_expect(strstr(err, want) != NULL, "the summary names the duplicate and its original: %s", err);
    snprintf(p, sizeof p, "%s/dropped.tsv", out);
    uint8_t *tsv;
    size_t len;
    cr_assert_eq(aria_read_file(p, &tsv, &len, NULL), ARIA_OK);
    char *text = realloc(tsv, len + 1);
    text[len] = 0;
    cr_expect(!strncmp(text, "path\treason\tdetail\n", 19), "%s", text);
    snprintf(want, sizeof want, "%s/broken.mid\tread_error\t", in);
    cr_expect(strstr(text, want) != NULL, "%s", text);
    snprintf(want, sizeof want, "%s/zz-copy.mid\tduplicate\tsame music as %s\n", in, orig);
    cr_expect(strstr(text, want) != NULL, "%s", text);
    int lines = 0;
    for (char *c = text; *c; c++) lines += *c == '\n';
    cr_expect_eq(lines, 3, "a header and two dropped files");
    free(text);
    rm_rf(out);
    /* a bad pattern is a usage error */
    cr_expect_eq(run_dataset(in, out, "--group-by folder", err, sizeof err), 2);
    cr_expect_eq(run_dataset(in, out, "--group-by 'regex:(['", err, sizeof err), 1, "%s", err);
    cr_expect(strstr(err, "regex") != NULL, "%s", err);
    rm_rf(out);
    rm_rf(in);
}
