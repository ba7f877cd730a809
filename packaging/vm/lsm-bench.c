/* The LSM layer's cost inside the VM (packaging/vm/checks.sh, `lsm-bench`): open+close of FILE
 * (file_open) and fork+exec of EXE with the argument `true` (bprm_check_security, file_open on
 * the binary), timed in compiled loops so the shell's own cost does not dilute the hooks'.
 *
 * Usage: lsm-bench FILE EXE OPENS EXECS  →  one line "open_ns=A exec_ns=B open_n=N exec_n=M"
 * The caller puts it in a zone's cgroup first. Each loop runs in ROUNDS rounds and the fastest
 * round counts: TCG on a shared host is noisy, and the least disturbed round is the figure
 * whose ratio carries over.
 *
 * C rather than a rauha role: nothing test-only ships in the product binary, and a static
 * build of this file takes a fraction of a second. */
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define ROUNDS 5

extern char **environ;

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static long count(const char *arg, const char *what) {
    char *end;
    long n = strtol(arg, &end, 10);
    if (*end != '\0' || n < ROUNDS) {
        fprintf(stderr, "lsm-bench: %s %s: expected a number >= %d\n", what, arg, ROUNDS);
        exit(2);
    }
    return n;
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: lsm-bench FILE EXE OPENS EXECS\n");
        return 2;
    }
    const char *file = argv[1], *exe = argv[2];
    long opens = count(argv[3], "OPENS") / ROUNDS, execs = count(argv[4], "EXECS") / ROUNDS;
    char *child_argv[] = {(char *)exe, "true", NULL};
    long long open_ns = -1, exec_ns = -1;
    for (int round = 0; round < ROUNDS; round++) {
        long long start = now_ns();
        for (long i = 0; i < opens; i++) {
            int fd = open(file, O_RDONLY | O_CLOEXEC);
            if (fd < 0) {
                fprintf(stderr, "lsm-bench: open %s: %s\n", file, strerror(errno));
                return 1;
            }
            close(fd);
        }
        long long per = (now_ns() - start) / opens;
        if (open_ns < 0 || per < open_ns) open_ns = per;

        start = now_ns();
        for (long i = 0; i < execs; i++) {
            pid_t pid;
            int status, err = posix_spawn(&pid, exe, NULL, NULL, child_argv, environ);
            if (err != 0) {
                fprintf(stderr, "lsm-bench: spawn %s: %s\n", exe, strerror(err));
                return 1;
            }
            if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                fprintf(stderr, "lsm-bench: %s true did not exit 0\n", exe);
                return 1;
            }
        }
        per = (now_ns() - start) / execs;
        if (exec_ns < 0 || per < exec_ns) exec_ns = per;
    }
    printf("open_ns=%lld exec_ns=%lld open_n=%ld exec_n=%ld\n", open_ns, exec_ns,
           opens * ROUNDS, execs * ROUNDS);
    return 0;
}
