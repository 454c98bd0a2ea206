/* The agent under test, as a child process: its config, its start (timed
 * from fork to the first FetchToken answered with a token), its stop, and
 * what /proc says about its memory and CPU time. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

#define AGENTPROC_STOP_MS 10000
/* How often the start is probed: the resolution of the ready time. */
#define AGENTPROC_PROBE_US 250u

int agentproc_sample(pid_t pid, struct agentproc_stats *ret)
{
    char path[64], buf[4096];
    struct agentproc_stats s = {0};
    (void)snprintf(path, sizeof(path), "/proc/%ld/status", (long)pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return -errno;
    bool rss = false, hwm = false, anon = false;
    while (fgets(buf, sizeof(buf), f)) {
        unsigned long long v;
        if (sscanf(buf, "VmRSS: %llu kB", &v) == 1) {
            s.rss_kib = v;
            rss = true;
        } else if (sscanf(buf, "VmHWM: %llu kB", &v) == 1) {
            s.hwm_kib = v;
            hwm = true;
        } else if (sscanf(buf, "RssAnon: %llu kB", &v) == 1) {
            s.anon_kib = v;
            anon = true;
        }
    }
    (void)fclose(f);
    if (!rss || !hwm || !anon)
        return -ESRCH; /* a zombie has no memory lines */

    /* The process's CPU clock is utime + stime to the nanosecond (the
     * ticks of /proc/PID/stat are 10 ms apart, too coarse for a start). */
    clockid_t clk;
    struct timespec ts;
    if (clock_getcpuclockid(pid, &clk) == 0 && clock_gettime(clk, &ts) == 0) {
        s.cpu_ms = (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
        *ret = s;
        return 0;
    }
    (void)snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    (void)close(fd);
    if (n <= 0)
        return -EIO;
    buf[n] = '\0';
    /* utime and stime are fields 14 and 15; comm (field 2) may hold spaces,
     * so count from the last ')'. */
    const char *p = strrchr(buf, ')');
    unsigned long long utime, stime;
    if (!p ||
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime, &stime) != 2)
        return -EIO;
    long hz = sysconf(_SC_CLK_TCK);
    s.cpu_ms = (double)(utime + stime) * 1000.0 / (double)(hz > 0 ? hz : 100);
    *ret = s;
    return 0;
}

int agentproc_prepare(struct agentproc *a, const char *dir, unsigned workers,
                      const char *plugin_dir, char *err, size_t err_len)
{
    *a = (struct agentproc){.pid = -1};
    if ((size_t)snprintf(a->dir, sizeof(a->dir), "%s", dir) >= sizeof(a->dir) - 32) {
        (void)snprintf(err, err_len, "the directory name %s is too long", dir);
        return -ENAMETOOLONG;
    }
    (void)snprintf(a->sock, sizeof(a->sock), "%s/agent.sock", dir);
    (void)snprintf(a->data, sizeof(a->data), "%s/data", dir);
    (void)snprintf(a->conf, sizeof(a->conf), "%s/agent.conf", dir);
    (void)snprintf(a->log, sizeof(a->log), "%s/agent.log", dir);
    if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
        int e = errno;
        (void)snprintf(err, err_len, "cannot create %s: %s", dir, strerror(e));
        return -e;
    }
    FILE *f = fopen(a->conf, "we");
    if (!f) {
        int e = errno;
        (void)snprintf(err, err_len, "cannot create %s: %s", a->conf, strerror(e));
        return -e;
    }
    /* Room for the 1,000 held connections (one uid: the bench's), and
     * idle limits far above a round so that no held connection is closed
     * under the bench. */
    fprintf(f,
            "[agent]\n"
            "socket = %s/agent.sock\n"
            "admin_socket = %s/admin.sock\n"
            "data_dir = %s\n"
            "trust_domain = " BENCH_TRUST_DOMAIN "\n"
            "workers = %u\n"
            "max_connections = 8192\n"
            "max_connections_per_uid = 4096\n"
            "idle_timeout_ms = 600000\n",
            dir, dir, a->data, workers);
    if (plugin_dir)
        fprintf(f, "plugin_dir = %s\n", plugin_dir);
    if (fclose(f) != 0) {
        int e = errno;
        (void)snprintf(err, err_len, "cannot write %s: %s", a->conf, strerror(e));
        return -e;
    }
    return 0;
}

void agentproc_dump_log(const struct agentproc *a)
{
    FILE *f = fopen(a->log, "re");
    if (!f)
        return;
    char line[2048];
    fprintf(stderr, "---- %s ----\n", a->log);
    while (fgets(line, sizeof(line), f))
        fputs(line, stderr);
    fprintf(stderr, "---- end ----\n");
    (void)fclose(f);
}

int agentproc_start(struct agentproc *a, const char *exe, int timeout_ms, char *err, size_t err_len)
{
    int log_fd = open(a->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (log_fd < 0) {
        int e = errno;
        (void)snprintf(err, err_len, "cannot create %s: %s", a->log, strerror(e));
        return -e;
    }
    pid_t parent = getpid();
    uint64_t t0 = wire_now_ns();
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        (void)close(log_fd);
        (void)snprintf(err, err_len, "fork: %s", strerror(e));
        return -e;
    }
    if (pid == 0) {
        /* Dies with the bench, whatever kills the bench. */
        (void)prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        int null_fd = open("/dev/null", O_RDWR);
        if (null_fd < 0 || dup2(null_fd, 0) < 0 || dup2(null_fd, 1) < 0 || dup2(log_fd, 2) < 0)
            _exit(127);
        sigset_t none;
        sigemptyset(&none);
        (void)sigprocmask(SIG_SETMASK, &none, NULL);
        execl(exe, exe, "--config", a->conf, (char *)NULL);
        dprintf(2, "cannot run %s: %s\n", exe, strerror(errno));
        _exit(127);
    }
    (void)close(log_fd);
    a->pid = pid;

    uint64_t deadline = t0 + (uint64_t)timeout_ms * 1000000u;
    char why[256] = "";
    for (;;) {
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            a->pid = -1;
            (void)snprintf(err, err_len, "%s exited during startup (status 0x%x); see %s", exe,
                           (unsigned)status, a->log);
            return -ECHILD;
        }
        int r = wire_once(a->sock, BENCH_FETCH, NULL, 0, NULL, why, sizeof(why));
        uint64_t now = wire_now_ns();
        if (r == 0) {
            a->ready_ms = (double)(now - t0) / 1e6;
            return 0;
        }
        /* No socket yet, or not listening yet: keep probing. Anything
         * else is an answer that is wrong. */
        if (r != -ENOENT && r != -ECONNREFUSED) {
            (void)agentproc_stop(a);
            (void)snprintf(err, err_len, "the agent's first answer was wrong: %s", why);
            return r;
        }
        if (now >= deadline) {
            (void)agentproc_stop(a);
            (void)snprintf(err, err_len, "the agent did not answer on %s within %d ms", a->sock,
                           timeout_ms);
            return -ETIMEDOUT;
        }
        wire_sleep_us(AGENTPROC_PROBE_US);
    }
}

int agentproc_stop(struct agentproc *a)
{
    if (a->pid <= 0)
        return 0;
    int status = 0;
    (void)kill(a->pid, SIGTERM);
    uint64_t deadline = wire_now_ns() + (uint64_t)AGENTPROC_STOP_MS * 1000000u;
    for (;;) {
        pid_t w = waitpid(a->pid, &status, WNOHANG);
        if (w == a->pid)
            break;
        if (w < 0 && errno != EINTR) {
            a->pid = -1;
            return -errno;
        }
        if (wire_now_ns() >= deadline) {
            (void)kill(a->pid, SIGKILL);
            while (waitpid(a->pid, &status, 0) < 0 && errno == EINTR)
                ;
            a->pid = -1;
            return -ETIMEDOUT;
        }
        wire_sleep_us(2000);
    }
    a->pid = -1;
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -ECHILD;
}
