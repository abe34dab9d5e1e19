/* The native `vboxmanage` launcher: runs the command in a fork of a resident command server
 * (frontends/vboxmanage/cmdserver.py) when one serves this caller's context, else starts the CLI
 * directly (`python3 -IS` with the checkout's search path) and starts a server for the next run.
 *
 * The server's socket is named by a key over everything a forked child could not take from the
 * request: uid/gids/groups, namespaces, root directory, resource limits, nice value, CPU affinity,
 * capabilities, cgroup, security label, the interpreter and its search path, and the locale
 * variables (the text encoding is fixed when the interpreter starts). It lives in
 * $XDG_RUNTIME_DIR/vboxpy (or /tmp/vboxpy-<uid>), a folder of ours with mode 0700.
 *
 * Forwarded to the running command: SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH,
 * SIGCONT, SIGALRM; SIGTSTP stops the command (SIGSTOP: it runs outside the terminal's job control)
 * and then this process, so the shell's job control sees the usual stop; SIGCONT resumes both.
 * If this process dies (even by SIGKILL), the server kills the command; if the server dies, this
 * process waits for the command to end and fails (its exit status went with the server).
 *
 * Environment:
 *   VBOXPY_NO_CMDSERVER=1       start directly, never start a server
 *   VBOXPY_CMDSERVER_TRACE=FILE append the route taken ("server <pid> child <pid>" / "direct <why>")
 *   VBOXPY_CMDSERVER_IDLE_S=N   the server started now exits after N s without requests (default 60)
 * The configuration (interpreter, programs, search path) comes from launcher_config.h, written by
 * scripts/write_launchers.py when it compiles this file.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/capability.h>

#include "launcher_config.h"

extern char **environ;

#define MAX_FDS 250
#define PROTOCOL 1

struct header {
    char magic[4];
    uint32_t version, body_len, argc, envc, nfds, umask, zero;
    uint64_t ignored, mask;
} __attribute__((packed));

struct reply {
    char tag[4];
    int32_t a, b, pad;
};

static const int FORWARDED[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH,
                                SIGCONT, SIGALRM, SIGTSTP};
#define NFORWARDED (int)(sizeof FORWARDED / sizeof FORWARDED[0])

static int g_argc;
static char **g_argv;
static int wake_w = -1;

static void trace(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void trace(const char *fmt, ...)
{
    const char *path = getenv("VBOXPY_CMDSERVER_TRACE");
    if (!path || !*path)
        return;
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return;
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf - 1, fmt, ap);
    va_end(ap);
    if (n > (int)sizeof buf - 2)
        n = sizeof buf - 2;
    buf[n++] = '\n';
    if (write(fd, buf, n) < 0) { /* tracing is best effort */ }
    close(fd);
}

/* The direct start: what the Python launcher does, with this process's argv. */
static void __attribute__((noreturn)) direct(const char *why)
{
    trace("direct %s", why);
    char **args = calloc(g_argc + 5, sizeof *args);
    if (!args)
        _exit(127);
    int n = 0;
    args[n++] = (char *)VBX_PYTHON;
    args[n++] = "-IS";
    args[n++] = "-c";
    args[n++] = (char *)VBX_DIRECT_CODE;
    for (int i = 0; i < g_argc; i++)
        args[n++] = g_argv[i];
    args[n] = NULL;
    execv(VBX_PYTHON, args);
    fprintf(stderr, "%s: cannot run %s: %s\n", g_argv[0], VBX_PYTHON, strerror(errno));
    _exit(127);
}

/* ---------------------------------------------------------------------------- the key */
struct hash { uint64_t a, b; };

static void mix(struct hash *h, const void *data, size_t len)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++) {
        h->a = (h->a ^ p[i]) * 0x100000001b3ULL;
        h->b = (h->b ^ p[i]) * 0x100000001b3ULL;
        h->b ^= h->b >> 29;
    }
    unsigned char sep = 0xff;
    h->a = (h->a ^ sep) * 0x100000001b3ULL;
    h->b = (h->b ^ sep) * 0x100000001b3ULL;
}

static void mix_str(struct hash *h, const char *s)
{
    if (s)
        mix(h, s, strlen(s) + 1);
    else
        mix(h, "", 0);
}

static void mix_file(struct hash *h, const char *path)
{
    char buf[4096];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 ? read(fd, buf, sizeof buf) : -1;
    if (fd >= 0)
        close(fd);
    mix(h, buf, n > 0 ? (size_t)n : 0);
}

static void key_of(char out[33])
{
    struct hash h = {0xcbf29ce484222325ULL, 0x84222325cbf29ce4ULL};
    uid_t r, e, s;
    gid_t gr, ge, gs;
    getresuid(&r, &e, &s);
    getresgid(&gr, &ge, &gs);
    uid_t ids[6] = {r, e, s, gr, ge, gs};
    mix(&h, ids, sizeof ids);
    gid_t groups[NGROUPS_MAX];
    int ng = getgroups(NGROUPS_MAX, groups);
    mix(&h, groups, ng > 0 ? ng * sizeof(gid_t) : 0);
    static const char *NS[] = {"mnt", "net", "pid", "user", "ipc", "uts", "cgroup", "time"};
    for (size_t i = 0; i < sizeof NS / sizeof NS[0]; i++) {
        char path[64];
        struct stat st;
        snprintf(path, sizeof path, "/proc/self/ns/%s", NS[i]);
        dev_t ids2[2] = {0, 0};
        if (stat(path, &st) == 0) {
            ids2[0] = st.st_dev;
            ids2[1] = st.st_ino;
        }
        mix(&h, ids2, sizeof ids2);
    }
    struct stat root;
    dev_t rootid[2] = {0, 0};
    if (stat("/", &root) == 0) {
        rootid[0] = root.st_dev;
        rootid[1] = root.st_ino;
    }
    mix(&h, rootid, sizeof rootid);
    mix_str(&h, VBX_PYTHON);
    mix_str(&h, VBX_DIRECT_CODE);
    mix_str(&h, VBX_SERVER_CODE);
    mix_str(&h, getenv("LC_ALL"));
    mix_str(&h, getenv("LC_CTYPE"));
    mix_str(&h, getenv("LANG"));
    for (int res = 0; res < RLIM_NLIMITS; res++) {
        struct rlimit rl = {0, 0};
        getrlimit(res, &rl);
        mix(&h, &rl, sizeof rl);
    }
    errno = 0;
    int nice = getpriority(PRIO_PROCESS, 0);
    int sched[3] = {nice, sched_getscheduler(0), personality(0xffffffff)};
    mix(&h, sched, sizeof sched);
    cpu_set_t cpus;
    CPU_ZERO(&cpus);
    sched_getaffinity(0, sizeof cpus, &cpus);
    mix(&h, &cpus, sizeof cpus);
    struct __user_cap_header_struct caphead = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct caps[2];
    memset(caps, 0, sizeof caps);
    syscall(SYS_capget, &caphead, caps);
    mix(&h, caps, sizeof caps);
    int flags[3] = {prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0), prctl(PR_GET_SECUREBITS, 0, 0, 0, 0),
                    prctl(PR_GET_SECCOMP, 0, 0, 0, 0)};
    mix(&h, flags, sizeof flags);
    mix_file(&h, "/proc/self/cgroup");
    mix_file(&h, "/proc/self/attr/current");
    mix_file(&h, "/proc/self/oom_score_adj");
    snprintf(out, 33, "%016llx%016llx", (unsigned long long)h.a, (unsigned long long)h.b);
}

/* $XDG_RUNTIME_DIR/vboxpy or /tmp/vboxpy-<uid>: ours, a folder, not a link, mode 0700. */
static int runtime_dir(char *dir, size_t size)
{
    const char *xdg = getenv("XDG_RUNTIME_DIR");
    int n;
    if (xdg && xdg[0] == '/')
        n = snprintf(dir, size, "%s/vboxpy", xdg);
    else
        n = snprintf(dir, size, "/tmp/vboxpy-%u", (unsigned)getuid());
    if (n <= 0 || (size_t)n >= size)
        return 0;
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        return 0;
    struct stat st;
    if (lstat(dir, &st) != 0 || !S_ISDIR(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & 077))
        return 0;
    return 1;
}

/* ---------------------------------------------------------------------------- starting a server */
static void spawn_server(const char *sock_path, const char *lock_path)
{
    const char *opt = getenv("VBOXPY_NO_CMDSERVER");
    if (opt && *opt && strcmp(opt, "0") != 0)
        return;
    int lfd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (lfd < 0)
        return;
    if (flock(lfd, LOCK_EX | LOCK_NB) != 0) {  /* a server of this key runs or is starting */
        close(lfd);
        return;
    }
    close(lfd);
    pid_t pid = fork();
    if (pid < 0)
        return;
    if (pid == 0) {
        setsid();
        if (fork() != 0)
            _exit(0);
        sigset_t none;
        sigemptyset(&none);
        for (int sig = 1; sig < NSIG; sig++)
            signal(sig, SIG_DFL);
        sigprocmask(SIG_SETMASK, &none, NULL);
        if (chdir("/") != 0)
            _exit(127);
        int null = open("/dev/null", O_RDWR);
        if (null < 0)
            _exit(127);
        dup2(null, 0);
        dup2(null, 1);
        dup2(null, 2);
        if (syscall(SYS_close_range, 3U, ~0U, 0U) != 0) {
            long max = sysconf(_SC_OPEN_MAX);
            for (long fd = 3; fd < (max > 0 && max < 65536 ? max : 65536); fd++)
                close((int)fd);
        }
        char *args[] = {(char *)VBX_PYTHON, "-IS", "-c", (char *)VBX_SERVER_CODE, (char *)sock_path,
                        (char *)lock_path, (char *)VBX_DIRECT_CODE, NULL};
        execv(VBX_PYTHON, args);
        _exit(127);
    }
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
        ;
}

/* ---------------------------------------------------------------------------- the request */
static void on_signal(int sig)
{
    int saved = errno;
    unsigned char b = (unsigned char)sig;
    if (write(wake_w, &b, 1) < 0) { /* the pipe is full: the signal is pending anyway */ }
    errno = saved;
}

static int send_all(int fd, const char *p, size_t len)
{
    while (len) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return 0;
        }
        p += n;
        len -= n;
    }
    return 1;
}

/* The server died (killed) while the command runs: the command goes on as the orphan of no one we
 * can ask for its status. Wait for its end (signals still forwarded), as the caller of a direct start
 * would, then fail: the exit status is lost with the server. */
static void __attribute__((noreturn)) orphaned(int child_fd, pid_t child, int wake_r, const char *prog)
{
    while (child_fd >= 0) {
        struct pollfd pf[2] = {{child_fd, POLLIN, 0}, {wake_r, POLLIN, 0}};
        if (poll(pf, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (pf[0].revents)
            break;
        unsigned char sigs[64];
        ssize_t n = read(wake_r, sigs, sizeof sigs);
        for (ssize_t i = 0; i < n; i++)
            kill(child, sigs[i] == SIGTSTP ? SIGSTOP : sigs[i]);
    }
    fprintf(stderr, "%s: the command server went away while running the command; its exit status is lost\n",
            prog);
    _exit(1);
}

static void __attribute__((noreturn)) finish(int kind, int value)
{
    if (kind == 1) {
        signal(value, SIG_DFL);
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, value);
        sigprocmask(SIG_UNBLOCK, &set, NULL);
        raise(value);
        _exit(128 + value);
    }
    _exit(value & 0xff);
}

int main(int argc, char **argv)
{
    g_argc = argc;
    g_argv = argv;
    const char *opt = getenv("VBOXPY_NO_CMDSERVER");
    if (opt && *opt && strcmp(opt, "0") != 0)
        direct("opted-out");
    if (getuid() != geteuid() || getgid() != getegid())
        direct("set-id");

    /* the caller's descriptors, before this process opens any */
    int fds[MAX_FDS + 1], targets[MAX_FDS + 1], nfds = 0;
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        direct("no-proc");
    struct dirent *ent;
    while ((ent = readdir(d)) != NULL) {
        if (ent->d_name[0] == '.')
            continue;
        int fd = atoi(ent->d_name);
        if (fd == dirfd(d))
            continue;
        if (nfds >= MAX_FDS) {
            closedir(d);
            direct("too-many-fds");
        }
        fds[nfds] = fd;
        targets[nfds++] = fd;
    }
    closedir(d);

    char dir[256], sock_path[sizeof(((struct sockaddr_un *)0)->sun_path)], lock_path[300], key[33];
    if (!runtime_dir(dir, sizeof dir))
        direct("no-runtime-folder");
    key_of(key);
    if ((size_t)snprintf(sock_path, sizeof sock_path, "%s/cmd-%s.sock", dir, key) >= sizeof sock_path)
        direct("socket-path-too-long");
    snprintf(lock_path, sizeof lock_path, "%s/cmd-%s.lock", dir, key);

    int sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (sock < 0)
        direct("socket");
    struct sockaddr_un addr;
    memset(&addr, 0, sizeof addr);
    addr.sun_family = AF_UNIX;
    strcpy(addr.sun_path, sock_path);
    if (connect(sock, (struct sockaddr *)&addr, sizeof addr) != 0) {
        close(sock);
        spawn_server(sock_path, lock_path);
        direct("no-server");
    }
    struct ucred cred;
    socklen_t clen = sizeof cred;
    if (getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &cred, &clen) != 0 || cred.uid != getuid())
        direct("not-our-server");

    int cwd = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (cwd < 0)
        direct("no-cwd");
    fds[nfds] = cwd;
    targets[nfds++] = -1;

    /* the signals: which the caller ignores and blocks (the command inherits both) */
    uint64_t ignored = 0, mask = 0;
    sigset_t cur;
    sigprocmask(SIG_SETMASK, NULL, &cur);
    for (int sig = 1; sig < 64 && sig < NSIG; sig++) {
        struct sigaction sa;
        if (sig < 32 && sigaction(sig, NULL, &sa) == 0 && sa.sa_handler == SIG_IGN)
            ignored |= 1ULL << (sig - 1);
        if (sigismember(&cur, sig) == 1)
            mask |= 1ULL << (sig - 1);
    }
    int wake[2];
    if (pipe2(wake, O_CLOEXEC | O_NONBLOCK) != 0)
        direct("pipe");
    wake_w = wake[1];
    for (int i = 0; i < NFORWARDED; i++) {
        int sig = FORWARDED[i];
        if (ignored & (1ULL << (sig - 1)))
            continue;
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_signal;
        sa.sa_flags = SA_RESTART;
        sigaction(sig, &sa, NULL);
    }

    /* header + argv + environment + descriptor numbers, the descriptors attached */
    size_t body = 0, envc = 0;
    for (int i = 0; i < argc; i++)
        body += strlen(argv[i]) + 1;
    for (char **e = environ; *e; e++, envc++)
        body += strlen(*e) + 1;
    body += nfds * sizeof(int32_t);
    if (body > (8u << 20))
        direct("request-too-large");
    char *msg = malloc(sizeof(struct header) + body);
    if (!msg)
        direct("memory");
    mode_t um = umask(0);
    umask(um);
    struct header hd = {{'V', 'B', 'X', 'R'}, PROTOCOL, (uint32_t)body, (uint32_t)argc, (uint32_t)envc,
                        (uint32_t)nfds, (uint32_t)um, 0, ignored, mask};
    memcpy(msg, &hd, sizeof hd);
    char *p = msg + sizeof hd;
    for (int i = 0; i < argc; i++) {
        size_t n = strlen(argv[i]) + 1;
        memcpy(p, argv[i], n);
        p += n;
    }
    for (char **e = environ; *e; e++) {
        size_t n = strlen(*e) + 1;
        memcpy(p, *e, n);
        p += n;
    }
    for (int i = 0; i < nfds; i++) {
        int32_t t = targets[i];
        memcpy(p, &t, sizeof t);
        p += sizeof t;
    }
    size_t total = sizeof hd + body;
    size_t first = total < 4096 ? total : 4096;
    char control[CMSG_SPACE(sizeof(int) * (MAX_FDS + 1))];
    memset(control, 0, sizeof control);
    struct iovec iov = {msg, first};
    struct msghdr mh;
    memset(&mh, 0, sizeof mh);
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = control;
    mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
    struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
    memcpy(CMSG_DATA(cm), fds, sizeof(int) * nfds);
    ssize_t sent;
    do
        sent = sendmsg(sock, &mh, MSG_NOSIGNAL);
    while (sent < 0 && errno == EINTR);
    if (sent <= 0 || !send_all(sock, msg + sent, total - sent))
        direct("send");
    free(msg);
    close(cwd);

    /* replies and signals until the command's status arrives */
    pid_t child = 0, server = cred.pid;
    int child_fd = -1;
    int running = 0;
    unsigned char pending[64];
    int npending = 0;
    char in[sizeof(struct reply)];
    size_t have = 0;
    for (;;) {
        struct pollfd pf[2] = {{sock, POLLIN, 0}, {wake[0], POLLIN, 0}};
        if (poll(pf, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (pf[1].revents & POLLIN) {
            unsigned char sigs[64];
            ssize_t n = read(wake[0], sigs, sizeof sigs);
            for (ssize_t i = 0; i < n; i++) {
                if (!child) {
                    if (npending < (int)sizeof pending)
                        pending[npending++] = sigs[i];
                    continue;
                }
                if (sigs[i] == SIGTSTP) {
                    kill(child, SIGSTOP);
                    signal(SIGTSTP, SIG_DFL);
                    raise(SIGTSTP);   /* stops here until SIGCONT */
                    struct sigaction sa;
                    memset(&sa, 0, sizeof sa);
                    sa.sa_handler = on_signal;
                    sa.sa_flags = SA_RESTART;
                    sigaction(SIGTSTP, &sa, NULL);
                } else {
                    kill(child, sigs[i]);
                }
            }
        }
        if (pf[0].revents & (POLLIN | POLLHUP | POLLERR)) {
            ssize_t n = read(sock, in + have, sizeof in - have);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0) {
                if (running)
                    orphaned(child_fd, child, wake[0], argv[0]);
                spawn_server(sock_path, lock_path);
                direct("server-closed");
            }
            have += n;
            if (have < sizeof in)
                continue;
            have = 0;
            struct reply r;
            memcpy(&r, in, sizeof r);
            if (!memcmp(r.tag, "PID ", 4)) {
                child = r.a;
                /* taken now, while the command is surely alive: its pid cannot be another's yet */
                child_fd = (int)syscall(SYS_pidfd_open, child, 0);
                for (int i = 0; i < npending; i++)
                    kill(child, pending[i]);
                npending = 0;
            } else if (!memcmp(r.tag, "RUN ", 4)) {
                running = 1;
                trace("server %d child %d", (int)server, (int)child);
            } else if (!memcmp(r.tag, "EXIT", 4)) {
                finish(r.a, r.b);
            } else if (!memcmp(r.tag, "STAL", 4)) {
                close(sock);
                spawn_server(sock_path, lock_path);
                direct("server-stale");
            } else if (!running) {   /* FAIL, or anything we do not know */
                direct("child-setup-failed");
            }
        }
    }
    if (running)
        _exit(1);
    direct("poll");
}
