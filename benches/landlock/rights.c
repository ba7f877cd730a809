/*
 * What Landlock costs a raw open/close, by which rights the domain handles (issue 6).
 * One fresh process per run: it restricts itself with a one-layer domain (a rule granting
 * read/execute/truncate/ioctl on "/" and every handled right on /tmp, like a container's),
 * then times open+close of /etc/hostname. Modes:
 *   none        no domain
 *   all         every right of the ABI handled (what rauha ships)
 *   no-read     read_file, read_dir and execute not handled
 *   writes-only additionally truncate and ioctl_dev not handled: a read-only open
 *               requests no handled right, so Landlock skips its path walk
 * Usage: rights MODE ITERATIONS   -> prints "MODE ns/iteration"
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/landlock.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define TRUNCATE (1ULL << 14)
#define IOCTL_DEV (1ULL << 15)
#define READS (LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_READ_DIR | \
	       LANDLOCK_ACCESS_FS_EXECUTE)
#define DEVICES (LANDLOCK_ACCESS_FS_MAKE_CHAR | LANDLOCK_ACCESS_FS_MAKE_BLOCK)

static void allow(int ruleset, const char *path, unsigned long long access)
{
	struct landlock_path_beneath_attr rule = { .allowed_access = access };

	rule.parent_fd = open(path, O_PATH | O_CLOEXEC);
	if (rule.parent_fd < 0 ||
	    syscall(SYS_landlock_add_rule, ruleset, LANDLOCK_RULE_PATH_BENEATH, &rule, 0)) {
		perror(path);
		exit(1);
	}
	close(rule.parent_fd);
}

static unsigned long long handled_by(const char *mode)
{
	int abi = syscall(SYS_landlock_create_ruleset, NULL, 0, LANDLOCK_CREATE_RULESET_VERSION);
	/* ABI 5 and later know 16 filesystem rights. */
	unsigned long long all = abi >= 5 ? (1ULL << 16) - 1 : 0;

	if (!all) {
		fprintf(stderr, "landlock ABI %d: need 5 or later\n", abi);
		exit(1);
	}
	if (!strcmp(mode, "none"))
		return 0;
	if (!strcmp(mode, "all"))
		return all;
	if (!strcmp(mode, "no-read"))
		return all & ~READS;
	if (!strcmp(mode, "writes-only"))
		return all & ~READS & ~TRUNCATE & ~IOCTL_DEV;
	fprintf(stderr, "unknown mode %s\n", mode);
	exit(2);
}

int main(int argc, char **argv)
{
	unsigned long long handled;
	struct timespec start, end;
	long n;

	if (argc != 3)
		return 2;
	handled = handled_by(argv[1]);
	n = atol(argv[2]);
	if (handled) {
		struct landlock_ruleset_attr attr = { .handled_access_fs = handled };
		int ruleset = syscall(SYS_landlock_create_ruleset, &attr, sizeof(attr), 0);

		if (ruleset < 0) {
			perror("landlock_create_ruleset");
			return 1;
		}
		/* writes-only grants nothing on "/": no rule (an empty rule is invalid). */
		if ((READS | TRUNCATE | IOCTL_DEV) & handled)
			allow(ruleset, "/", (READS | TRUNCATE | IOCTL_DEV) & handled);
		allow(ruleset, "/tmp", handled & ~DEVICES);
		if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) ||
		    syscall(SYS_landlock_restrict_self, ruleset, 0)) {
			perror("landlock_restrict_self");
			return 1;
		}
	}
	for (int i = 0; i < 1000; i++)
		close(open("/etc/hostname", O_RDONLY | O_CLOEXEC));
	clock_gettime(CLOCK_MONOTONIC, &start);
	for (long i = 0; i < n; i++)
		close(open("/etc/hostname", O_RDONLY | O_CLOEXEC));
	clock_gettime(CLOCK_MONOTONIC, &end);
	printf("%s %.1f\n", argv[1],
	       ((end.tv_sec - start.tv_sec) * 1e9 + (end.tv_nsec - start.tv_nsec)) / n);
	return 0;
}
