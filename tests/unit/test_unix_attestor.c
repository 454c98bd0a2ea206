/* The unix attestor plugin, loaded as the agent loads it (dlopen of the built
 * unix.so) and run on this test process and on children it starts. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <pwd.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <sockid/attestor.h>

#ifndef UNIX_PLUGIN_PATH
#error "UNIX_PLUGIN_PATH must name the built unix.so"
#endif

#define FAR_DEADLINE  UINT64_MAX
#define PAST_DEADLINE UINT64_C(1)
#define COLLECT_MAX   256
#define SEL_MAX       (SOCKID_SELECTOR_TYPE_MAX + SOCKID_SELECTOR_KEY_MAX + SOCKID_SELECTOR_VALUE_MAX + 3)

static void *plugin_handle;
static const struct sockid_attestor *plugin;

/* What emit() received, and how it should misbehave. */
struct collect {
    size_t n;
    char items[COLLECT_MAX][SEL_MAX];
    size_t calls;
    size_t fail_at; /* 1-based call that returns fail_rc; 0: none */
    int fail_rc;
    const char *refuse_key; /* calls with this key return refuse_rc */
    int refuse_rc;
};

static int collect_emit(void *ctx, const char *type, const char *key, const char *value)
{
    struct collect *c = ctx;
    c->calls++;
    if (c->fail_at && c->calls == c->fail_at)
        return c->fail_rc;
    if (c->refuse_key && strcmp(key, c->refuse_key) == 0)
        return c->refuse_rc;
    assert_string_equal(type, "unix");
    assert_true(key[0] != '\0');
    assert_null(strchr(key, ':'));
    assert_true(value[0] != '\0');
    assert_true(strlen(value) <= SOCKID_SELECTOR_VALUE_MAX);
    assert_true(c->n < COLLECT_MAX);
    (void)snprintf(c->items[c->n++], SEL_MAX, "%s:%s:%s", type, key, value);
    return 0;
}

static bool collect_has(const struct collect *c, const char *sel)
{
    for (size_t i = 0; i < c->n; i++)
        if (strcmp(c->items[i], sel) == 0)
            return true;
    return false;
}

static bool collect_hasf(const struct collect *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static bool collect_hasf(const struct collect *c, const char *fmt, ...)
{
    char buf[SEL_MAX];
    va_list ap;
    va_start(ap, fmt);
    (void)vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    return collect_has(c, buf);
}

/* The value of the only selector starting with prefix, NULL if none. */
static const char *collect_value(const struct collect *c, const char *prefix)
{
    const char *found = NULL;
    for (size_t i = 0; i < c->n; i++) {
        if (strncmp(c->items[i], prefix, strlen(prefix)) == 0) {
            assert_null(found);
            found = c->items[i] + strlen(prefix);
        }
    }
    return found;
}

static size_t collect_count(const struct collect *c, const char *prefix)
{
    size_t n = 0;
    for (size_t i = 0; i < c->n; i++)
        if (strncmp(c->items[i], prefix, strlen(prefix)) == 0)
            n++;
    return n;
}

static int group_setup(void **state)
{
    (void)state;
    plugin_handle = dlopen(UNIX_PLUGIN_PATH, RTLD_NOW | RTLD_LOCAL);
    if (!plugin_handle) {
        fprintf(stderr, "dlopen %s: %s\n", UNIX_PLUGIN_PATH, dlerror());
        return -1;
    }
    sockid_attestor_entry_fn entry;
    *(void **)&entry = dlsym(plugin_handle, SOCKID_ATTESTOR_SYMBOL);
    if (!entry)
        return -1;
    plugin = entry();
    return plugin ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    if (plugin_handle)
        (void)dlclose(plugin_handle);
    return 0;
}

/* init with key=value pairs (NULL-terminated list). */
static int plugin_init(void **ret_state, char *err, size_t err_len, ...)
{
    const char *keys[8], *values[8];
    size_t n = 0;
    va_list ap;
    va_start(ap, err_len);
    for (const char *k; (k = va_arg(ap, const char *));) {
        assert_true(n < 8);
        keys[n] = k;
        values[n] = va_arg(ap, const char *);
        n++;
    }
    va_end(ap);
    struct sockid_attestor_config cfg = {
        .struct_size = sizeof(cfg), .n = n, .keys = keys, .values = values};
    return plugin->init(&cfg, ret_state, err, err_len);
}

static void *plugin_init_ok(const char *sha256, const char *max_bytes)
{
    void *st = NULL;
    char err[256] = "";
    int r;
    if (sha256 && max_bytes)
        r = plugin_init(&st, err, sizeof(err), "sha256", sha256, "sha256_max_bytes", max_bytes,
                        NULL);
    else if (sha256)
        r = plugin_init(&st, err, sizeof(err), "sha256", sha256, NULL);
    else
        r = plugin_init(&st, err, sizeof(err), NULL);
    if (r != 0)
        fprintf(stderr, "init: %s\n", err);
    assert_int_equal(r, 0);
    assert_non_null(st);
    return st;
}

struct peer_view {
    struct sockid_peer peer;
    uint32_t groups[NGROUPS_MAX];
};

static void peer_of_pid(struct peer_view *v, pid_t pid, uint32_t uid, uint32_t gid)
{
    char path[64];
    memset(v, 0, sizeof(*v));
    if (pid == getpid())
        (void)snprintf(path, sizeof(path), "/proc/self");
    else
        (void)snprintf(path, sizeof(path), "/proc/%d", (int)pid);
    v->peer.struct_size = sizeof(v->peer);
    v->peer.pid = pid;
    v->peer.uid = uid;
    v->peer.gid = gid;
    v->peer.groups = v->groups;
    v->peer.proc_dirfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    assert_true(v->peer.proc_dirfd >= 0);
    v->peer.deadline_ns = FAR_DEADLINE;
}

static void peer_self(struct peer_view *v)
{
    gid_t g[NGROUPS_MAX];
    peer_of_pid(v, getpid(), geteuid(), getegid());
    int n = getgroups(NGROUPS_MAX, g);
    assert_true(n >= 0);
    for (int i = 0; i < n; i++)
        v->groups[i] = g[i];
    v->peer.n_groups = (size_t)n;
}

static void peer_close(struct peer_view *v)
{
    (void)close(v->peer.proc_dirfd);
}

static int attest(void *st, struct peer_view *v, struct collect *c)
{
    return plugin->attest(st, &v->peer, collect_emit, c);
}

static void self_exe(char *buf, size_t cap)
{
    ssize_t n = readlink("/proc/self/exe", buf, cap - 1);
    assert_true(n > 0 && (size_t)n < cap - 1);
    buf[n] = '\0';
}

/* SHA-256 of a file by sha256sum(1), as lowercase hex. */
static void sha256sum_of(const char *path, char hex[65])
{
    char cmd[PATH_MAX + 64];
    assert_null(strchr(path, '\''));
    (void)snprintf(cmd, sizeof(cmd), "sha256sum -- '%s'", path);
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    char line[PATH_MAX + 80];
    assert_non_null(fgets(line, sizeof(line), f));
    assert_int_equal(pclose(f), 0);
    assert_true(strlen(line) > 64 && line[64] == ' ');
    memcpy(hex, line, 64);
    hex[64] = '\0';
}

static void copy_file(const char *from, const char *to)
{
    char buf[65536];
    int in = open(from, O_RDONLY | O_CLOEXEC);
    assert_true(in >= 0);
    int out = open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0755);
    assert_true(out >= 0);
    for (;;) {
        ssize_t n = read(in, buf, sizeof(buf));
        assert_true(n >= 0);
        if (n == 0)
            break;
        assert_int_equal(write(out, buf, (size_t)n), n);
    }
    assert_int_equal(close(out), 0);
    assert_int_equal(close(in), 0);
}

static void temp_dir(char *buf, size_t cap)
{
    const char *tmp = getenv("TMPDIR");
    (void)snprintf(buf, cap, "%s/sockid-unix-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    assert_non_null(mkdtemp(buf));
}

/* How a child prepares itself before exec. */
enum child_setup {
    CHILD_PLAIN,
    CHILD_BIND_OVER, /* in a mount namespace of its own, bind src over path first */
};

/* Starts path with argument "30" and returns once exec succeeded (the
 * close-on-exec pipe closes only then, after /proc/<pid>/exe is updated).
 * Returns -1 with *ret_status set when the child could not get there. */
static pid_t spawn(const char *path, enum child_setup setup, const char *src, int *ret_status)
{
    int p[2];
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        unsigned char why = 1;
        if (setup == CHILD_BIND_OVER) {
            why = 77;
            /* Root may make the namespace directly; anyone else through a user
             * namespace, as an unprivileged attacker would. */
            if (unshare(CLONE_NEWNS) < 0 && unshare(CLONE_NEWUSER | CLONE_NEWNS) < 0)
                goto fail;
            if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
                goto fail;
            if (mount(src, path, NULL, MS_BIND, NULL) < 0)
                goto fail;
            why = 1;
        }
        execl(path, path, "30", (char *)NULL);
    fail:
        (void)!write(p[1], &why, 1);
        _exit(why);
    }
    (void)close(p[1]);
    unsigned char why;
    ssize_t n = read(p[0], &why, 1);
    (void)close(p[0]);
    if (n == 0)
        return pid;
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    *ret_status = why;
    return -1;
}

static void reap(pid_t pid)
{
    int status;
    (void)kill(pid, SIGKILL);
    assert_int_equal(waitpid(pid, &status, 0), pid);
}

/* ---- tests ---- */

static void test_descriptor(void **state)
{
    (void)state;
    assert_int_equal(plugin->abi_version, SOCKID_ATTESTOR_ABI_VERSION);
    assert_int_equal(plugin->struct_size, sizeof(struct sockid_attestor));
    assert_string_equal(plugin->name, "unix");
    assert_non_null(plugin->init);
    assert_non_null(plugin->attest);
    assert_non_null(plugin->fini);
    for (size_t i = 0; i < sizeof(plugin->spare) / sizeof(plugin->spare[0]); i++)
        assert_null(plugin->spare[i]);
}

static void test_exports_only_entry_point(void **state)
{
    (void)state;
    static const char *const internal[] = {"unix_init",      "unix_attest",     "unix_fini",
                                           "unix_cache_get", "unix_emit_path",  "unix_hash_fd",
                                           "unix_attestor",  "unix_emit_sha256"};
    for (size_t i = 0; i < sizeof(internal) / sizeof(internal[0]); i++)
        assert_null(dlsym(plugin_handle, internal[i]));
    assert_non_null(dlsym(plugin_handle, SOCKID_ATTESTOR_SYMBOL));
}

static void test_self_default(void **state)
{
    (void)state;
    void *st = plugin_init_ok(NULL, NULL);
    struct peer_view v;
    struct collect c = {0};
    char exe[PATH_MAX];

    peer_self(&v);
    assert_int_equal(attest(st, &v, &c), 0);

    assert_true(collect_hasf(&c, "unix:uid:%u", (unsigned)geteuid()));
    assert_true(collect_hasf(&c, "unix:gid:%u", (unsigned)getegid()));
    struct passwd *pw = getpwuid(geteuid());
    assert_non_null(pw);
    assert_true(collect_hasf(&c, "unix:user:%s", pw->pw_name));
    struct group *gr = getgrgid(getegid());
    if (gr)
        assert_true(collect_hasf(&c, "unix:group:%s", gr->gr_name));
    for (size_t i = 0; i < v.peer.n_groups; i++)
        assert_true(collect_hasf(&c, "unix:supplementary_gid:%u", (unsigned)v.groups[i]));
    assert_int_equal(collect_count(&c, "unix:supplementary_gid:"), v.peer.n_groups);

    self_exe(exe, sizeof(exe));
    const char *path = collect_value(&c, "unix:path:");
    assert_non_null(path);
    assert_string_equal(path, exe);
    assert_null(collect_value(&c, "unix:sha256:"));

    peer_close(&v);
    plugin->fini(st);
}

static void test_init_defaults(void **state)
{
    (void)state;
    void *st = (void *)0x1;
    char err[128];
    /* No section at all, and an empty one. */
    assert_int_equal(plugin->init(NULL, &st, err, sizeof(err)), 0);
    assert_non_null(st);
    plugin->fini(st);
    struct sockid_attestor_config cfg = {.struct_size = sizeof(cfg)};
    assert_int_equal(plugin->init(&cfg, &st, err, sizeof(err)), 0);
    plugin->fini(st);
    plugin->fini(NULL);
}

static void test_init_unknown_key(void **state)
{
    (void)state;
    void *st = (void *)0x1;
    char err[256] = "";
    assert_int_equal(plugin_init(&st, err, sizeof(err), "sha256", "true", "colour", "blue", NULL),
                     -EINVAL);
    assert_ptr_equal(st, (void *)0x1); /* untouched on failure */
    assert_non_null(strstr(err, "'colour'"));
    assert_non_null(strstr(err, "sha256"));
    assert_non_null(strstr(err, "sha256_max_bytes"));
}

static void test_init_bad_values(void **state)
{
    (void)state;
    static const char *const bad[][2] = {
        {"sha256", "maybe"},
        {"sha256", "TRUE "},
        {"sha256", ""},
        {"sha256_max_bytes", "abc"},
        {"sha256_max_bytes", "0"},
        {"sha256_max_bytes", "-1"},
        {"sha256_max_bytes", "+5"},
        {"sha256_max_bytes", "12k"},
        {"sha256_max_bytes", "18446744073709551616"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        void *st = NULL;
        char err[256] = "";
        assert_int_equal(plugin_init(&st, err, sizeof(err), bad[i][0], bad[i][1], NULL), -EINVAL);
        assert_null(st);
        char want[64];
        (void)snprintf(want, sizeof(want), "'%s'", bad[i][0]);
        assert_non_null(strstr(err, want));
    }
    void *st = NULL;
    char err[256] = "";
    assert_int_equal(plugin_init(&st, err, sizeof(err), "sha256", "true", "sha256", "false", NULL),
                     -EINVAL);
    assert_non_null(strstr(err, "twice"));
    /* The largest number is a number. */
    st = plugin_init_ok("false", "18446744073709551615");
    plugin->fini(st);
}

static void test_invalid_arguments(void **state)
{
    (void)state;
    void *st = plugin_init_ok(NULL, NULL);
    struct peer_view v;
    struct collect c = {0};
    peer_self(&v);
    assert_int_equal(plugin->attest(st, NULL, collect_emit, &c), -EINVAL);
    assert_int_equal(plugin->attest(st, &v.peer, NULL, &c), -EINVAL);
    v.peer.struct_size = offsetof(struct sockid_peer, deadline_ns);
    assert_int_equal(attest(st, &v, &c), -EINVAL);
    v.peer.struct_size = sizeof(v.peer);
    v.peer.groups = NULL;
    v.peer.n_groups = 1;
    assert_int_equal(attest(st, &v, &c), -EINVAL);
    assert_int_equal(c.calls, 0);
    peer_close(&v);
    plugin->fini(st);
}

static void test_sha256_self_and_cache(void **state)
{
    (void)state;
    void *st = plugin_init_ok("true", NULL);
    struct peer_view v;
    char exe[PATH_MAX], want[65];

    self_exe(exe, sizeof(exe));
    sha256sum_of(exe, want);
    peer_self(&v);

    struct collect c1 = {0};
    assert_int_equal(attest(st, &v, &c1), 0);
    const char *got = collect_value(&c1, "unix:sha256:");
    assert_non_null(got);
    assert_string_equal(got, want);
    assert_non_null(collect_value(&c1, "unix:path:"));

    /* Hashing checks the deadline before every chunk, so only a cache hit
     * can answer a call whose deadline has passed. */
    struct collect c2 = {0};
    v.peer.deadline_ns = PAST_DEADLINE;
    assert_int_equal(attest(st, &v, &c2), 0);
    got = collect_value(&c2, "unix:sha256:");
    assert_non_null(got);
    assert_string_equal(got, want);

    peer_close(&v);
    plugin->fini(st);
}

static void test_sha256_cache_follows_file_changes(void **state)
{
    (void)state;
    void *st = plugin_init_ok("true", NULL);
    char dir[PATH_MAX], bin[PATH_MAX + 16], want[65];
    int status = 0;

    temp_dir(dir, sizeof(dir));
    (void)snprintf(bin, sizeof(bin), "%s/sleeper", dir);
    copy_file("/bin/sleep", bin);
    sha256sum_of(bin, want);
    pid_t pid = spawn(bin, CHILD_PLAIN, NULL, &status);
    assert_true(pid > 0);

    struct peer_view v;
    peer_of_pid(&v, pid, 0, 0);

    /* Never hashed: a passed deadline stops the hashing. */
    struct collect c = {0};
    v.peer.deadline_ns = PAST_DEADLINE;
    assert_int_equal(attest(st, &v, &c), -ETIMEDOUT);

    memset(&c, 0, sizeof(c));
    v.peer.deadline_ns = FAR_DEADLINE;
    assert_int_equal(attest(st, &v, &c), 0);
    assert_string_equal(collect_value(&c, "unix:sha256:"), want);
    assert_string_equal(collect_value(&c, "unix:path:"), bin);

    memset(&c, 0, sizeof(c));
    v.peer.deadline_ns = PAST_DEADLINE;
    assert_int_equal(attest(st, &v, &c), 0);
    assert_string_equal(collect_value(&c, "unix:sha256:"), want);

    /* A change of the inode (here its mode, so its ctime) is a new key. The
     * pause keeps the test independent of timestamp granularity. */
    (void)usleep(50 * 1000);
    assert_int_equal(chmod(bin, 0700), 0);
    memset(&c, 0, sizeof(c));
    assert_int_equal(attest(st, &v, &c), -ETIMEDOUT);
    memset(&c, 0, sizeof(c));
    v.peer.deadline_ns = FAR_DEADLINE;
    assert_int_equal(attest(st, &v, &c), 0);
    assert_string_equal(collect_value(&c, "unix:sha256:"), want);

    peer_close(&v);
    reap(pid);
    assert_int_equal(unlink(bin), 0);
    assert_int_equal(rmdir(dir), 0);
    plugin->fini(st);
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    assert_int_equal(clock_gettime(CLOCK_MONOTONIC, &ts), 0);
    return (uint64_t)ts.tv_sec * UINT64_C(1000000000) + (uint64_t)ts.tv_nsec;
}

/* A binary too large to hash within one deadline is hashed across calls:
 * each call stops at its deadline and the next one goes on from there. */
static void test_sha256_resumes_across_deadlines(void **state)
{
    (void)state;
    void *st = plugin_init_ok("true", NULL);
    char dir[PATH_MAX], bin[PATH_MAX + 16], want[65];
    int status = 0;

    temp_dir(dir, sizeof(dir));
    (void)snprintf(bin, sizeof(bin), "%s/large", dir);
    copy_file("/bin/sleep", bin);
    /* Trailing bytes past an ELF's segments are never mapped: it still runs. */
    int fd = open(bin, O_WRONLY | O_APPEND | O_CLOEXEC);
    assert_true(fd >= 0);
    static char zeros[1 << 20];
    for (int i = 0; i < 32; i++)
        assert_int_equal(write(fd, zeros, sizeof(zeros)), (ssize_t)sizeof(zeros));
    assert_int_equal(close(fd), 0);
    sha256sum_of(bin, want);
    pid_t pid = spawn(bin, CHILD_PLAIN, NULL, &status);
    assert_true(pid > 0);

    struct peer_view v;
    peer_of_pid(&v, pid, 0, 0);
    size_t calls = 0;
    struct collect c;
    int r;
    do {
        memset(&c, 0, sizeof(c));
        v.peer.deadline_ns = now_ns() + 5 * 1000 * 1000;
        r = attest(st, &v, &c);
        calls++;
        assert_true(r == 0 || r == -ETIMEDOUT);
    } while (r != 0 && calls < 2000);
    assert_int_equal(r, 0);
    assert_true(calls >= 2);
    assert_string_equal(collect_value(&c, "unix:sha256:"), want);

    peer_close(&v);
    reap(pid);
    assert_int_equal(unlink(bin), 0);
    assert_int_equal(rmdir(dir), 0);
    plugin->fini(st);
}

static void test_sha256_max_bytes(void **state)
{
    (void)state;
    void *st = plugin_init_ok("true", "1024");
    struct peer_view v;
    struct collect c = {0};
    peer_self(&v);
    assert_int_equal(attest(st, &v, &c), 0);
    assert_null(collect_value(&c, "unix:sha256:"));
    assert_non_null(collect_value(&c, "unix:path:"));
    assert_true(collect_hasf(&c, "unix:uid:%u", (unsigned)geteuid()));
    peer_close(&v);
    plugin->fini(st);
}

static void test_emit_error_stops(void **state)
{
    (void)state;
    void *st = plugin_init_ok("true", NULL);
    struct peer_view v;
    peer_self(&v);

    /* Count the calls of a full run, then fail each one in turn. */
    struct collect full = {0};
    assert_int_equal(attest(st, &v, &full), 0);
    assert_true(full.calls >= 5);
    for (size_t at = 1; at <= full.calls; at++) {
        struct collect c = {.fail_at = at, .fail_rc = -ETIMEDOUT};
        assert_int_equal(attest(st, &v, &c), -ETIMEDOUT);
        assert_int_equal(c.calls, at);
    }
    struct collect big = {.refuse_key = "supplementary_gid", .refuse_rc = -E2BIG};
    v.groups[0] = 4000001;
    v.groups[1] = 4000002;
    v.peer.n_groups = 2;
    assert_int_equal(attest(st, &v, &big), -E2BIG);
    assert_null(collect_value(&big, "unix:path:"));

    /* A malformed uid selector is the host's bug, not skipped. */
    struct collect bad_uid = {.refuse_key = "uid", .refuse_rc = -EINVAL};
    assert_int_equal(attest(st, &v, &bad_uid), -EINVAL);

    peer_close(&v);
    plugin->fini(st);
}

static void test_emit_refusing_path_is_skipped(void **state)
{
    (void)state;
    void *st = plugin_init_ok("true", NULL);
    struct peer_view v;
    peer_self(&v);
    struct collect c = {.refuse_key = "path", .refuse_rc = -EINVAL};
    assert_int_equal(attest(st, &v, &c), 0);
    assert_true(collect_hasf(&c, "unix:uid:%u", (unsigned)geteuid()));
    assert_true(collect_hasf(&c, "unix:gid:%u", (unsigned)getegid()));
    assert_null(collect_value(&c, "unix:path:"));
    assert_non_null(collect_value(&c, "unix:sha256:")); /* later selectors still come */

    struct collect u = {.refuse_key = "user", .refuse_rc = -EINVAL};
    assert_int_equal(attest(st, &v, &u), 0);
    assert_null(collect_value(&u, "unix:user:"));
    assert_non_null(collect_value(&u, "unix:path:"));

    struct collect t = {.refuse_key = "path", .refuse_rc = -ETIMEDOUT};
    assert_int_equal(attest(st, &v, &t), -ETIMEDOUT);
    assert_null(collect_value(&t, "unix:sha256:"));
    peer_close(&v);
    plugin->fini(st);
}

static void test_deleted_executable(void **state)
{
    (void)state;
    void *st = plugin_init_ok("true", NULL);
    char dir[PATH_MAX], bin[PATH_MAX + 16], want[65];
    int status = 0;

    temp_dir(dir, sizeof(dir));
    (void)snprintf(bin, sizeof(bin), "%s/sleeper", dir);
    copy_file("/bin/sleep", bin);
    sha256sum_of(bin, want);
    pid_t pid = spawn(bin, CHILD_PLAIN, NULL, &status);
    assert_true(pid > 0);
    assert_int_equal(unlink(bin), 0);

    struct peer_view v;
    struct collect c = {0};
    peer_of_pid(&v, pid, 0, 0);
    assert_int_equal(attest(st, &v, &c), 0);
    assert_true(collect_has(&c, "unix:uid:0"));
    assert_null(collect_value(&c, "unix:path:"));
    /* The contents are still the mapped binary's. */
    assert_string_equal(collect_value(&c, "unix:sha256:"), want);

    /* Same with a new file at the old path: the name is not the binary. */
    copy_file("/bin/sleep", bin);
    memset(&c, 0, sizeof(c));
    assert_int_equal(attest(st, &v, &c), 0);
    assert_null(collect_value(&c, "unix:path:"));

    peer_close(&v);
    reap(pid);
    assert_int_equal(unlink(bin), 0);
    assert_int_equal(rmdir(dir), 0);
    plugin->fini(st);
}

static void test_file_named_deleted(void **state)
{
    (void)state;
    void *st = plugin_init_ok(NULL, NULL);
    char dir[PATH_MAX], bin[PATH_MAX + 32];
    int status = 0;

    temp_dir(dir, sizeof(dir));
    (void)snprintf(bin, sizeof(bin), "%s/sleeper (deleted)", dir);
    copy_file("/bin/sleep", bin);
    pid_t pid = spawn(bin, CHILD_PLAIN, NULL, &status);
    assert_true(pid > 0);

    struct peer_view v;
    struct collect c = {0};
    peer_of_pid(&v, pid, 0, 0);
    assert_int_equal(attest(st, &v, &c), 0);
    const char *path = collect_value(&c, "unix:path:");
    assert_non_null(path);
    assert_string_equal(path, bin);

    peer_close(&v);
    reap(pid);
    assert_int_equal(unlink(bin), 0);
    assert_int_equal(rmdir(dir), 0);
    plugin->fini(st);
}

/* A process in a mount namespace of its own shows the agent a path that, in
 * the agent's namespace, is another file: no path selector for it. */
static void test_path_from_foreign_mount_namespace(void **state)
{
    (void)state;
    void *st = plugin_init_ok(NULL, NULL);
    char dir[PATH_MAX], decoy[PATH_MAX + 16], real[PATH_MAX + 16];
    int status = 0;

    temp_dir(dir, sizeof(dir));
    (void)snprintf(decoy, sizeof(decoy), "%s/trusted", dir);
    (void)snprintf(real, sizeof(real), "%s/other", dir);
    copy_file("/bin/true", decoy);
    copy_file("/bin/sleep", real);
    pid_t pid = spawn(decoy, CHILD_BIND_OVER, real, &status);
    if (pid > 0) {
        char link[PATH_MAX];
        char proc_exe[64];
        (void)snprintf(proc_exe, sizeof(proc_exe), "/proc/%d/exe", (int)pid);
        ssize_t n = readlink(proc_exe, link, sizeof(link) - 1);
        assert_true(n > 0);
        link[n] = '\0';
        assert_string_equal(link, decoy); /* what the kernel shows us */

        struct peer_view v;
        struct collect c = {0};
        peer_of_pid(&v, pid, 0, 0);
        assert_int_equal(attest(st, &v, &c), 0);
        assert_true(collect_has(&c, "unix:uid:0"));
        assert_null(collect_value(&c, "unix:path:"));
        peer_close(&v);
        reap(pid);
    }
    assert_int_equal(unlink(decoy), 0);
    assert_int_equal(unlink(real), 0);
    assert_int_equal(rmdir(dir), 0);
    plugin->fini(st);
    if (pid < 0) {
        assert_int_equal(status, 77);
        skip(); /* no way to make a mount namespace here */
    }
}

static void test_unknown_uid(void **state)
{
    (void)state;
    void *st = plugin_init_ok(NULL, NULL);
    struct peer_view v;
    struct collect c = {0};
    peer_self(&v);
    v.peer.uid = 4000000;
    v.peer.gid = 4000000;
    assert_null(getpwuid(4000000));
    assert_int_equal(attest(st, &v, &c), 0);
    assert_true(collect_has(&c, "unix:uid:4000000"));
    assert_true(collect_has(&c, "unix:gid:4000000"));
    assert_null(collect_value(&c, "unix:user:"));
    if (!getgrgid(4000000))
        assert_null(collect_value(&c, "unix:group:"));
    peer_close(&v);
    plugin->fini(st);
}

/* ---- the name cache ---- */

/* Writes path: a copy of real (when not NULL), then extra. */
static bool names_write(const char *path, const char *real, const char *extra)
{
    char buf[65536];
    FILE *out = fopen(path, "we");
    if (!out)
        return false;
    if (real) {
        FILE *in = fopen(real, "re");
        if (!in)
            return false;
        size_t n;
        while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
            if (fwrite(buf, 1, n, out) != n)
                return false;
        (void)fclose(in);
    }
    return fputs(extra, out) >= 0 && fclose(out) == 0;
}

/* unix:user: and unix:group: of a view with uid and gid, from a new or
 * given plugin state. */
static bool names_of(void *st, uint32_t uid, uint32_t gid, char *user, char *group, size_t cap)
{
    struct peer_view v;
    struct collect c = {0};
    peer_of_pid(&v, getpid(), uid, gid);
    int r = plugin->attest(st, &v.peer, collect_emit, &c);
    peer_close(&v);
    if (r != 0)
        return false;
    const char *u = collect_value(&c, "unix:user:"), *g = collect_value(&c, "unix:group:");
    (void)snprintf(user, cap, "%s", u ? u : "-");
    (void)snprintf(group, cap, "%s", g ? g : "-");
    return true;
}

/* In a mount namespace of its own, with files of the child's own bind-mounted
 * over /etc/passwd and /etc/group, so that users can be renamed without
 * touching the host's. Exit codes: 0 passed, 77 no namespace, else the
 * check that failed. */
static int names_child(const char *dir)
{
    char passwd[PATH_MAX], group[PATH_MAX], user[256], grp[256];
    (void)snprintf(passwd, sizeof(passwd), "%s/passwd", dir);
    (void)snprintf(group, sizeof(group), "%s/group", dir);
    if (!names_write(passwd, "/etc/passwd", "sockidtest:x:4242:4242::/:/bin/false\n") ||
        !names_write(group, "/etc/group", "sockidgrp:x:4242:\n"))
        return 2;
    if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
        mount(passwd, "/etc/passwd", NULL, MS_BIND, NULL) < 0 ||
        mount(group, "/etc/group", NULL, MS_BIND, NULL) < 0)
        return 77;
    void *st = plugin_init_ok(NULL, NULL);
    /* The user and the group have different names: they are not mixed up. */
    if (!names_of(st, 4242, 4242, user, grp, sizeof(user)) || strcmp(user, "sockidtest") != 0 ||
        strcmp(grp, "sockidgrp") != 0)
        return 3;
    if (!names_of(st, 4243, 4243, user, grp, sizeof(user)) || strcmp(user, "-") != 0)
        return 4;
    /* Renamed, and a new user: the files change in place under the mount. */
    if (!names_write(passwd, NULL,
                     "renamed:x:4242:4242::/:/bin/false\nnewcomer:x:4243:4243::/:/bin/false\n"))
        return 5;
    /* Within the lifetime, the cached answers: the old name, and still no
     * name for the new user. */
    if (!names_of(st, 4242, 4242, user, grp, sizeof(user)) || strcmp(user, "sockidtest") != 0)
        return 6;
    if (!names_of(st, 4243, 4243, user, grp, sizeof(user)) || strcmp(user, "-") != 0)
        return 7;
    /* The change is there to be seen: a new instance (an empty cache) sees it,
     * as the old one does once the lifetime has passed (kvcache's expiry is
     * tested in test_kvcache). */
    void *fresh = plugin_init_ok(NULL, NULL);
    if (!names_of(fresh, 4242, 4242, user, grp, sizeof(user)) || strcmp(user, "renamed") != 0)
        return 8;
    if (!names_of(fresh, 4243, 4243, user, grp, sizeof(user)) || strcmp(user, "newcomer") != 0)
        return 9;
    plugin->fini(fresh);
    plugin->fini(st);
    return 0;
}

static void test_names_cached(void **state)
{
    (void)state;
    char dir[PATH_MAX], path[PATH_MAX + 16];
    if (geteuid() != 0)
        skip(); /* a private /etc/passwd needs a mount namespace as root */
    temp_dir(dir, sizeof(dir));
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(names_child(dir));
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    (void)snprintf(path, sizeof(path), "%s/passwd", dir);
    (void)unlink(path);
    (void)snprintf(path, sizeof(path), "%s/group", dir);
    (void)unlink(path);
    assert_int_equal(rmdir(dir), 0);
    assert_true(WIFEXITED(status));
    if (WEXITSTATUS(status) == 77)
        skip();
    if (WEXITSTATUS(status) != 0)
        fail_msg("name cache check %d failed (see names_child)", WEXITSTATUS(status));
}

static void test_kernel_thread(void **state)
{
    (void)state;
    char comm[32] = "";
    FILE *f = fopen("/proc/2/comm", "r");
    if (!f || !fgets(comm, sizeof(comm), f) || strcmp(comm, "kthreadd\n") != 0) {
        if (f)
            (void)fclose(f);
        skip(); /* another pid namespace: no kernel thread in view */
    }
    (void)fclose(f);

    void *st = plugin_init_ok("true", NULL);
    struct peer_view v;
    struct collect c = {0};
    peer_of_pid(&v, 2, 0, 0);
    assert_int_equal(attest(st, &v, &c), 0);
    assert_true(collect_has(&c, "unix:uid:0"));
    assert_null(collect_value(&c, "unix:path:"));
    assert_null(collect_value(&c, "unix:sha256:"));
    peer_close(&v);
    plugin->fini(st);
}

struct thread_arg {
    void *st;
    const char *want;
    int failures;
};

/* cmocka's asserts are not for other threads: these record, main checks. */
struct thread_collect {
    char sha256[SOCKID_SELECTOR_VALUE_MAX + 1];
    size_t n;
};

static int thread_emit(void *ctx, const char *type, const char *key, const char *value)
{
    struct thread_collect *c = ctx;
    (void)type;
    c->n++;
    if (strcmp(key, "sha256") == 0)
        (void)snprintf(c->sha256, sizeof(c->sha256), "%s", value);
    return 0;
}

static void *thread_run(void *p)
{
    struct thread_arg *a = p;
    struct sockid_peer peer = {
        .struct_size = sizeof(peer),
        .pid = getpid(),
        .uid = geteuid(),
        .gid = getegid(),
        .proc_dirfd = open("/proc/self", O_RDONLY | O_DIRECTORY | O_CLOEXEC),
        .deadline_ns = FAR_DEADLINE,
    };
    if (peer.proc_dirfd < 0) {
        a->failures++;
        return NULL;
    }
    for (int i = 0; i < 25; i++) {
        struct thread_collect c = {.n = 0};
        if (plugin->attest(a->st, &peer, thread_emit, &c) != 0 || strcmp(c.sha256, a->want) != 0 ||
            c.n < 4)
            a->failures++;
    }
    (void)close(peer.proc_dirfd);
    return NULL;
}

static void test_concurrent_attest(void **state)
{
    (void)state;
    void *st = plugin_init_ok("true", NULL);
    char exe[PATH_MAX], want[65];
    self_exe(exe, sizeof(exe));
    sha256sum_of(exe, want);

    pthread_t t[8];
    struct thread_arg a[8];
    for (size_t i = 0; i < 8; i++) {
        a[i] = (struct thread_arg){.st = st, .want = want};
        assert_int_equal(pthread_create(&t[i], NULL, thread_run, &a[i]), 0);
    }
    for (size_t i = 0; i < 8; i++) {
        assert_int_equal(pthread_join(t[i], NULL), 0);
        assert_int_equal(a[i].failures, 0);
    }
    plugin->fini(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_descriptor),
        cmocka_unit_test(test_exports_only_entry_point),
        cmocka_unit_test(test_self_default),
        cmocka_unit_test(test_init_defaults),
        cmocka_unit_test(test_init_unknown_key),
        cmocka_unit_test(test_init_bad_values),
        cmocka_unit_test(test_invalid_arguments),
        cmocka_unit_test(test_sha256_self_and_cache),
        cmocka_unit_test(test_sha256_cache_follows_file_changes),
        cmocka_unit_test(test_sha256_resumes_across_deadlines),
        cmocka_unit_test(test_sha256_max_bytes),
        cmocka_unit_test(test_emit_error_stops),
        cmocka_unit_test(test_emit_refusing_path_is_skipped),
        cmocka_unit_test(test_deleted_executable),
        cmocka_unit_test(test_file_named_deleted),
        cmocka_unit_test(test_path_from_foreign_mount_namespace),
        cmocka_unit_test(test_unknown_uid),
        cmocka_unit_test(test_names_cached),
        cmocka_unit_test(test_kernel_thread),
        cmocka_unit_test(test_concurrent_attest),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
