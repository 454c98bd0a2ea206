/* test_ns: loads ns.so as the agent does (dlopen, RTLD_NOW | RTLD_LOCAL, the
 * one exported symbol), and checks the descriptor, init() with good and bad
 * settings, attest() on this process and on a child, what it does when
 * emit() refuses, and attest() on many threads at once.
 *
 * A template for testing a plugin of your own: it needs nothing but
 * <sockid/attestor.h>. Run with `make check`, or `./test_ns ./ns.so`. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sockid/attestor.h>

#define COLLECT_MAX 16
#define SEL_MAX     (SOCKID_SELECTOR_TYPE_MAX + SOCKID_SELECTOR_KEY_MAX + SOCKID_SELECTOR_VALUE_MAX + 3)
#define THREADS     8
#define ROUNDS      200

static const struct sockid_attestor *plugin;
static int failures;

static void check(bool ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void check(bool ok, const char *fmt, ...)
{
    va_list ap;
    if (ok)
        return;
    failures++;
    va_start(ap, fmt);
    fputs("FAIL: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* What emit() received, as the host would store it; refuse_rc != 0 makes
 * every call fail with it, as the host does past its limits. */
struct collect {
    size_t n;
    char items[COLLECT_MAX][SEL_MAX];
    int refuse_rc;
};

static int collect_emit(void *ctx, const char *type, const char *key, const char *value)
{
    struct collect *c = ctx;
    if (c->refuse_rc)
        return c->refuse_rc;
    if (c->n == COLLECT_MAX)
        return -E2BIG;
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

static uint64_t now_ns(void)
{
    struct timespec ts;
    (void)clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * UINT64_C(1000000000) + (uint64_t)ts.tv_nsec;
}

/* The view the host gives a plugin, for process pid. */
static struct sockid_peer peer_of(pid_t pid)
{
    char path[64];
    (void)snprintf(path, sizeof(path), "/proc/%d", (int)pid);
    struct sockid_peer peer = {
        .struct_size = sizeof(peer),
        .pid = pid,
        .uid = (uint32_t)geteuid(),
        .gid = (uint32_t)getegid(),
        .proc_dirfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC),
        .deadline_ns = now_ns() + UINT64_C(1000000000),
    };
    check(peer.proc_dirfd >= 0, "open %s: %s", path, strerror(errno));
    return peer;
}

static int init_with(const char *key, const char *value, void **ret_state, char *err,
                     size_t err_len)
{
    const char *keys[] = {key}, *values[] = {value};
    struct sockid_attestor_config config = {
        .struct_size = sizeof(config),
        .n = key ? 1 : 0,
        .keys = keys,
        .values = values,
    };
    err[0] = '\0';
    return plugin->init(&config, ret_state, err, err_len);
}

static void test_descriptor(void)
{
    check(plugin->abi_version == SOCKID_ATTESTOR_ABI_VERSION, "abi_version is %" PRIu32,
          plugin->abi_version);
    check(plugin->struct_size == sizeof(struct sockid_attestor), "struct_size is %" PRIu32,
          plugin->struct_size);
    check(plugin->name && strcmp(plugin->name, "ns") == 0, "name is %s",
          plugin->name ? plugin->name : "(null)");
    check(plugin->init && plugin->attest && plugin->fini, "a function is missing");
    for (size_t i = 0; i < sizeof(plugin->spare) / sizeof(plugin->spare[0]); i++)
        check(plugin->spare[i] == NULL, "spare[%zu] is set", i);
}

static void test_init(void)
{
    static const struct {
        const char *key, *value, *why; /* why: a word the error must hold, or NULL for success */
    } cases[] = {
        {NULL, NULL, NULL},
        {"namespaces", "net", NULL},
        {"namespaces", " pid , net,user ", NULL},
        {"namespaces", "pid,mnt,net,user,uts,ipc,cgroup,time", NULL},
        {"colour", "blue", "unknown key 'colour'"},
        {"namespaces", "", "empty"},
        {"namespaces", "net,", "empty"},
        {"namespaces", "net,bogus", "unknown namespace 'bogus'"},
        {"namespaces", "net,net", "twice"},
        {"namespaces", "pid_for_children", "unknown namespace"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char err[256];
        void *state = NULL;
        int r = init_with(cases[i].key, cases[i].value, &state, err, sizeof(err));
        if (!cases[i].why) {
            check(r == 0, "init(%s = '%s') failed: %s", cases[i].key, cases[i].value, err);
            plugin->fini(state);
        } else {
            check(r == -EINVAL, "init(%s = '%s') returned %d, expected -EINVAL", cases[i].key,
                  cases[i].value, r);
            check(strstr(err, cases[i].why) != NULL, "init(%s = '%s') says '%s', not '%s'",
                  cases[i].key, cases[i].value, err, cases[i].why);
        }
    }
}

/* ns:TYPE:INODE as the plugin should say it, for process pid. */
static void expected(pid_t pid, const char *type, char *out, size_t len)
{
    char path[64];
    struct stat st;
    (void)snprintf(path, sizeof(path), "/proc/%d/ns/%s", (int)pid, type);
    check(stat(path, &st) == 0, "stat %s: %s", path, strerror(errno));
    (void)snprintf(out, len, "ns:%s:%" PRIu64, type, (uint64_t)st.st_ino);
}

static void test_attest_self_and_child(void)
{
    static const char *const all[] = {"pid", "mnt", "net", "user", "uts", "ipc", "cgroup"};
    char err[256], want[SEL_MAX];
    void *state = NULL;
    struct collect got = {0};
    struct sockid_peer peer;
    int r;

    check(init_with(NULL, NULL, &state, err, sizeof(err)) == 0, "init: %s", err);
    peer = peer_of(getpid());
    r = plugin->attest(state, &peer, collect_emit, &got);
    check(r == 0, "attest on this process returned %d", r);
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
        expected(getpid(), all[i], want, sizeof(want));
        check(collect_has(&got, want), "attest on this process did not emit %s", want);
    }
    (void)close(peer.proc_dirfd);

    /* A child (same namespaces here) through its own dirfd. */
    pid_t child = fork();
    if (child == 0) {
        pause();
        _exit(0);
    }
    check(child > 0, "fork: %s", strerror(errno));
    peer = peer_of(child);
    memset(&got, 0, sizeof(got));
    r = plugin->attest(state, &peer, collect_emit, &got);
    check(r == 0, "attest on a child returned %d", r);
    expected(child, "net", want, sizeof(want));
    check(collect_has(&got, want), "attest on a child did not emit %s", want);

    /* What the host refuses, the plugin passes on: no selectors from it. */
    memset(&got, 0, sizeof(got));
    got.refuse_rc = -ETIMEDOUT;
    r = plugin->attest(state, &peer, collect_emit, &got);
    check(r == -ETIMEDOUT, "attest with emit() refusing returned %d, expected -ETIMEDOUT", r);

    /* A view from a host older than the fields the plugin reads. */
    struct sockid_peer small = peer;
    small.struct_size = 8;
    memset(&got, 0, sizeof(got));
    r = plugin->attest(state, &small, collect_emit, &got);
    check(r == -EINVAL && got.n == 0, "attest with a too small view returned %d", r);

    (void)close(peer.proc_dirfd);
    (void)kill(child, SIGKILL);
    (void)waitpid(child, NULL, 0);
    plugin->fini(state);

    /* namespaces = net: that one only. */
    check(init_with("namespaces", "net", &state, err, sizeof(err)) == 0, "init: %s", err);
    peer = peer_of(getpid());
    memset(&got, 0, sizeof(got));
    r = plugin->attest(state, &peer, collect_emit, &got);
    expected(getpid(), "net", want, sizeof(want));
    check(r == 0 && got.n == 1 && collect_has(&got, want),
          "with namespaces = net, attest returned %d and %zu selectors", r, got.n);
    (void)close(peer.proc_dirfd);
    plugin->fini(state);
}

struct thread_arg {
    void *state;
    int errors;
};

static void *thread_main(void *opaque)
{
    struct thread_arg *arg = opaque;
    char want[SEL_MAX];
    expected(getpid(), "net", want, sizeof(want));
    for (int i = 0; i < ROUNDS; i++) {
        struct collect got = {0};
        struct sockid_peer peer = peer_of(getpid());
        if (plugin->attest(arg->state, &peer, collect_emit, &got) != 0 || !collect_has(&got, want))
            arg->errors++;
        (void)close(peer.proc_dirfd);
    }
    return NULL;
}

/* The agent calls attest() from all its event loops at once. */
static void test_threads(void)
{
    pthread_t threads[THREADS];
    struct thread_arg args[THREADS];
    char err[256];
    void *state = NULL;

    check(init_with(NULL, NULL, &state, err, sizeof(err)) == 0, "init: %s", err);
    for (int i = 0; i < THREADS; i++) {
        args[i] = (struct thread_arg){.state = state};
        check(pthread_create(&threads[i], NULL, thread_main, &args[i]) == 0, "pthread_create");
    }
    for (int i = 0; i < THREADS; i++) {
        (void)pthread_join(threads[i], NULL);
        check(args[i].errors == 0, "thread %d: %d of %d calls went wrong", i, args[i].errors,
              ROUNDS);
    }
    plugin->fini(state);
}

int main(int argc, char **argv)
{
    const char *path = argc > 1 ? argv[1] : "./ns.so";
    void *handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
        fprintf(stderr, "FAIL: dlopen %s: %s\n", path, dlerror());
        return 1;
    }
    sockid_attestor_entry_fn entry;
    *(void **)&entry = dlsym(handle, SOCKID_ATTESTOR_SYMBOL);
    if (!entry || !(plugin = entry())) {
        fprintf(stderr, "FAIL: %s exports no working %s()\n", path, SOCKID_ATTESTOR_SYMBOL);
        return 1;
    }
    test_descriptor();
    test_init();
    test_attest_self_and_child();
    test_threads();
    (void)dlclose(handle);
    if (failures) {
        fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    printf("test_ns: all checks passed\n");
    return 0;
}
