/* sockid-agent: configuration, kernel feature probe, plugins, then serve. */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "admin.h"
#include "attest.h"
#include "config.h"
#include "keys.h"
#include "log.h"
#include "peer.h"
#include "server.h"
#include "store.h"

enum {
    EXIT_RUNTIME = 1, /* could not start or serve */
    EXIT_USAGE = 2,   /* bad flags or config */
};

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: sockid-agent [OPTIONS]\n"
            "\n"
            "Kernel-attested workload identity agent: answers workloads on a Unix socket\n"
            "with what the kernel says about them.\n"
            "\n"
            "Options (each overrides the config file's [agent] key of the same name):\n"
            "  -c, --config PATH        config file (default " CONFIG_DEFAULT_PATH
            "; missing is fine\n"
            "                           unless given explicitly)\n"
            "  -s, --socket PATH        workload socket (default /run/sockid/agent.sock)\n"
            "      --admin-socket PATH  admin socket (default /run/sockid/admin.sock)\n"
            "      --metrics-socket PATH\n"
            "                           also serve Prometheus metrics over HTTP on this\n"
            "                           socket (default: none)\n"
            "  -d, --data-dir DIR       state directory (default /var/lib/sockid)\n"
            "      --trust-domain NAME  trust domain of issued identities (default example.org)\n"
            "      --plugin-dir DIR     attestor plugins (default: " SOCKID_PLUGIN_RELDIR "\n"
            "                           relative to this binary's directory)\n"
            "      --log-format FORMAT  text or json (default text)\n"
            "  -v, --verbose            log debug messages too\n"
            "  -h, --help               show this help\n"
            "  -V, --version            show the version\n");
}

/* store_load's callback, on the store's thread: the builder takes the
 * entry. */
static int main_add_entry(void *builder, struct entry *e)
{
    return entries_builder_add(builder, e);
}

/* Where plugins are when the config does not say: the install layout,
 * relative to this binary, so the build tree and an install both work. */
static char *default_plugin_dir(void)
{
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n <= 0)
        return NULL;
    exe[n] = '\0';
    char *out = NULL;
    if (asprintf(&out, "%s/%s", dirname(exe), SOCKID_PLUGIN_RELDIR) < 0)
        return NULL;
    char *real = realpath(out, NULL);
    if (real) {
        free(out);
        return real;
    }
    return out;
}

/* Every connection is a file descriptor: take the hard limit as the soft
 * one (the usual soft limit, 1024, is below the default max_connections),
 * and say so when even that cannot hold max_connections. */
static void raise_file_limit(const struct config *cfg)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
        (void)getrlimit(RLIMIT_NOFILE, &rl);
    }
    /* Each connection holds its socket, a pidfd and a /proc dirfd. */
    uint64_t need = (uint64_t)cfg->max_connections * 3u + 64u;
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need)
        log_warn("the file limit (%llu) cannot hold max_connections (%u, about %llu files); "
                 "raise it (LimitNOFILE=, ulimit -n) or lower max_connections",
                 (unsigned long long)rl.rlim_cur, cfg->max_connections, (unsigned long long)need);
}

static int ensure_data_dir(const char *dir, char *err, size_t err_len)
{
    struct stat st;
    if (stat(dir, &st) == 0) {
        if (!S_ISDIR(st.st_mode)) {
            (void)snprintf(err, err_len, "data directory %s is not a directory", dir);
            return -ENOTDIR;
        }
        return 0;
    }
    if (errno != ENOENT || mkdir(dir, 0700) < 0) {
        (void)snprintf(err, err_len, "cannot create data directory %s: %s", dir, strerror(errno));
        return -errno;
    }
    return 0;
}

int main(int argc, char **argv)
{
    static const struct option options[] = {
        {"config", required_argument, NULL, 'c'},
        {"socket", required_argument, NULL, 's'},
        {"admin-socket", required_argument, NULL, 'A'},
        {"metrics-socket", required_argument, NULL, 'M'},
        {"data-dir", required_argument, NULL, 'd'},
        {"trust-domain", required_argument, NULL, 'T'},
        {"plugin-dir", required_argument, NULL, 'P'},
        {"log-format", required_argument, NULL, 'L'},
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {0},
    };
    static const char shortopts[] = "c:s:d:vhV";
    struct config *cfg = NULL;
    struct attest *attest = NULL;
    struct server *server = NULL;
    struct store *store = NULL;
    struct entries_registry *registry = NULL;
    struct keys *keys = NULL;
    struct admin admin;
    bool admin_ready = false;
    char *plugin_dir = NULL;
    char err[CONFIG_ERR_MAX];
    int status = EXIT_USAGE;
    bool verbose = false;
    const char *config_path = NULL;
    int opt;

    /* First pass: only --config, --help and --version, so the file is read
     * before the flags that override it. */
    opterr = 0;
    while ((opt = getopt_long(argc, argv, shortopts, options, NULL)) != -1) {
        if (opt == 'c')
            config_path = optarg;
        else if (opt == 'h') {
            usage(stdout);
            return 0;
        } else if (opt == 'V') {
            printf("sockid-agent %s\n", SOCKID_VERSION);
            return 0;
        }
    }

    if (config_new(&cfg) < 0) {
        fprintf(stderr, "sockid-agent: out of memory\n");
        return EXIT_RUNTIME;
    }
    const char *path = config_path ? config_path : CONFIG_DEFAULT_PATH;
    int r = config_load_file(cfg, path, err, sizeof(err));
    if (r == -ENOENT && !config_path) {
        r = 0; /* no config file: run on defaults and flags */
    } else if (r < 0) {
        fprintf(stderr, "sockid-agent: %s\n", err);
        goto out;
    }

    opterr = 1;
    optind = 1;
    while ((opt = getopt_long(argc, argv, shortopts, options, NULL)) != -1) {
        const char *key = NULL;
        switch (opt) {
        case 'c':
            continue;
        case 's':
            key = "socket";
            break;
        case 'A':
            key = "admin_socket";
            break;
        case 'M':
            key = "metrics_socket";
            break;
        case 'd':
            key = "data_dir";
            break;
        case 'T':
            key = "trust_domain";
            break;
        case 'P':
            key = "plugin_dir";
            break;
        case 'L':
            key = "log_format";
            break;
        case 'v':
            verbose = true;
            continue;
        default:
            fprintf(stderr, "sockid-agent: run 'sockid-agent --help' for the options\n");
            goto out;
        }
        if (config_set(cfg, key, optarg, err, sizeof(err)) < 0) {
            fprintf(stderr, "sockid-agent: %s\n", err);
            goto out;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "sockid-agent: unexpected argument '%s'; run 'sockid-agent --help'\n",
                argv[optind]);
        goto out;
    }

    /* A retired key stays until its tokens expire (max_ttl), and at most
     * KEYS_MAX keys are kept: rotating faster than that allows would stall
     * the schedule. */
    if ((uint64_t)cfg->key_rotation * (KEYS_MAX - 1) < cfg->max_ttl) {
        fprintf(stderr,
                "sockid-agent: key_rotation (%u s) is too short for max_ttl (%u s): a retired key "
                "is kept until its tokens expire and at most %u keys are kept, so key_rotation "
                "must be at least max_ttl / %u (%u s)\n",
                cfg->key_rotation, cfg->max_ttl, KEYS_MAX, KEYS_MAX - 1,
                (cfg->max_ttl + KEYS_MAX - 2) / (KEYS_MAX - 1));
        goto out;
    }

    status = EXIT_RUNTIME;
    log_setup(cfg->log_format, verbose ? LOG_DEBUG : LOG_INFO);
    if (sodium_init() < 0) {
        log_error("cannot initialize libsodium");
        goto out;
    }
    struct timespec t0;
    (void)clock_gettime(CLOCK_MONOTONIC, &t0);
    uint64_t started_ms = (uint64_t)t0.tv_sec * 1000u + (uint64_t)t0.tv_nsec / 1000000u;

    struct peer_features features;
    peer_probe(&features);
    log_info("sockid-agent %s: SO_PEERPIDFD %s, PIDFD_GET_INFO %s, SO_PEERGROUPS %s",
             SOCKID_VERSION, features.peer_pidfd ? "yes" : "no",
             features.pidfd_get_info ? "yes" : "no", features.peer_groups ? "yes" : "no");
    if (!features.peer_pidfd) {
        if (cfg->require_peer_pidfd) {
            log_error("this kernel has no SO_PEERPIDFD (Linux 6.5+) and require_peer_pidfd is "
                      "set; run on a newer kernel or unset require_peer_pidfd");
            goto out;
        }
        log_warn("this kernel has no SO_PEERPIDFD: falling back to pidfd_open() after accept, "
                 "which cannot tell a peer that exited before accept from a newer process with "
                 "its pid if that process started before the accept; use Linux 6.5+ or set "
                 "require_peer_pidfd to refuse to run like this");
    }

    raise_file_limit(cfg);

    if (ensure_data_dir(cfg->data_dir, err, sizeof(err)) < 0) {
        log_error("%s", err);
        goto out;
    }

    if (store_open(cfg->data_dir, &store, err, sizeof(err)) < 0) {
        log_error("%s", err);
        goto out;
    }
    /* After the store: its lock makes this the only agent on the data dir. */
    if (keys_open(cfg->data_dir, (int64_t)time(NULL), &keys, err, sizeof(err)) < 0) {
        log_error("%s", err);
        goto out;
    }
    /* The store hands each entry to the builder as it reads it. */
    struct entries_builder *builder = NULL;
    struct entries_snapshot *snap = NULL;
    size_t n_loaded = 0;
    r = entries_builder_new(&builder);
    if (r < 0) {
        log_error("cannot load the entries: %s", strerror(-r));
        goto out;
    }
    if (store_load(store, main_add_entry, builder, &n_loaded, err, sizeof(err)) < 0) {
        builder = entries_builder_free(builder);
        log_error("%s", err);
        goto out;
    }
    r = entries_builder_finish(builder, &snap);
    if (r == 0 && entries_registry_new(snap, &registry) < 0) {
        snap = entries_snapshot_unref(snap);
        r = -ENOMEM;
    }
    /* The registry holds the load's reference from here; admin takes its own. */
    if (r < 0 || admin_init(&admin, cfg, store, registry, keys, snap, started_ms) < 0) {
        log_error("out of memory loading %zu entries", n_loaded);
        goto out;
    }
    admin_ready = true;
    /* The load's temporaries (the builder's arrays, the sorts' keys) were
     * freed between allocations that stay: give those pages back. */
    (void)malloc_trim(0);
    log_info("loaded %zu entries from %s/%s", n_loaded, cfg->data_dir, STORE_FILE);

    plugin_dir = cfg->plugin_dir ? strdup(cfg->plugin_dir) : default_plugin_dir();
    if (!plugin_dir) {
        log_error("cannot find the plugin directory; set plugin_dir in the config or pass "
                  "--plugin-dir");
        goto out;
    }
    if (attest_load(cfg, plugin_dir, &attest, err, sizeof(err)) < 0) {
        log_error("%s", err);
        goto out;
    }
    for (size_t i = 0; i < attest_count(attest); i++)
        log_info("attestor %s loaded from %s", attest_name(attest, i), plugin_dir);
    if (attest_count(attest) == 0)
        log_warn("no attestor plugins in %s: workloads will carry no selectors", plugin_dir);

    /* SIGTERM and SIGINT arrive through the server's signalfd; SIGPIPE never
     * (sends use MSG_NOSIGNAL, but plugins might write to pipes). */
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    /* A shell starts background jobs with SIGINT ignored; an ignored signal
     * never reaches the signalfd, and the agent must stop on it. */
    if (signal(SIGTERM, SIG_DFL) == SIG_ERR || signal(SIGINT, SIG_DFL) == SIG_ERR ||
        sigprocmask(SIG_BLOCK, &mask, NULL) < 0 || signal(SIGPIPE, SIG_IGN) == SIG_ERR) {
        log_error("cannot set up signal handling: %s", strerror(errno));
        goto out;
    }

    /* A key past key_rotation while the agent was down is replaced now. */
    admin_maintain_keys(&admin, (int64_t)time(NULL));
    if (server_new(cfg, attest, &admin, registry, keys, &features, &server, err, sizeof(err)) < 0) {
        log_error("%s", err);
        goto out;
    }
    /* Status and metrics read the server's counters through the admin. */
    admin_attach(&admin, attest, &features, server_admin_stats, server);
    status = server_run(server) < 0 ? EXIT_RUNTIME : 0;

out:
    server = server_free(server);
    if (admin_ready)
        admin_fini(&admin);
    registry = entries_registry_free(registry);
    store = store_close(store);
    keys = keys_close(keys);
    attest = attest_free(attest);
    free(plugin_dir);
    cfg = config_free(cfg);
    return status;
}
