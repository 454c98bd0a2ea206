/* Attestor plugins (agent/attest.h): loading, refusing, running.
 *
 * The plugins are the ones in tests/unit/plugins, built into TEST_PLUGIN_DIR:
 * one that works ("good") and one for each way a plugin can be wrong. What a
 * user of the agent notices is the message when a plugin is refused at
 * startup, and which selectors a workload ends up with when a plugin
 * misbehaves at request time. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "test_util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "attest.h"
#include "config.h"
#include "selector.h"

#ifndef TEST_PLUGIN_DIR
#error "TEST_PLUGIN_DIR must name the directory of the test plugins"
#endif

#define PLUGIN(name) TEST_PLUGIN_DIR "/" name ".so"
#define ERR_LEN      512

/* ---- fixtures --------------------------------------------------------------- */

struct fx {
    struct config *cfg;
    struct attest *set;
    struct selector_set *out;
    struct sockid_peer peer;
    int proc_dirfd;
    char tmpdir[512];
    char err[ERR_LEN];
};

static int fx_setup(void **state)
{
    struct fx *fx = calloc(1, sizeof(*fx));
    assert_non_null(fx);
    assert_int_equal(config_new(&fx->cfg), 0);
    assert_int_equal(attest_new(&fx->set), 0);
    fx->out = malloc(sizeof(*fx->out));
    assert_non_null(fx->out);
    selector_set_clear(fx->out);
    fx->proc_dirfd = open("/proc/self", O_DIRECTORY | O_RDONLY | O_CLOEXEC);
    assert_true(fx->proc_dirfd >= 0);
    fx->peer = (struct sockid_peer){
        .struct_size = sizeof(struct sockid_peer),
        .pid = getpid(),
        .uid = geteuid(),
        .gid = getegid(),
        .proc_dirfd = fx->proc_dirfd,
    };
    *state = fx;
    return 0;
}

/* Removes a directory of plain files (the tests make no subdirectories). */
static void rm_dir(const char *dir)
{
    if (!dir[0])
        return;
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
            (void)unlinkat(dirfd(d), de->d_name, 0);
    closedir(d);
    (void)rmdir(dir);
}

static int fx_teardown(void **state)
{
    struct fx *fx = *state;
    assert_null(attest_free(fx->set));
    assert_null(config_free(fx->cfg));
    free(fx->out);
    close(fx->proc_dirfd);
    rm_dir(fx->tmpdir);
    free(fx);
    return 0;
}

/* Adds an [attestor.NAME] section the way the config parser would, keys and
 * values given as a NULL-terminated list of pairs. config_free() frees it. */
static void cfg_section(struct config *cfg, const char *name, int required, ...)
{
    struct config_attestor *a =
        realloc(cfg->attestors, (cfg->n_attestors + 1) * sizeof(*cfg->attestors));
    assert_non_null(a);
    cfg->attestors = a;
    struct config_attestor *s = &cfg->attestors[cfg->n_attestors++];
    memset(s, 0, sizeof(*s));
    s->name = strdup(name);
    assert_non_null(s->name);
    s->required = required != 0;

    va_list ap;
    va_start(ap, required);
    const char *k;
    while ((k = va_arg(ap, const char *))) {
        const char *v = va_arg(ap, const char *);
        s->keys = realloc(s->keys, (s->n + 1) * sizeof(char *));
        s->values = realloc(s->values, (s->n + 1) * sizeof(char *));
        assert_non_null(s->keys);
        assert_non_null(s->values);
        s->keys[s->n] = strdup(k);
        s->values[s->n] = strdup(v);
        assert_non_null(s->keys[s->n]);
        assert_non_null(s->values[s->n]);
        s->n++;
    }
    va_end(ap);
}

static void load_ok(struct fx *fx, const char *path)
{
    fx->err[0] = '\0';
    int r = attest_load_one(fx->set, path, fx->cfg, fx->err, sizeof(fx->err));
    if (r != 0)
        fail_msg("loading %s: %d (%s)", path, r, fx->err);
}

static void load_refused(struct fx *fx, const char *path)
{
    size_t before = attest_count(fx->set);
    fx->err[0] = '\0';
    int r = attest_load_one(fx->set, path, fx->cfg, fx->err, sizeof(fx->err));
    if (r >= 0)
        fail_msg("%s loaded, should have been refused", path);
    assert_true(fx->err[0] != '\0');
    assert_int_equal(attest_count(fx->set), before);
    print_message("refused as expected: %s\n", fx->err);
}

static char *pid_selector(pid_t pid)
{
    static char s[64];
    (void)snprintf(s, sizeof(s), "test:pid:%d", (int)pid);
    return s;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    (void)clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int run(struct fx *fx, uint32_t timeout_ms)
{
    fx->err[0] = '\0';
    return attest_run(fx->set, &fx->peer, timeout_ms, fx->out, fx->err, sizeof(fx->err));
}

/* A private directory for copies of the plugins, in the build tree rather
 * than /tmp: a loader may fairly distrust everything under a directory that
 * anyone can write to. */
static const char *fx_tmpdir(struct fx *fx)
{
    if (!fx->tmpdir[0]) {
        (void)snprintf(fx->tmpdir, sizeof(fx->tmpdir), "%s/../attest-tmp-XXXXXX", TEST_PLUGIN_DIR);
        assert_non_null(mkdtemp(fx->tmpdir));
    }
    return fx->tmpdir;
}

static void copy_file(const char *from, const char *dir, const char *name, mode_t mode)
{
    char to[600];
    (void)snprintf(to, sizeof(to), "%s/%s", dir, name);
    int in = open(from, O_RDONLY | O_CLOEXEC);
    assert_true(in >= 0);
    int out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(out >= 0);
    char buf[65536];
    ssize_t n;
    while ((n = read(in, buf, sizeof(buf))) > 0)
        assert_int_equal(write(out, buf, (size_t)n), n);
    assert_int_equal(n, 0);
    /* fchmod, not open's mode: the umask does not get a say. */
    assert_int_equal(fchmod(out, mode), 0);
    close(in);
    close(out);
}

/* ---- loading ---------------------------------------------------------------- */

static void test_good_plugin_runs(void **state)
{
    struct fx *fx = *state;
    load_ok(fx, PLUGIN("plugin_good"));
    assert_int_equal(attest_count(fx->set), 1);
    assert_string_equal(attest_name(fx->set, 0), "good");

    fx->peer.deadline_ns = 0;
    uint64_t before = now_ns();
    assert_int_equal(run(fx, 1000), 0);
    uint64_t after = now_ns();
    assert_true(selector_set_contains(fx->out, "test:fixed:one"));
    assert_true(selector_set_contains(fx->out, pid_selector(getpid())));
    assert_int_equal(fx->out->n, 2);
    /* attest_run set the deadline from the timeout it was given. */
    assert_true(fx->peer.deadline_ns >= before + 1000ull * 1000000ull);
    assert_true(fx->peer.deadline_ns <= after + 1000ull * 1000000ull);

    /* Selectors are added to what the set already holds. */
    selector_set_clear(fx->out);
    assert_int_equal(selector_set_add(fx->out, "pre", "k", "v"), 0);
    assert_int_equal(run(fx, 1000), 0);
    assert_true(selector_set_contains(fx->out, "pre:k:v"));
    assert_true(selector_set_contains(fx->out, "test:fixed:one"));
}

static void test_good_plugin_gets_its_config(void **state)
{
    struct fx *fx = *state;
    cfg_section(fx->cfg, "other", false, "color", "red", NULL);
    cfg_section(fx->cfg, "good", false, "color", "blue", "path", "/a:b", NULL);
    load_ok(fx, PLUGIN("plugin_good"));
    assert_int_equal(run(fx, 1000), 0);
    assert_true(selector_set_contains(fx->out, "test:cfg-color:blue"));
    assert_true(selector_set_contains(fx->out, "test:cfg-path:/a:b"));
    /* Another plugin's section is not ours. */
    assert_false(selector_set_contains(fx->out, "test:cfg-color:red"));
}

static void test_wrong_abi_version(void **state)
{
    struct fx *fx = *state;
    load_refused(fx, PLUGIN("plugin_bad_abi"));
    /* Names the plugin, the version it has and the version the host wants. */
    assert_contains(fx->err, "plugin_bad_abi");
    char have[16], want[16];
    (void)snprintf(have, sizeof(have), "%u", SOCKID_ATTESTOR_ABI_VERSION + 1);
    (void)snprintf(want, sizeof(want), "%u", SOCKID_ATTESTOR_ABI_VERSION);
    assert_contains(fx->err, have);
    assert_contains(fx->err, want);
}

static void test_small_struct(void **state)
{
    struct fx *fx = *state;
    load_refused(fx, PLUGIN("plugin_small_struct"));
    assert_contains(fx->err, "plugin_small_struct");
    char have[16], want[16];
    (void)snprintf(have, sizeof(have), "%zu", offsetof(struct sockid_attestor, spare));
    (void)snprintf(want, sizeof(want), "%zu", sizeof(struct sockid_attestor));
    assert_contains(fx->err, have);
    assert_contains(fx->err, want);
}

static void test_missing_symbol(void **state)
{
    struct fx *fx = *state;
    load_refused(fx, PLUGIN("plugin_no_symbol"));
    assert_contains(fx->err, "plugin_no_symbol");
    assert_contains(fx->err, SOCKID_ATTESTOR_SYMBOL);
}

static void test_missing_file(void **state)
{
    struct fx *fx = *state;
    load_refused(fx, PLUGIN("plugin_that_does_not_exist"));
    assert_contains(fx->err, "plugin_that_does_not_exist");
}

static void test_init_failure(void **state)
{
    struct fx *fx = *state;
    /* The plugin's own reason reaches the operator, with the plugin named. */
    cfg_section(fx->cfg, "good", false, "color", "blue", "bad", "1", NULL);
    load_refused(fx, PLUGIN("plugin_good"));
    assert_contains(fx->err, "key 'bad' is not allowed here (test plugin)");
    assert_true(strstr(fx->err, "good") != NULL);
}

static void test_init_failure_on_purpose(void **state)
{
    struct fx *fx = *state;
    cfg_section(fx->cfg, "good", false, "fail_init", "1", NULL);
    load_refused(fx, PLUGIN("plugin_good"));
    assert_contains(fx->err, "init failed on purpose (fail_init=1)");
}

static void test_writable_plugin_refused(void **state)
{
    struct fx *fx = *state;
    const char *dir = fx_tmpdir(fx);
    char path[600];

    /* The copy itself is loadable... */
    copy_file(PLUGIN("plugin_good"), dir, "ok.so", 0644);
    (void)snprintf(path, sizeof(path), "%s/ok.so", dir);
    load_ok(fx, path);

    /* ...but not once anyone else may rewrite it. */
    copy_file(PLUGIN("plugin_good"), dir, "world.so", 0666);
    (void)snprintf(path, sizeof(path), "%s/world.so", dir);
    load_refused(fx, path);
    assert_contains(fx->err, "world.so");
    assert_contains(fx->err, "writable");

    copy_file(PLUGIN("plugin_good"), dir, "group.so", 0664);
    (void)snprintf(path, sizeof(path), "%s/group.so", dir);
    load_refused(fx, path);
    assert_contains(fx->err, "group.so");
    assert_contains(fx->err, "writable");
}

/* ---- running ---------------------------------------------------------------- */

static void test_failing_optional(void **state)
{
    struct fx *fx = *state;
    /* Before a good one: what the failing one emitted must not stay behind
     * for the next one to inherit. */
    load_ok(fx, PLUGIN("plugin_failing"));
    load_ok(fx, PLUGIN("plugin_good"));
    assert_int_equal(run(fx, 1000), 0);
    assert_true(selector_set_contains(fx->out, "test:fixed:one"));
    assert_true(selector_set_contains(fx->out, pid_selector(getpid())));
    assert_false(selector_set_contains(fx->out, "failing:before:error"));
    assert_int_equal(fx->out->n, 2);
}

static void test_failing_after_good(void **state)
{
    struct fx *fx = *state;
    /* After a good one: dropping the failure's selector keeps what came
     * before it. */
    load_ok(fx, PLUGIN("plugin_good"));
    load_ok(fx, PLUGIN("plugin_failing"));
    assert_int_equal(run(fx, 1000), 0);
    assert_true(selector_set_contains(fx->out, "test:fixed:one"));
    assert_true(selector_set_contains(fx->out, pid_selector(getpid())));
    assert_false(selector_set_contains(fx->out, "failing:before:error"));
    assert_int_equal(fx->out->n, 2);
}

static void test_failing_required(void **state)
{
    struct fx *fx = *state;
    cfg_section(fx->cfg, "failing", true, NULL);
    load_ok(fx, PLUGIN("plugin_good"));
    load_ok(fx, PLUGIN("plugin_failing"));
    assert_int_equal(run(fx, 1000), -EPERM);
    assert_contains(fx->err, "failing");
    assert_false(selector_set_contains(fx->out, "failing:before:error"));
    print_message("reason: %s\n", fx->err);
}

static void test_good_required(void **state)
{
    struct fx *fx = *state;
    cfg_section(fx->cfg, "good", true, NULL);
    load_ok(fx, PLUGIN("plugin_good"));
    assert_int_equal(run(fx, 1000), 0);
    assert_true(selector_set_contains(fx->out, "test:fixed:one"));
}

static void test_invalid_selector_fails_plugin(void **state)
{
    struct fx *fx = *state;
    /* The good plugin echoes its config as a selector; a newline in the value
     * makes emit() refuse it, and the plugin returns that error. */
    cfg_section(fx->cfg, "good", true, "note", "two\nlines", NULL);
    load_ok(fx, PLUGIN("plugin_good"));
    assert_int_equal(run(fx, 1000), -EPERM);
    assert_contains(fx->err, "good");
    assert_false(selector_set_contains(fx->out, "test:fixed:one"));
    assert_int_equal(fx->out->n, 0);
}

static void test_slow_optional(void **state)
{
    struct fx *fx = *state;
    load_ok(fx, PLUGIN("plugin_good"));
    load_ok(fx, PLUGIN("plugin_slow"));
    assert_int_equal(run(fx, 50), 0);
    assert_true(selector_set_contains(fx->out, "test:fixed:one"));
    assert_false(selector_set_contains(fx->out, "slow:early:yes"));
    assert_false(selector_set_contains(fx->out, "slow:late:yes"));
    assert_int_equal(fx->out->n, 2);
}

static void test_slow_required(void **state)
{
    struct fx *fx = *state;
    cfg_section(fx->cfg, "slow", true, NULL);
    load_ok(fx, PLUGIN("plugin_slow"));
    assert_int_equal(run(fx, 50), -EPERM);
    assert_contains(fx->err, "slow");
    assert_false(selector_set_contains(fx->out, "slow:early:yes"));
    assert_false(selector_set_contains(fx->out, "slow:late:yes"));
    print_message("reason: %s\n", fx->err);
}

static void test_slow_does_not_starve_next(void **state)
{
    struct fx *fx = *state;
    /* The timeout is per attestor call (config.h, attest_timeout_ms): one
     * that overran must not leave the next one without time. */
    load_ok(fx, PLUGIN("plugin_slow"));
    load_ok(fx, PLUGIN("plugin_good"));
    assert_int_equal(run(fx, 50), 0);
    assert_true(selector_set_contains(fx->out, "test:fixed:one"));
    assert_false(selector_set_contains(fx->out, "slow:early:yes"));
}

struct runner {
    const struct attest *set;
    struct sockid_peer peer;
    struct selector_set *out;
    int result;
};

static void *runner_thread(void *arg)
{
    struct runner *r = arg;
    char reason[ERR_LEN];
    for (int i = 0; i < 50 && r->result == 0; i++) {
        selector_set_clear(r->out);
        r->result = attest_run(r->set, &r->peer, 1000, r->out, reason, sizeof(reason));
        if (r->result == 0 && (r->out->n != 2 || !selector_set_contains(r->out, "test:fixed:one")))
            r->result = -EBADMSG;
    }
    return NULL;
}

static void test_concurrent_runs(void **state)
{
    struct fx *fx = *state;
    /* The agent runs one set from every event loop at once; each run must
     * get its own selectors, whole. */
    load_ok(fx, PLUGIN("plugin_failing"));
    load_ok(fx, PLUGIN("plugin_good"));
    struct runner r[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        r[i] = (struct runner){.set = fx->set, .peer = fx->peer};
        r[i].out = malloc(sizeof(*r[i].out));
        assert_non_null(r[i].out);
        assert_int_equal(pthread_create(&th[i], NULL, runner_thread, &r[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        assert_int_equal(r[i].result, 0);
        free(r[i].out);
    }
}

/* ---- proc_read: one read per request for every attestor --------------------- */

static void write_file(const char *dir, const char *name, const char *data, size_t len)
{
    char path[700];
    (void)snprintf(path, sizeof(path), "%s/%s", dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    close(fd);
}

/* A directory standing in for /proc/<pid>, whose files the test controls. */
static int fake_proc(struct fx *fx)
{
    const char *dir = fx_tmpdir(fx);
    int fd = open(dir, O_DIRECTORY | O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    close(fx->proc_dirfd);
    fx->proc_dirfd = fd;
    fx->peer.proc_dirfd = fd;
    return fd;
}

static int run_cached(struct fx *fx, struct attest_cache *cache)
{
    uint32_t failed = 0;
    fx->err[0] = '\0';
    selector_set_clear(fx->out);
    return attest_run_failed(fx->set, &fx->peer, cache, 1000, fx->out, &failed, fx->err,
                             sizeof(fx->err));
}

static void test_proc_read_once_per_request(void **state)
{
    struct fx *fx = *state;
    struct attest_cache *cache = NULL;
    assert_int_equal(attest_cache_new(&cache), 0);
    fake_proc(fx);
    write_file(fx->tmpdir, "cgroup", "0::/first\n", 10);
    load_ok(fx, PLUGIN("plugin_procread"));

    /* The plugin reads "cgroup" twice through the host: the same bytes at the
     * same address. */
    assert_int_equal(run_cached(fx, cache), 0);
    assert_true(selector_set_contains(fx->out, "procread:via:host"));
    assert_true(selector_set_contains(fx->out, "procread:twice:same"));
    assert_true(selector_set_contains(fx->out, "procread:line:0::/first"));
    assert_non_null(fx->peer.proc_read);

    /* Within the request, the file is not read again: what it says now is
     * not seen, so every attestor of one request sees one version. */
    write_file(fx->tmpdir, "cgroup", "0::/second\n", 11);
    const char *data = NULL;
    size_t len = 0;
    assert_int_equal(fx->peer.proc_read(&fx->peer, "cgroup", &data, &len), 0);
    assert_int_equal(len, 10);
    assert_string_equal(data, "0::/first\n");

    /* The next request reads it again and gets the new truth. */
    assert_int_equal(run_cached(fx, cache), 0);
    assert_true(selector_set_contains(fx->out, "procread:line:0::/second"));
    assert_false(selector_set_contains(fx->out, "procread:line:0::/first"));

    /* Without a cache (an older agent's view), the plugin reads through
     * proc_dirfd itself. */
    assert_int_equal(run_cached(fx, NULL), 0);
    assert_null(fx->peer.proc_read);
    assert_true(selector_set_contains(fx->out, "procread:via:dirfd"));
    assert_true(selector_set_contains(fx->out, "procread:line:0::/second"));

    /* A view from an agent that predates proc_read: struct_size says the
     * field is not there, so the plugin does not look at it. */
    fx->peer.struct_size = (uint32_t)SOCKID_PEER_SIZE_MIN;
    fx->peer.proc_read = NULL;
    assert_int_equal(run_cached(fx, cache), 0);
    assert_true(selector_set_contains(fx->out, "procread:via:dirfd"));
    attest_cache_free(cache);
}

static void test_proc_read_refusals(void **state)
{
    struct fx *fx = *state;
    struct attest_cache *cache = NULL;
    assert_int_equal(attest_cache_new(&cache), 0);
    fake_proc(fx);
    write_file(fx->tmpdir, "cgroup", "0::/\n", 4);
    write_file(fx->tmpdir, "status", "Name:\tx\n", 8);
    char link[700];
    (void)snprintf(link, sizeof(link), "%s/exe", fx->tmpdir);
    assert_int_equal(symlink("cgroup", link), 0);
    load_ok(fx, PLUGIN("plugin_good"));
    /* The good plugin stats "status" through the dirfd: it is there. */
    assert_int_equal(run_cached(fx, cache), 0);

    const char *data = (const char *)0x1;
    size_t len = 7;
    static const char *const bad[] = {
        "",        ".",
        "..",      "../cgroup",
        "a/b",     "/etc/passwd",
        "cgroup/", "Cgroup",
        "cg roup", "0123456789abcdef0123456789abcdef0", /* 33 characters */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(fx->peer.proc_read(&fx->peer, bad[i], &data, &len), -EINVAL);
        assert_ptr_equal(data, (const char *)0x1); /* written only on success */
        assert_int_equal(len, 7);
    }
    assert_int_equal(fx->peer.proc_read(&fx->peer, NULL, &data, &len), -EINVAL);
    assert_int_equal(fx->peer.proc_read(NULL, "cgroup", &data, &len), -EINVAL);
    /* Symbolic links are not followed (exe, cwd, root in a real /proc). */
    assert_int_equal(fx->peer.proc_read(&fx->peer, "exe", &data, &len), -ELOOP);
    assert_int_equal(fx->peer.proc_read(&fx->peer, "missing", &data, &len), -ENOENT);
    /* A failure is not kept: once the file is there, it is read. */
    write_file(fx->tmpdir, "missing", "here\n", 5);
    assert_int_equal(fx->peer.proc_read(&fx->peer, "missing", &data, &len), 0);
    assert_string_equal(data, "here\n");
    /* 32 characters is the longest name. */
    assert_int_equal(fx->peer.proc_read(&fx->peer, "0123456789abcdef0123456789abcdef", &data, &len),
                     -ENOENT);
    attest_cache_free(cache);
}

static void test_proc_read_bounds(void **state)
{
    struct fx *fx = *state;
    struct attest_cache *cache = NULL;
    assert_int_equal(attest_cache_new(&cache), 0);
    fake_proc(fx);
    char *big = malloc(SOCKID_PROC_READ_MAX + 1);
    assert_non_null(big);
    memset(big, 'x', SOCKID_PROC_READ_MAX + 1);
    write_file(fx->tmpdir, "atmax", big, SOCKID_PROC_READ_MAX);
    write_file(fx->tmpdir, "over", big, SOCKID_PROC_READ_MAX + 1);
    free(big);
    write_file(fx->tmpdir, "empty", "", 0);
    for (int i = 0; i < 4; i++) {
        char name[8];
        (void)snprintf(name, sizeof(name), "f%d", i);
        write_file(fx->tmpdir, name, "x\n", 2);
    }
    assert_int_equal(run_cached(fx, cache), 0); /* no plugin: only resets */

    const char *data;
    size_t len;
    assert_int_equal(fx->peer.proc_read(&fx->peer, "atmax", &data, &len), 0);
    assert_int_equal(len, SOCKID_PROC_READ_MAX);
    assert_int_equal(data[len], '\0');
    assert_int_equal(fx->peer.proc_read(&fx->peer, "over", &data, &len), -E2BIG);
    assert_int_equal(fx->peer.proc_read(&fx->peer, "empty", &data, &len), 0);
    assert_int_equal(len, 0);
    assert_string_equal(data, "");
    /* Two names kept so far; two more fit, a fifth distinct one does not... */
    assert_int_equal(fx->peer.proc_read(&fx->peer, "f0", &data, &len), 0);
    assert_int_equal(fx->peer.proc_read(&fx->peer, "f1", &data, &len), 0);
    assert_int_equal(fx->peer.proc_read(&fx->peer, "f2", &data, &len), -ENOBUFS);
    /* ...while those kept are still answered. */
    assert_int_equal(fx->peer.proc_read(&fx->peer, "atmax", &data, &len), 0);
    assert_int_equal(len, SOCKID_PROC_READ_MAX);
    /* A new request starts empty. */
    assert_int_equal(run_cached(fx, cache), 0);
    assert_int_equal(fx->peer.proc_read(&fx->peer, "f2", &data, &len), 0);
    assert_string_equal(data, "x\n");
    attest_cache_free(cache);
    assert_null(attest_cache_free(NULL));
}

/* ---- a whole directory ------------------------------------------------------ */

static void test_load_dir_sorted(void **state)
{
    struct fx *fx = *state;
    const char *dir = fx_tmpdir(fx);
    copy_file(PLUGIN("plugin_good"), dir, "30-good.so", 0644);
    copy_file(PLUGIN("plugin_slow"), dir, "10-slow.so", 0644);
    copy_file(PLUGIN("plugin_failing"), dir, "20-failing.so", 0755);
    /* Not plugins: ignored, even one that would be refused. */
    copy_file(PLUGIN("plugin_bad_abi"), dir, "00-bad.so.disabled", 0644);
    copy_file(PLUGIN("plugin_bad_abi"), dir, "README", 0644);

    struct attest *set = NULL;
    fx->err[0] = '\0';
    int r = attest_load(fx->cfg, dir, &set, fx->err, sizeof(fx->err));
    if (r != 0)
        fail_msg("attest_load: %d (%s)", r, fx->err);
    assert_non_null(set);
    assert_int_equal(attest_count(set), 3);
    assert_string_equal(attest_name(set, 0), "slow");
    assert_string_equal(attest_name(set, 1), "failing");
    assert_string_equal(attest_name(set, 2), "good");
    assert_null(attest_free(set));
}

static void test_load_dir_refusals(void **state)
{
    struct fx *fx = *state;
    const char *dir = fx_tmpdir(fx);
    copy_file(PLUGIN("plugin_good"), dir, "good.so", 0644);
    struct attest *set = (struct attest *)0x1; /* written only on success */

    /* A section for a plugin that is not there: most likely a typo. */
    cfg_section(fx->cfg, "nothere", false, NULL);
    fx->err[0] = '\0';
    assert_true(attest_load(fx->cfg, dir, &set, fx->err, sizeof(fx->err)) < 0);
    assert_contains(fx->err, "nothere");
    assert_ptr_equal(set, (struct attest *)0x1);
    print_message("refused as expected: %s\n", fx->err);
    assert_null(config_free(fx->cfg));
    assert_int_equal(config_new(&fx->cfg), 0);

    /* Two plugins with one name. */
    copy_file(PLUGIN("plugin_good"), dir, "good-again.so", 0644);
    fx->err[0] = '\0';
    assert_true(attest_load(fx->cfg, dir, &set, fx->err, sizeof(fx->err)) < 0);
    assert_contains(fx->err, "good");
    assert_ptr_equal(set, (struct attest *)0x1);
    print_message("refused as expected: %s\n", fx->err);
    char path[600];
    (void)snprintf(path, sizeof(path), "%s/good-again.so", dir);
    assert_int_equal(unlink(path), 0);

    /* One bad plugin stops the agent from starting. */
    copy_file(PLUGIN("plugin_bad_abi"), dir, "bad.so", 0644);
    fx->err[0] = '\0';
    assert_true(attest_load(fx->cfg, dir, &set, fx->err, sizeof(fx->err)) < 0);
    assert_contains(fx->err, "bad.so");
    assert_ptr_equal(set, (struct attest *)0x1);
    (void)snprintf(path, sizeof(path), "%s/bad.so", dir);
    assert_int_equal(unlink(path), 0);

    /* What is left loads. */
    assert_int_equal(attest_load(fx->cfg, dir, &set, fx->err, sizeof(fx->err)), 0);
    assert_int_equal(attest_count(set), 1);
    assert_null(attest_free(set));
    set = (struct attest *)0x1;

    /* A directory anyone may add files to. */
    assert_int_equal(chmod(dir, 0777), 0);
    fx->err[0] = '\0';
    assert_true(attest_load(fx->cfg, dir, &set, fx->err, sizeof(fx->err)) < 0);
    assert_contains(fx->err, "writable");
    assert_ptr_equal(set, (struct attest *)0x1);
    print_message("refused as expected: %s\n", fx->err);
    assert_int_equal(chmod(dir, 0700), 0);

    /* No directory at all. */
    (void)snprintf(path, sizeof(path), "%s/missing", dir);
    fx->err[0] = '\0';
    assert_true(attest_load(fx->cfg, path, &set, fx->err, sizeof(fx->err)) < 0);
    assert_contains(fx->err, "missing");
}

static void test_free_null(void **state)
{
    (void)state;
    assert_null(attest_free(NULL));
}

#define T(f) cmocka_unit_test_setup_teardown(f, fx_setup, fx_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_good_plugin_runs),
        T(test_good_plugin_gets_its_config),
        T(test_wrong_abi_version),
        T(test_small_struct),
        T(test_missing_symbol),
        T(test_missing_file),
        T(test_init_failure),
        T(test_init_failure_on_purpose),
        T(test_writable_plugin_refused),
        T(test_failing_optional),
        T(test_failing_after_good),
        T(test_failing_required),
        T(test_good_required),
        T(test_invalid_selector_fails_plugin),
        T(test_slow_optional),
        T(test_slow_required),
        T(test_slow_does_not_starve_next),
        T(test_concurrent_runs),
        T(test_proc_read_once_per_request),
        T(test_proc_read_refusals),
        T(test_proc_read_bounds),
        T(test_load_dir_sorted),
        T(test_load_dir_refusals),
        cmocka_unit_test(test_free_null),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
