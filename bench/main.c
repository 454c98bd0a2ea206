/* sockid-bench: options and the order of the phases of a run.
 *
 * A run: preload the data dirs; start the agents (10, 10,000 and 100,000
 * entries), timing each start; note their idle memory; capture the
 * agent's FetchToken and WhoAmI answers and start the floor server with
 * them; hold many connections open and note the memory; run every
 * scenario as interleaved rounds against the floor and the agents; stop
 * everything. --runs repeats the whole run and reports medians. */
#define _GNU_SOURCE
#include <errno.h>
#include <ftw.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "frame.h"

enum {
    EXIT_ERRORS = 1, /* the bench ran, and some request failed */
    EXIT_USAGE = 2,
    EXIT_SETUP = 3, /* the bench could not run */
};

#define ALL_TARGETS                                                                                \
    (BENCH_TARGET_BIT(BENCH_FLOOR) | BENCH_TARGET_BIT(BENCH_AGENT_10) |                            \
     BENCH_TARGET_BIT(BENCH_AGENT_10K) | BENCH_TARGET_BIT(BENCH_AGENT_100K))
#define FLOOR_AND_10 (BENCH_TARGET_BIT(BENCH_FLOOR) | BENCH_TARGET_BIT(BENCH_AGENT_10))

const struct bench_scenario bench_scenarios[BENCH_SCENARIOS] = {
    {"fresh", BENCH_FETCH, true, 1, ALL_TARGETS},
    {"fresh", BENCH_FETCH, true, 16, FLOOR_AND_10},
    {"persistent", BENCH_FETCH, false, 1, FLOOR_AND_10},
    {"persistent", BENCH_FETCH, false, 64, ALL_TARGETS},
    {"uncached", BENCH_FETCH_UNCACHED, false, 1, FLOOR_AND_10},
    {"uncached", BENCH_FETCH_UNCACHED, false, 64, FLOOR_AND_10},
    {"whoami", BENCH_WHOAMI, true, 1, FLOOR_AND_10},
};

const char *const bench_target_names[BENCH_TARGETS] = {"floor", "agent-10", "agent-10k",
                                                       "agent-100k"};
const size_t bench_target_entries[BENCH_TARGETS] = {0, 10, 10000, 100000};

/* What one run has running. */
struct bench_env {
    const struct bench_options *o;
    char dir[BENCH_PATH_MAX];
    bool made_dir;
    struct agentproc agents[BENCH_TARGETS]; /* [BENCH_FLOOR] unused */
    struct floorsrv floor;
    uint8_t fetch[BENCH_RESPONSE_MAX], whoami[BENCH_RESPONSE_MAX];
    size_t fetch_len, whoami_len;
};

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: sockid-bench [OPTIONS]\n"
            "\n"
            "Measures sockid-agent against a floor server (accept, peer credentials, one\n"
            "fixed framed answer) with the same clients, in interleaved rounds, and prints\n"
            "the ratios. Starts its own agents in a temporary directory. See\n"
            "docs/performance.md.\n"
            "\n"
            "Options:\n"
            "      --agent PATH     sockid-agent to measure (default: ../sbin/sockid-agent\n"
            "                       relative to this program's directory)\n"
            "      --runs N         repeat the whole run N times and report medians (1..%d;\n"
            "                       default 1)\n"
            "      --short          a smoke run: 10 entries only, short rounds (for CI)\n"
            "      --json           print one JSON document instead of the table\n"
            "      --json-file PATH also write the JSON document to PATH\n"
            "      --workers N      event loops of the agent and the floor (default: online\n"
            "                       CPUs)\n"
            "      --seconds S      length of one measured round (default 2, --short 0.3)\n"
            "      --rounds N       rounds per server and scenario (default 3, --short 1)\n"
            "      --scenario NAME  only fresh, persistent, uncached or whoami\n"
            "      --held N         connections held open for the memory figure (default 1000)\n"
            "      --starts N       starts of the 100,000-entry agent per run (default 3)\n"
            "      --seed N         seed of the preloaded entries (default 1)\n"
            "      --plugin-dir DIR the agent's attestor plugins (default: its own)\n"
            "      --keep           keep the temporary directory (agent logs, data)\n"
            "  -h, --help           show this help\n"
            "\n"
            "Exit status: 0 when every request was answered correctly, 1 when some were\n"
            "not, 2 for a usage error, 3 when the bench could not set up.\n",
            BENCH_RUNS_MAX);
}

static char *bench_default_agent(void)
{
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n <= 0)
        return NULL;
    exe[n] = '\0';
    char *out = NULL;
    if (asprintf(&out, "%s/../sbin/sockid-agent", dirname(exe)) < 0)
        return NULL;
    char *real = realpath(out, NULL);
    if (real) {
        free(out);
        return real;
    }
    return out;
}

static bool bench_has(const struct bench_options *o, int t)
{
    return !o->short_mode || t == BENCH_FLOOR || t == BENCH_AGENT_10;
}

static bool bench_parse_uint(const char *s, unsigned long long max, unsigned long long *ret)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-' || v > max)
        return false;
    *ret = v;
    return true;
}

static int bench_rm(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    (void)remove(path);
    return 0;
}

static pid_t bench_pid(const struct bench_env *env, int t)
{
    return t == BENCH_FLOOR ? env->floor.pid : env->agents[t].pid;
}

static const char *bench_sock(const struct bench_env *env, int t)
{
    return t == BENCH_FLOOR ? env->floor.sock : env->agents[t].sock;
}

static void bench_note(const struct bench_options *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Progress goes to stderr, so that stdout holds only the result. */
static void bench_note(const struct bench_options *o, const char *fmt, ...)
{
    (void)o;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "sockid-bench: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
}

/* --- phases ------------------------------------------------------------- */

static unsigned bench_count_attestors(const struct agentproc *a)
{
    FILE *f = fopen(a->log, "re");
    unsigned n = 0;
    char line[2048];
    if (!f)
        return 0;
    while (fgets(line, sizeof(line), f))
        n += strstr(line, "info: attestor ") && strstr(line, " loaded from ");
    (void)fclose(f);
    return n;
}

static int bench_start_agents(struct bench_env *env, struct bench_run *res, char *err,
                              size_t err_len)
{
    const struct bench_options *o = env->o;
    for (int t = BENCH_AGENT_10; t < BENCH_TARGETS; t++) {
        if (!res->has[t])
            continue;
        struct agentproc *a = &env->agents[t];
        unsigned starts = t == BENCH_AGENT_100K ? o->starts : 1;
        for (unsigned i = 0; i < starts; i++) {
            if (i > 0 && agentproc_stop(a) < 0) {
                (void)snprintf(err, err_len, "%s did not stop cleanly; see %s",
                               bench_target_names[t], a->log);
                return -ECHILD;
            }
            int r = agentproc_start(a, o->agent, 60000, err, err_len);
            if (r < 0)
                return r;
            if (i == 0)
                res->ready_ms[t] = a->ready_ms;
            if (t == BENCH_AGENT_100K && res->n_ready_100k < BENCH_STARTS_MAX)
                res->ready_100k_ms[res->n_ready_100k++] = a->ready_ms;
        }
        struct agentproc_stats s;
        if (agentproc_sample(a->pid, &s) == 0) {
            res->idle_rss_mib[t] = (double)s.rss_kib / 1024.0;
            res->idle_hwm_mib[t] = (double)s.hwm_kib / 1024.0;
            res->idle_anon_mib[t] = (double)s.anon_kib / 1024.0;
            res->start_cpu_ms[t] = s.cpu_ms;
        }
        bench_note(o, "%s (pid %ld) ready in %.1f ms, idle RSS %.1f MiB", bench_target_names[t],
                   (long)a->pid, a->ready_ms, res->idle_rss_mib[t]);
    }
    res->attestors = bench_count_attestors(&env->agents[BENCH_AGENT_10]);
    return 0;
}

/* The bench's own CPU time: its client threads' share of the machine. */
static double bench_self_cpu_ms(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts) < 0)
        return NAN;
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* One round against server t, its CPU time added to the cell. */
static int bench_round(struct bench_env *env, const struct bench_scenario *sc, int t,
                       double seconds, struct client_round *acc, struct bench_cell *cell)
{
    struct client_spec spec = {
        .sock = bench_sock(env, t),
        .kind = sc->kind,
        .fresh = sc->fresh,
        .clients = sc->clients,
        .seconds = seconds,
    };
    struct agentproc_stats before, after;
    pid_t pid = bench_pid(env, t);
    double self0 = bench_self_cpu_ms();
    int r = agentproc_sample(pid, &before);
    if (r == 0)
        r = client_round(&spec, acc);
    if (r == 0)
        r = agentproc_sample(pid, &after);
    if (r < 0)
        return r;
    cell->cpu_ms += after.cpu_ms - before.cpu_ms;
    cell->client_cpu_ms += bench_self_cpu_ms() - self0;
    cell->rss_mib = (double)after.rss_kib / 1024.0;
    cell->hwm_mib = (double)after.hwm_kib / 1024.0;
    return 0;
}

static int bench_scenario(struct bench_env *env, int s, struct bench_run *res)
{
    const struct bench_options *o = env->o;
    const struct bench_scenario *sc = &bench_scenarios[s];
    int order[BENCH_TARGETS], m = 0, r = 0;
    struct client_round acc[BENCH_TARGETS] = {0};
    for (int t = 0; t < BENCH_TARGETS; t++)
        if ((sc->targets & BENCH_TARGET_BIT(t)) && res->has[t])
            order[m++] = t;
    /* Warm-up, not counted: the agent's per-loop token caches fill and
     * both servers' pages are touched. */
    for (int i = 0; i < m && r == 0; i++) {
        struct client_round warm = {0};
        struct bench_cell scratch = {0};
        r = bench_round(env, sc, order[i], o->warmup_s, &warm, &scratch);
        res->errors += warm.errors;
        if (warm.errors)
            bench_note(o, "%s %u clients, %s, warm-up: %llu errors, the first: %s", sc->name,
                       sc->clients, bench_target_names[order[i]], (unsigned long long)warm.errors,
                       warm.first_error);
        client_round_clear(&warm);
    }
    /* ABBA: the order reverses every round, so a drift of the machine
     * during the scenario does not favour whoever goes first. */
    for (unsigned round = 0; round < o->rounds && r == 0; round++)
        for (int i = 0; i < m && r == 0; i++) {
            int t = order[round % 2 ? m - 1 - i : i];
            r = bench_round(env, sc, t, o->round_s, &acc[t], &res->cells[s][t]);
        }
    for (int i = 0; i < m; i++) {
        int t = order[i];
        if (r == 0) {
            report_cell(&acc[t], &res->cells[s][t]);
            res->errors += acc[t].errors;
            bench_note(
                o, "%-10s %2u clients %-10s %9.0f req/s  p50 %7.1f us  p99 %7.1f us  %llu errors",
                sc->name, sc->clients, bench_target_names[t], res->cells[s][t].rps,
                res->cells[s][t].p50_us, res->cells[s][t].p99_us,
                (unsigned long long)acc[t].errors);
        }
        client_round_clear(&acc[t]);
    }
    return r;
}

static int bench_hold(struct bench_env *env, struct bench_run *res)
{
    const struct bench_options *o = env->o;
    int *fds = calloc(o->held ? o->held : 1, sizeof(*fds));
    if (!fds)
        return -ENOMEM;
    for (int t = 0; t < BENCH_TARGETS; t++) {
        if (!res->has[t])
            continue;
        char why[256] = "";
        size_t failed = client_hold(bench_sock(env, t), o->held, fds, why, sizeof(why));
        struct agentproc_stats s;
        if (agentproc_sample(bench_pid(env, t), &s) == 0) {
            res->held_rss_mib[t] = (double)s.rss_kib / 1024.0;
            res->held_hwm_mib[t] = (double)s.hwm_kib / 1024.0;
            res->held_anon_mib[t] = (double)s.anon_kib / 1024.0;
        }
        client_release(fds, o->held);
        res->held_failed[t] = failed;
        res->errors += failed;
        if (failed)
            bench_note(o, "%s: %zu of %zu held connections failed, the first: %s",
                       bench_target_names[t], failed, o->held, why);
        else
            bench_note(o, "%s with %zu connections open: RSS %.1f MiB", bench_target_names[t],
                       o->held, res->held_rss_mib[t]);
        /* Let the server take in the closes before the next one is asked. */
        wire_sleep_us(200000);
    }
    free(fds);
    return 0;
}

static int bench_run_one(const struct bench_options *o, unsigned index, struct bench_run *res)
{
    char err[512] = "";
    int r = 0;
    struct bench_env *env = calloc(1, sizeof(*env));
    if (!env)
        return -ENOMEM;
    env->o = o;
    env->floor.pid = -1;
    for (int t = 0; t < BENCH_TARGETS; t++) {
        env->agents[t].pid = -1;
        res->has[t] = bench_has(o, t);
        res->ready_ms[t] = res->preload_s[t] = res->start_cpu_ms[t] = NAN;
        res->idle_rss_mib[t] = res->idle_hwm_mib[t] = res->idle_anon_mib[t] = NAN;
        res->held_rss_mib[t] = res->held_hwm_mib[t] = res->held_anon_mib[t] = NAN;
    }
    (void)snprintf(env->dir, sizeof(env->dir), "/tmp/sockid-bench.XXXXXX");
    if (!mkdtemp(env->dir)) {
        r = -errno;
        (void)snprintf(err, sizeof(err), "cannot create a temporary directory: %s",
                       strerror(errno));
        goto out;
    }
    env->made_dir = true;
    bench_note(o, "run %u of %u in %s", index + 1, o->runs, env->dir);

    for (int t = BENCH_AGENT_10; t < BENCH_TARGETS && r == 0; t++) {
        if (!res->has[t])
            continue;
        char sub[BENCH_PATH_MAX];
        if ((size_t)snprintf(sub, sizeof(sub), "%s/%s", env->dir, bench_target_names[t]) >=
            sizeof(sub)) {
            r = -ENAMETOOLONG;
            break;
        }
        r = agentproc_prepare(&env->agents[t], sub, o->workers, o->plugin_dir, err, sizeof(err));
        struct preload_result pre;
        if (r == 0)
            r = preload_build(env->agents[t].data, bench_target_entries[t], getuid(),
                              o->seed + (uint64_t)t, &pre, err, sizeof(err));
        if (r == 0) {
            res->preload_s[t] = pre.seconds;
            bench_note(o, "preloaded %zu entries for %s in %.2f s", pre.entries,
                       bench_target_names[t], pre.seconds);
        }
    }
    if (r == 0)
        r = bench_start_agents(env, res, err, sizeof(err));
    if (r < 0)
        goto out;

    /* The floor answers with the agent's own answers, byte for byte. */
    char why[256];
    const char *floor_sock_fmt = "%s/floor.sock";
    char floor_sock[BENCH_PATH_MAX + 16];
    (void)snprintf(floor_sock, sizeof(floor_sock), floor_sock_fmt, env->dir);
    r = wire_once(env->agents[BENCH_AGENT_10].sock, BENCH_FETCH, env->fetch, sizeof(env->fetch),
                  &env->fetch_len, why, sizeof(why));
    if (r == 0)
        r = wire_once(env->agents[BENCH_AGENT_10].sock, BENCH_WHOAMI, env->whoami,
                      sizeof(env->whoami), &env->whoami_len, why, sizeof(why));
    if (r < 0) {
        (void)snprintf(err, sizeof(err), "capturing the agent's answers: %s", why);
        goto out;
    }
    r = floorsrv_start(&env->floor, floor_sock, o->workers, env->fetch, env->fetch_len, env->whoami,
                       env->whoami_len, err, sizeof(err));
    if (r < 0)
        goto out;
    bench_note(o, "floor server on %s answers %zu-byte FetchToken and %zu-byte WhoAmI frames",
               floor_sock, env->fetch_len, env->whoami_len);

    /* Memory with many connections, before any scenario has grown the
     * caches: what the entries and the connections themselves cost. The
     * scenarios' own RSS figures show the growth under load. */
    r = bench_hold(env, res);
    for (int s = 0; s < BENCH_SCENARIOS && r == 0; s++)
        if (!o->only || strcmp(o->only, bench_scenarios[s].name) == 0)
            r = bench_scenario(env, s, res);
    if (r < 0) {
        (void)snprintf(err, sizeof(err), "a round could not run: %s", strerror(-r));
        goto out;
    }

out:
    floorsrv_stop(&env->floor);
    for (int t = BENCH_AGENT_10; t < BENCH_TARGETS; t++) {
        if (env->agents[t].pid <= 0)
            continue;
        if (agentproc_stop(&env->agents[t]) < 0) {
            bench_note(o, "%s did not stop cleanly after SIGTERM", bench_target_names[t]);
            agentproc_dump_log(&env->agents[t]);
            res->errors++;
        }
    }
    if (r < 0) {
        fprintf(stderr, "sockid-bench: %s\n", err[0] ? err : strerror(-r));
        for (int t = BENCH_AGENT_10; t < BENCH_TARGETS; t++)
            if (env->agents[t].log[0])
                agentproc_dump_log(&env->agents[t]);
    }
    if (env->made_dir) {
        if (o->keep)
            bench_note(o, "kept %s", env->dir);
        else
            (void)nftw(env->dir, bench_rm, 16, FTW_DEPTH | FTW_PHYS);
    }
    free(env);
    return r;
}

int main(int argc, char **argv)
{
    static const struct option options[] = {
        {"agent", required_argument, NULL, 'a'},
        {"runs", required_argument, NULL, 'r'},
        {"short", no_argument, NULL, 'S'},
        {"json", no_argument, NULL, 'j'},
        {"json-file", required_argument, NULL, 'J'},
        {"workers", required_argument, NULL, 'w'},
        {"seconds", required_argument, NULL, 's'},
        {"rounds", required_argument, NULL, 'R'},
        {"scenario", required_argument, NULL, 'o'},
        {"held", required_argument, NULL, 'H'},
        {"starts", required_argument, NULL, 'n'},
        {"seed", required_argument, NULL, 'e'},
        {"keep", no_argument, NULL, 'k'},
        {"plugin-dir", required_argument, NULL, 'p'},
        {"help", no_argument, NULL, 'h'},
        {0},
    };
    if (argc > 1 && strcmp(argv[1], "--floor-server") == 0)
        return floorsrv_main(argc, argv);
    struct bench_options o = {.runs = 1, .held = 1000, .starts = 3, .seed = 1};
    const char *seconds = NULL, *rounds = NULL;
    char *agent = NULL;
    unsigned long long v;
    int opt;
    while ((opt = getopt_long(argc, argv, "h", options, NULL)) != -1) {
        switch (opt) {
        case 'a':
            o.agent = optarg;
            break;
        case 'r':
            if (!bench_parse_uint(optarg, BENCH_RUNS_MAX, &v) || v == 0)
                goto usage_error;
            o.runs = (unsigned)v;
            break;
        case 'S':
            o.short_mode = true;
            break;
        case 'j':
            o.json = true;
            break;
        case 'J':
            o.json_file = optarg;
            break;
        case 'w':
            if (!bench_parse_uint(optarg, 64, &v))
                goto usage_error;
            o.workers = (unsigned)v;
            break;
        case 's':
            seconds = optarg;
            break;
        case 'R':
            rounds = optarg;
            break;
        case 'o':
            o.only = optarg;
            break;
        case 'H':
            if (!bench_parse_uint(optarg, 100000, &v))
                goto usage_error;
            o.held = (size_t)v;
            break;
        case 'n':
            if (!bench_parse_uint(optarg, BENCH_STARTS_MAX, &v) || v == 0)
                goto usage_error;
            o.starts = (unsigned)v;
            break;
        case 'e':
            if (!bench_parse_uint(optarg, UINT64_MAX, &v))
                goto usage_error;
            o.seed = v;
            break;
        case 'k':
            o.keep = true;
            break;
        case 'p':
            o.plugin_dir = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            goto usage_error;
        }
    }
    if (optind < argc)
        goto usage_error;
    if (o.only && strcmp(o.only, "fresh") != 0 && strcmp(o.only, "persistent") != 0 &&
        strcmp(o.only, "uncached") != 0 && strcmp(o.only, "whoami") != 0) {
        fprintf(stderr,
                "sockid-bench: no scenario '%s': use fresh, persistent, uncached or "
                "whoami\n",
                o.only);
        return EXIT_USAGE;
    }
    o.round_s = o.short_mode ? 0.3 : 2.0;
    o.rounds = o.short_mode ? 1 : 3;
    o.warmup_s = o.short_mode ? 0.1 : 0.3;
    if (o.short_mode)
        o.starts = 1;
    if (seconds) {
        char *end;
        o.round_s = strtod(seconds, &end);
        if (*end || !(o.round_s >= 0.05 && o.round_s <= 600))
            goto usage_error;
    }
    if (rounds) {
        if (!bench_parse_uint(rounds, 100, &v) || v == 0)
            goto usage_error;
        o.rounds = (unsigned)v;
    }
    if (o.workers == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        o.workers = n > 0 && n <= 64 ? (unsigned)n : 1;
    }
    if (!o.agent) {
        agent = bench_default_agent();
        o.agent = agent;
    }
    if (!o.agent || access(o.agent, X_OK) < 0) {
        fprintf(stderr, "sockid-bench: cannot run the agent %s; build it or pass --agent PATH\n",
                o.agent ? o.agent : "(unknown)");
        free(agent);
        return EXIT_SETUP;
    }

    /* The held connections, and the agent's pidfds and /proc dirfds for
     * them: the agent inherits this limit. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
        rl.rlim_cur < o.held * 3 + 256) {
        fprintf(stderr,
                "sockid-bench: %zu held connections need about %zu file descriptors in the "
                "agent, and RLIMIT_NOFILE is %llu; raise it or pass a smaller --held\n",
                o.held, o.held * 3 + 256, (unsigned long long)rl.rlim_cur);
        free(agent);
        return EXIT_SETUP;
    }

    struct bench_run *runs = calloc(o.runs, sizeof(*runs));
    if (!runs) {
        free(agent);
        return EXIT_SETUP;
    }
    int status = 0;
    for (unsigned i = 0; i < o.runs && status == 0; i++)
        if (bench_run_one(&o, i, &runs[i]) < 0)
            status = EXIT_SETUP;
    if (status == 0) {
        if (o.json) {
            if (report_json(stdout, &o, runs, o.runs) < 0)
                status = EXIT_SETUP;
        } else {
            report_table(stdout, &o, runs, o.runs);
        }
        if (o.json_file) {
            FILE *f = fopen(o.json_file, "we");
            int w = f ? report_json(f, &o, runs, o.runs) : -errno;
            if (f && fclose(f) != 0 && w == 0)
                w = -errno;
            if (w < 0) {
                fprintf(stderr, "sockid-bench: cannot write %s: %s\n", o.json_file, strerror(-w));
                status = EXIT_SETUP;
            }
        }
        for (unsigned i = 0; i < o.runs; i++)
            if (runs[i].errors)
                status = EXIT_ERRORS;
    }
    free(runs);
    free(agent);
    return status;

usage_error:
    fprintf(stderr, "sockid-bench: invalid arguments; run 'sockid-bench --help'\n");
    return EXIT_USAGE;
}
