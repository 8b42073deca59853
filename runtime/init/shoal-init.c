/*
 * shoal-init: PID 1 of every Shoal container, run as `init -- CMD ARGS...`.
 *
 * Why it exists. The node supervisor (runtime/supervisor) holds every
 * container's output and exit status, so the init inside the container has
 * only PID 1's duties, the ones tini (Docker's --init) has when run without
 * flags, as Shoal ran it:
 *
 *   - run CMD as its one child, in a process group of its own (the terminal's
 *     foreground group when stdin is one), found through PATH like execvp;
 *     exit 127 when it does not exist, 126 when it cannot be run, with
 *     "exec CMD failed: <reason>" on stderr;
 *   - forward every signal it can catch to CMD (a PID 1 has no default
 *     actions: without this, SIGTERM would never reach a CMD);
 *   - reap every zombie, orphans of CMD included (in a pid namespace they
 *     are all handed to PID 1);
 *   - exit with CMD's status as soon as CMD ends, 128+N when signal N killed
 *     it; the kernel then kills whatever else is left in the namespace.
 *
 * Why not tini itself: its memory. It is one copy per container, charged to
 * the container's memory limit, and Debian's tini-static is glibc linked
 * statically: 56 KiB of anonymous memory each (stack, data, relro, heap) and
 * 632 KiB of file pages. This one is built with -nostdlib: raw system calls,
 * no libc, no heap, no writable global, one page of code and the stack the
 * kernel gives it (argv and environment, a few hundred bytes of frames), so
 * about 8 KiB of PSS per container (runtime/README.md has the figures).
 *
 * The parent blocks the signals it forwards and takes them synchronously with
 * rt_sigtimedwait, as tini does: no handler, no async-signal-safety to get
 * wrong, and /proc/PID/status shows SIGTERM blocked before CMD starts, which
 * the runtime waits for before a stop (runtime/stop.go initReady). The
 * synchronous signals (SIGSEGV & co.) and SIGTTIN/SIGTTOU are left alone, as
 * tini leaves them; the latter two are ignored so that a background read of
 * the terminal does not stop PID 1.
 *
 * Exec mode (`shoal exec`). runc 1.1 built with Go >= 1.19 (Debian 12's
 * 1.1.5) sets an exec'd process's rlimits from its process spec before the
 * Go runtime of `runc init` starts, and that runtime then raises its soft
 * RLIMIT_NOFILE to the hard limit, which the process inherits: with
 * `--ulimit nofile=2000:4000`, PID 1 had 2000/4000 and every `shoal exec`
 * 4000/4000. So when the container's limits need it, the agent runs the
 * exec'd command as `/.shoal/init -- CMD...` with SHOAL_EXEC_RLIMITS set to
 * the container's rlimits ("RESOURCE:SOFT:HARD,...", numbers as
 * setrlimit(2) takes them). Run so, and not as PID 1, the init sets each
 * limit, drops the variable from the environment and execs CMD in its own
 * place (no fork: the process stays the exec's), with the same 127/126
 * exits and message as for a PID 1's CMD. Given `-s` (below), and not as
 * PID 1, it takes the same mode, with or without the variable.
 *
 * The seccomp filter (`-s PROGRAM`). runc compiles a container's seccomp
 * profile with libseccomp in every `runc init` and every `runc exec`, about
 * 20 ms of CPU each. When the agent has the program runc compiles for the
 * profile (runtime/seccompprog captures it from one runc once), it leaves the
 * profile out of the container's config and runs the init as
 * `init -s /.shoal/seccomp -- CMD`: the init installs that program on itself
 * before anything else, so CMD and everything after it run under the same
 * filter runc would have installed. It needs no capability: the container
 * runs with no_new_privs. Every `shoal exec` and health probe of such a
 * container runs through the init too (exec mode below), since runc no longer
 * installs the filter on them. A program that cannot be read or installed
 * ends the init with 126 before CMD runs: never a container without it.
 *
 * Why an exec's wrapper takes `-x CAPS` too. Between its execve and its
 * seccomp(2), the wrapper runs without the filter while the container's own
 * processes are running, and a process of the same user may ptrace another
 * whose permitted capabilities are no more than its own: one could take the
 * wrapper over in that window and run unfiltered. (runc guards the same
 * window of its own by making `runc init` non-dumpable, which an execve
 * undoes.) So the agent starts the wrapper with CAP_SYS_ADMIN, which no
 * process of such a container can have (nor CAP_SYS_PTRACE, which would
 * override the check), and CAP_SETPCAP, which it needs to drop the first
 * from its bounding set. -x CAPS is the hex mask of what it gives up:
 * CAP_SYS_ADMIN, and CAP_SETPCAP when the container lacks it. The wrapper
 * installs the filter, then gives them up (drop_caps), and only then runs
 * CMD, with the container's capabilities and nothing more; a drop that
 * fails ends it with 126.
 *
 * Build: runtime/init/build.sh OUT (the Makefile and the tests use it).
 * Architectures: x86_64 and aarch64 (the syscall wrapper below).
 */

#include <asm/unistd.h>
#include <asm-generic/errno.h>
#include <asm/ioctls.h>
#include <linux/wait.h>

typedef unsigned long ulong;

/* -- system calls ---------------------------------------------------------- */

#if defined(__x86_64__)
static long sys6(long n, long a, long b, long c, long d, long e, long f)
{
	register long r10 __asm__("r10") = d;
	register long r8 __asm__("r8") = e;
	register long r9 __asm__("r9") = f;
	long ret;
	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
			 : "rcx", "r11", "memory");
	return ret;
}

/* The kernel enters with argc at (%rsp); hand main the stack pointer. */
__asm__(".text\n"
	".global _start\n"
	"_start:\n"
	"	xor %rbp, %rbp\n"
	"	mov %rsp, %rdi\n"
	"	and $-16, %rsp\n"
	"	call start_c\n"
	"	hlt\n");
#elif defined(__aarch64__)
static long sys6(long n, long a, long b, long c, long d, long e, long f)
{
	register long x8 __asm__("x8") = n;
	register long x0 __asm__("x0") = a;
	register long x1 __asm__("x1") = b;
	register long x2 __asm__("x2") = c;
	register long x3 __asm__("x3") = d;
	register long x4 __asm__("x4") = e;
	register long x5 __asm__("x5") = f;
	__asm__ volatile("svc 0"
			 : "+r"(x0)
			 : "r"(x8), "r"(x1), "r"(x2), "r"(x3), "r"(x4), "r"(x5)
			 : "memory");
	return x0;
}

__asm__(".text\n"
	".global _start\n"
	"_start:\n"
	"	mov x29, #0\n"
	"	mov x30, #0\n"
	"	mov x0, sp\n"
	"	and sp, x0, #-16\n"
	"	bl start_c\n"
	"	brk #0\n");
#else
#error "shoal-init: only x86_64 and aarch64 are supported"
#endif

#define sys0(n) sys6(n, 0, 0, 0, 0, 0, 0)
#define sys1(n, a) sys6(n, (long)(a), 0, 0, 0, 0, 0)
#define sys2(n, a, b) sys6(n, (long)(a), (long)(b), 0, 0, 0, 0)
#define sys3(n, a, b, c) sys6(n, (long)(a), (long)(b), (long)(c), 0, 0, 0)
#define sys4(n, a, b, c, d) sys6(n, (long)(a), (long)(b), (long)(c), (long)(d), 0, 0)

/* The compiler may emit calls to these for struct copies and zeroing. */
void *memset(void *d, int c, ulong n)
{
	unsigned char *p = d;
	while (n--)
		*p++ = (unsigned char)c;
	return d;
}

void *memcpy(void *d, const void *s, ulong n)
{
	unsigned char *p = d;
	const unsigned char *q = s;
	while (n--)
		*p++ = *q++;
	return d;
}

static __attribute__((noreturn)) void die(int code)
{
	for (;;)
		sys1(__NR_exit_group, code);
}

/* -- signals --------------------------------------------------------------- */

#define SIGHUP 1
#define SIGILL 4
#define SIGTRAP 5
#define SIGABRT 6
#define SIGBUS 7
#define SIGFPE 8
#define SIGKILL 9
#define SIGSEGV 11
#define SIGCHLD 17
#define SIGSTOP 19
#define SIGTTIN 21
#define SIGTTOU 22
#define SIGSYS 31
#define NSIG 64

#define SIG_SETMASK 2
#define BIT(s) (1UL << ((s)-1))

/* Left out of the forwarded set, as tini leaves them: the synchronous faults
 * (blocking them would kill instead of deliver) and the two terminal stops,
 * which PID 1 ignores. */
#define UNTOUCHED (BIT(SIGKILL) | BIT(SIGSTOP) | BIT(SIGILL) | BIT(SIGTRAP) | BIT(SIGABRT) | \
		   BIT(SIGBUS) | BIT(SIGFPE) | BIT(SIGSEGV) | BIT(SIGSYS) | BIT(SIGTTIN) | BIT(SIGTTOU))

/* The kernel's struct sigaction (x86_64 and arm64 both have sa_restorer). */
struct ksigaction {
	ulong handler;
	ulong flags;
	ulong restorer;
	ulong mask;
};

static void set_disposition(int sig, ulong handler)
{
	struct ksigaction sa = {handler, 0, 0, 0};
	sys4(__NR_rt_sigaction, sig, &sa, 0, sizeof(ulong));
}

/* -- output ---------------------------------------------------------------- */

static ulong slen(const char *s)
{
	ulong n = 0;
	while (s[n])
		n++;
	return n;
}

static void puts2(const char *s)
{
	sys3(__NR_write, 2, s, slen(s));
}

/* strerror for what execve can say; anything else as "error N". */
static const char *reason(long err, char *buf)
{
	switch (err) {
	case ENOENT: return "No such file or directory";
	case EACCES: return "Permission denied";
	case ENOEXEC: return "Exec format error";
	case ENOTDIR: return "Not a directory";
	case EISDIR: return "Is a directory";
	case ELOOP: return "Too many levels of symbolic links";
	case ENAMETOOLONG: return "File name too long";
	case E2BIG: return "Argument list too long";
	case ENOMEM: return "Cannot allocate memory";
	case ETXTBSY: return "Text file busy";
	case EPERM: return "Operation not permitted";
	case EIO: return "Input/output error";
	case EINVAL: return "Invalid argument";
	case ELIBBAD: return "Accessing a corrupted shared library";
	}
	char *p = buf + 24;
	*--p = 0;
	do {
		*--p = (char)('0' + err % 10);
		err /= 10;
	} while (err && p > buf + 7);
	p -= 6;
	memcpy(p, "error ", 6);
	return p;
}

/* fail says "shoal-init: WHAT[NAME]: WHY[: reason]" and exits 126: the setup
 * of an exec's wrapper or of PID 1 failed before CMD ran. */
static __attribute__((noreturn)) void fail(const char *what, const char *name, const char *why, long err)
{
	char buf[24];
	puts2("shoal-init: ");
	puts2(what);
	if (name)
		puts2(name);
	puts2(": ");
	puts2(why);
	if (err) {
		puts2(": ");
		puts2(reason(-err, buf));
	}
	puts2("\n");
	die(126);
}

/* -- running CMD (in the child) --------------------------------------------- */

static int has_slash(const char *s)
{
	for (; *s; s++)
		if (*s == '/')
			return 1;
	return 0;
}

/* exec runs file as execvp does: straight when it has a slash, else through
 * each PATH entry (default "/bin:/usr/bin"), remembering EACCES; a file the
 * kernel cannot run (ENOEXEC) goes to /bin/sh as a script. Returns the errno
 * execvp would leave. */
static long exec_cmd(char **argv, char **envp)
{
	const char *file = argv[0];
	long err;
	if (has_slash(file)) {
		err = sys3(__NR_execve, file, argv, envp);
		goto noexec;
	}
	const char *path = "/bin:/usr/bin";
	for (char **e = envp; *e; e++) {
		const char *v = *e;
		if (v[0] == 'P' && v[1] == 'A' && v[2] == 'T' && v[3] == 'H' && v[4] == '=') {
			path = v + 5;
			break;
		}
	}
	ulong flen = slen(file);
	if (flen == 0)
		return -ENOENT;
	int seen_eacces = 0;
	char buf[4096];
	err = -ENOENT;
	for (const char *p = path;; p++) {
		const char *q = p;
		while (*q && *q != ':')
			q++;
		ulong dlen = (ulong)(q - p);
		if (dlen + 1 + flen + 1 <= sizeof(buf)) {
			ulong n = 0;
			if (dlen) {
				memcpy(buf, p, dlen);
				n = dlen;
				buf[n++] = '/';
			}
			memcpy(buf + n, file, flen + 1);
			err = sys3(__NR_execve, buf, argv, envp);
			if (err == -ENOEXEC) {
				file = buf;
				goto noexec;
			}
			if (err == -EACCES)
				seen_eacces = 1;
			else if (err != -ENOENT && err != -ENOTDIR && err != -ESTALE && err != -ENODEV && err != -ETIMEDOUT)
				return err;
		}
		if (!*q)
			break;
		p = q;
	}
	return seen_eacces ? -EACCES : err;

noexec:
	if (err == -ENOEXEC) {
		/* A script without #!: run it with /bin/sh, as execvp does. */
		int argc = 0;
		while (argv[argc])
			argc++;
		char *sh[argc + 2];
		sh[0] = (char *)"/bin/sh";
		sh[1] = (char *)file;
		for (int i = 1; i <= argc; i++)
			sh[i + 1] = argv[i];
		sys3(__NR_execve, "/bin/sh", sh, envp);
	}
	return err;
}

/* exec_or_die becomes CMD, or says why it could not and exits as docker
 * does: 127 when CMD is not found, 126 when it cannot be run. */
static __attribute__((noreturn)) void exec_or_die(char **argv, char **envp)
{
	long err = exec_cmd(argv, envp);
	char buf[24];
	puts2("shoal-init: exec ");
	puts2(argv[0]);
	puts2(" failed: ");
	puts2(reason(-err, buf));
	puts2("\n");
	die(err == -ENOENT ? 127 : 126);
}

static __attribute__((noreturn)) void child(char **argv, char **envp)
{
	/* Its own process group, the terminal's foreground one if stdin is a
	 * terminal (errors ignored: it is not one, or has no session). */
	sys2(__NR_setpgid, 0, 0);
	int pgrp = (int)sys0(__NR_getpid);
	set_disposition(SIGTTOU, 1); /* tcsetpgrp from a background group */
	sys3(__NR_ioctl, 0, TIOCSPGRP, &pgrp);
	set_disposition(SIGTTIN, 0);
	set_disposition(SIGTTOU, 0);
	ulong none = 0;
	sys4(__NR_rt_sigprocmask, SIG_SETMASK, &none, 0, sizeof(ulong));

	exec_or_die(argv, envp);
}

/* -- exec mode (see the top) ------------------------------------------------ */

#define RLIMITS_VAR "SHOAL_EXEC_RLIMITS="

/* rlimits_of returns the value of SHOAL_EXEC_RLIMITS in envp and removes the
 * variable from envp (the array is compacted in place), or 0. */
static const char *rlimits_of(char **envp)
{
	const char *val = 0;
	char **out = envp;
	for (char **e = envp; *e; e++) {
		const char *v = *e, *n = RLIMITS_VAR;
		while (*n && *v == *n)
			v++, n++;
		if (!*n) {
			val = v;
			continue;
		}
		*out++ = *e;
	}
	*out = 0;
	return val;
}

/* number parses decimal digits at *s up to a stop character; 0 when there
 * are none or too many. */
static int number(const char **s, ulong *v)
{
	const char *p = *s;
	ulong n = 0;
	int digits = 0;
	while (*p >= '0' && *p <= '9') {
		ulong d = (ulong)(*p - '0');
		if (n > (~0UL - d) / 10)
			return 0;
		n = n * 10 + d;
		p++;
		digits++;
	}
	if (!digits)
		return 0;
	*s = p;
	*v = n;
	return 1;
}


/* set_rlimits sets every RESOURCE:SOFT:HARD of spec on this process. */
static void set_rlimits(const char *spec)
{
	const char *p = spec;
	while (*p) {
		ulong res, lim[2];
		if (!number(&p, &res) || *p++ != ':' || !number(&p, &lim[0]) || *p++ != ':' ||
		    !number(&p, &lim[1]) || (*p && *p != ','))
			fail("SHOAL_EXEC_RLIMITS", 0, "want RESOURCE:SOFT:HARD,...", 0);
		long err = sys4(__NR_prlimit64, 0, res, lim, 0);
		if (err < 0)
			fail("SHOAL_EXEC_RLIMITS", 0, "setrlimit", err);
		if (*p == ',')
			p++;
	}
}

/* exec_mode sets the limits, if any, and becomes CMD. */
static __attribute__((noreturn)) void exec_mode(const char *spec, char **argv, char **envp)
{
	if (spec)
		set_rlimits(spec);
	exec_or_die(argv, envp);
}

/* -- the seccomp filter (see the top) --------------------------------------- */

#define SECCOMP_SET_MODE_FILTER 1
#define BPF_MAXINSNS 4096
#define O_RDONLY 0
#define O_CLOEXEC 02000000
#define SEEK_END 2
#define PROT_READ 1
#define MAP_PRIVATE 2

struct sock_fprog {
	unsigned short len;
	void *filter;
};


/* load_filter installs the classic BPF program in file (8-byte instructions,
 * as the kernel takes them) on this process. The file is mapped, not read
 * into memory of the init's own: its pages are the page cache's, shared by
 * every container, and gone again once the kernel has its copy. */
static void load_filter(const char *file)
{
	long fd = sys4(__NR_openat, -100 /* AT_FDCWD */, file, O_RDONLY | O_CLOEXEC, 0);
	if (fd < 0)
		fail("seccomp filter ", file, "open", fd);
	long size = sys3(__NR_lseek, fd, 0, SEEK_END);
	if (size < 0)
		fail("seccomp filter ", file, "size", size);
	if (size == 0 || size % 8 || size / 8 > BPF_MAXINSNS)
		fail("seccomp filter ", file, "not a filter program", 0);
	long map = sys6(__NR_mmap, 0, size, PROT_READ, MAP_PRIVATE, fd, 0);
	if (map < 0 && map > -4096)
		fail("seccomp filter ", file, "map", map);
	sys1(__NR_close, fd);
	struct sock_fprog prog = {(unsigned short)(size / 8), (void *)map};
	long err = sys3(__NR_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog);
	if (err < 0)
		fail("seccomp filter ", file, "install", err);
	sys2(__NR_munmap, map, size);
}

/* -- the capabilities an exec's wrapper gives up (see the top) -------------- */

#define PR_CAPBSET_DROP 24
#define CAP_VERSION_3 0x20080522

struct cap_header {
	unsigned int version;
	int pid;
};

struct cap_data {
	unsigned int effective, permitted, inheritable;
};


/* drop_caps takes the capabilities of the hex mask out of the bounding set
 * (highest first, so that CAP_SETPCAP, which the drops need, goes last),
 * the effective and the permitted set, and empties the inheritable set,
 * which empties the ambient one: a container's spec has neither (Docker's
 * way), and a wrapper run as another user than root had its two extra
 * capabilities there to keep them through its execve. */
static void drop_caps(const char *hex)
{
	ulong mask = 0;
	const char *p = hex;
	for (; *p; p++) {
		int d = *p >= '0' && *p <= '9' ? *p - '0' : *p >= 'a' && *p <= 'f' ? *p - 'a' + 10 : -1;
		if (d < 0 || mask >> 60)
			fail("capabilities", 0, "want a hex mask", 0);
		mask = mask << 4 | (ulong)d;
	}
	for (int c = 63; c >= 0; c--) {
		if (!(mask >> c & 1))
			continue;
		long err = sys6(__NR_prctl, PR_CAPBSET_DROP, c, 0, 0, 0, 0);
		if (err < 0)
			fail("capabilities", 0, "bounding set", err);
	}
	struct cap_header h = {CAP_VERSION_3, 0};
	struct cap_data d[2];
	long err = sys2(__NR_capget, &h, d);
	if (err < 0)
		fail("capabilities", 0, "capget", err);
	for (int i = 0; i < 2; i++) {
		unsigned int keep = ~(unsigned int)(mask >> (32 * i));
		d[i].effective &= keep;
		d[i].permitted &= keep;
		d[i].inheritable = 0;
	}
	err = sys2(__NR_capset, &h, d);
	if (err < 0)
		fail("capabilities", 0, "capset", err);
}

/* -- PID 1 ----------------------------------------------------------------- */

/* exit_code is CMD's status as a shell reports it. */
static int exit_code(int status)
{
	if ((status & 0x7f) == 0)
		return (status >> 8) & 0xff;
	return 128 + (status & 0x7f);
}

__attribute__((used, noreturn)) void start_c(long *sp)
{
	int argc = (int)sp[0];
	char **argv = (char **)(sp + 1);
	char **envp = argv + argc + 1;

	int first = 1, usage = 0;
	const char *filter = 0, *extra = 0;
	/* Options, each with a value, then "--"; without options "--" may be
	 * left out (CMD is then argv[1]). */
	while (first + 1 < argc && argv[first][0] == '-' &&
	       (argv[first][1] == 's' || argv[first][1] == 'x') && argv[first][2] == 0) {
		if (argv[first][1] == 's')
			filter = argv[first + 1];
		else
			extra = argv[first + 1];
		first += 2;
	}
	if (argc > first && argv[first][0] == '-' && argv[first][1] == '-' && argv[first][2] == 0)
		first++;
	else if (filter || extra)
		usage = 1;
	if (argc <= first || usage || (extra && !filter)) {
		puts2("usage: shoal-init [-s FILTER [-x CAPS]] -- CMD [ARG...]\n");
		die(2);
	}
	if (filter)
		load_filter(filter);
	if (extra)
		drop_caps(extra);

	/* PID 1 never takes the exec mode, whatever its environment says. */
	if (sys0(__NR_getpid) != 1) {
		const char *spec = rlimits_of(envp);
		if (spec || filter)
			exec_mode(spec, argv + first, envp);
	}

	ulong forwarded = ~UNTOUCHED;
	sys4(__NR_rt_sigprocmask, SIG_SETMASK, &forwarded, 0, sizeof(ulong));
	set_disposition(SIGTTIN, 1);
	set_disposition(SIGTTOU, 1);

	long pid = sys6(__NR_clone, SIGCHLD, 0, 0, 0, 0, 0);
	if (pid < 0) {
		char buf[24];
		puts2("shoal-init: fork: ");
		puts2(reason(-pid, buf));
		puts2("\n");
		die(1);
	}
	if (pid == 0)
		child(argv + first, envp);

	for (;;) {
		/* siginfo_t is 128 bytes; only si_signo (the first int) is read. */
		int info[32];
		long sig = sys4(__NR_rt_sigtimedwait, &forwarded, info, 0, sizeof(ulong));
		if (sig < 0)
			continue; /* EINTR (a stop/continue) */
		if (sig != SIGCHLD) {
			sys2(__NR_kill, pid, sig);
			continue;
		}
		for (;;) {
			int status = 0;
			long r = sys4(__NR_wait4, -1, &status, WNOHANG, 0);
			if (r <= 0)
				break;
			if (r == pid) {
				/* Reap what is already dead, then leave: the kernel
				 * kills the rest of the namespace with us. */
				int other;
				while (sys4(__NR_wait4, -1, &other, WNOHANG, 0) > 0)
					;
				die(exit_code(status));
			}
		}
	}
}
