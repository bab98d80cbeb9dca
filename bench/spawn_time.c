/*
 * spawn_time.c - wall time of whole commands, process start included, for
 * bench/startup.sh: each command runs N times, the commands taking turns
 * (a, b, c, a, b, c, ...) so that a change in the machine's load falls on
 * all of them alike; prints the median, the 10th and 90th percentiles and
 * the minimum of each in milliseconds. Standard output and error of the
 * commands go to /dev/null; a command that fails stops the run.
 *
 *   spawn_time N CMD ARGS... [--- CMD ARGS...]...
 */
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    if (argc < 3 || atoi(argv[1]) < 1) {
        fprintf(stderr, "usage: spawn_time N CMD ARGS... [--- CMD ARGS...]...\n");
        return 2;
    }
    int n = atoi(argv[1]), n_cmd = 0;
    char **cmd[32];
    cmd[n_cmd++] = &argv[2];
    for (int i = 2; i < argc; i++)
        if (!strcmp(argv[i], "---")) {
            argv[i] = NULL;
            if (n_cmd == 32 || i + 1 >= argc) {
                fprintf(stderr, "spawn_time: at most 32 commands, none empty\n");
                return 2;
            }
            cmd[n_cmd++] = &argv[i + 1];
        }
    double *t = malloc(sizeof *t * (size_t)n * (size_t)n_cmd);
    if (!t) return 1;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    for (int r = 0; r < n; r++)
        for (int c = 0; c < n_cmd; c++) {
            pid_t pid;
            int st;
            double t0 = now_ms();
            if (posix_spawn(&pid, cmd[c][0], &fa, NULL, cmd[c], environ) != 0 || waitpid(pid, &st, 0) != pid ||
                !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
                fprintf(stderr, "spawn_time: %s failed\n", cmd[c][0]);
                return 1;
            }
            t[(size_t)c * n + r] = now_ms() - t0;
        }
    printf("%-8s %8s %8s %8s %8s  %s\n", "runs", "median", "p10", "p90", "min", "command (ms)");
    for (int c = 0; c < n_cmd; c++) {
        double *v = t + (size_t)c * n;
        qsort(v, (size_t)n, sizeof *v, cmp_d);
        printf("%-8d %8.3f %8.3f %8.3f %8.3f ", n, v[n / 2], v[n / 10], v[n - 1 - n / 10], v[0]);
        for (char **a = cmd[c]; *a; a++) printf(" %s", *a);
        putchar('\n');
    }
    free(t);
    return 0;
}
