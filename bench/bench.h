/* sockid-bench: the agent against a floor server, same client, same run.
 *
 * The pieces, one file each:
 *   wire.c      requests, the client's socket calls, checking answers
 *   preload.c   a data dir with N entries, written through the store API
 *   agentproc.c the agent as a child process: config, start, ready, stats
 *   floorsrv.c  the floor server: the agent's loop shape, no identity work
 *   client.c    client threads, one measured round against one server
 *   report.c    percentiles, medians over runs, the table and the JSON
 *   main.c      options and the order of the phases
 * See docs/performance.md for what is measured and why. */
#ifndef SOCKID_BENCH_H
#define SOCKID_BENCH_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#define BENCH_PATH_MAX 256
/* The largest answer a client reads: a FetchToken or WhoAmI answer is
 * well under 4 KiB. */
#define BENCH_RESPONSE_MAX (64u * 1024u)
/* Audience of cached fetches, the same length as the uncached ones so that
 * requests and answers have one size in every mode. */
#define BENCH_AUDIENCE_LEN 18u
#define BENCH_TRUST_DOMAIN "example.org"
#define BENCH_CLIENT_ID    "spiffe://" BENCH_TRUST_DOMAIN "/bench/client"

/* What a request asks. */
enum bench_kind {
    BENCH_FETCH,          /* FetchToken, one audience: cached after the first */
    BENCH_FETCH_UNCACHED, /* FetchToken, a new audience every time: signed */
    BENCH_WHOAMI,
};

/* --- wire.c ------------------------------------------------------------- */

/* A framed request (header and payload) in buf; returns its length or a
 * negative errno. seq picks the audience of BENCH_FETCH_UNCACHED. */
__attribute__((warn_unused_result)) int wire_request(enum bench_kind kind, uint64_t seq,
                                                     uint8_t *buf, size_t cap);

/* Connects a blocking stream socket to path: a file descriptor or a
 * negative errno. */
__attribute__((warn_unused_result)) int wire_connect(const char *path);

/* Sends a whole frame and reads one whole answer frame into buf (cap bytes).
 * Blocking: the caller bounds the wait (client.c shuts a stuck socket down).
 * Returns the answer's payload length (the payload starts at buf +
 * FRAME_HEADER_SIZE), or a negative errno. */
__attribute__((warn_unused_result)) int wire_roundtrip(int fd, const uint8_t *req, size_t req_len,
                                                       uint8_t *buf, size_t cap);

/* Checks an answer's payload: a FetchToken answer must carry a token, a
 * WhoAmI answer selectors. Returns true, or false with why filled. */
bool wire_check(enum bench_kind kind, const uint8_t *payload, size_t len, char *why,
                size_t why_len);

/* One request on a new connection, checked; for probes and setup. On
 * success, copies the whole answer frame into ret_frame (cap bytes) when
 * not NULL and stores its length. Returns 0 or a negative errno (-EPROTO
 * for a wrong answer, why filled). */
__attribute__((warn_unused_result)) int wire_once(const char *path, enum bench_kind kind,
                                                  uint8_t *ret_frame, size_t cap, size_t *ret_len,
                                                  char *why, size_t why_len);

uint64_t wire_now_ns(void);
void wire_sleep_us(unsigned us);

/* --- preload.c ---------------------------------------------------------- */

struct preload_result {
    double seconds; /* writing the entries */
    size_t entries; /* in the store, the client's included */
};

/* Creates data_dir holding n entries (n >= 1): n - 1 that do not match the
 * client (another uid, a random path) and one that does (unix:uid:uid).
 * seed makes the entries reproducible. */
__attribute__((warn_unused_result)) int preload_build(const char *data_dir, size_t n, uid_t uid,
                                                      uint64_t seed, struct preload_result *ret,
                                                      char *err, size_t err_len);

/* --- agentproc.c -------------------------------------------------------- */

struct agentproc_stats {
    uint64_t rss_kib;  /* VmRSS */
    uint64_t hwm_kib;  /* VmHWM */
    uint64_t anon_kib; /* RssAnon: the process's own memory, no shared code */
    double cpu_ms;     /* utime + stime */
};

/* Reads a process's memory and CPU time from /proc. */
__attribute__((warn_unused_result)) int agentproc_sample(pid_t pid, struct agentproc_stats *ret);

struct agentproc {
    pid_t pid;
    char dir[BENCH_PATH_MAX]; /* its own directory: config, sockets, log, data */
    char sock[BENCH_PATH_MAX];
    char data[BENCH_PATH_MAX];
    char conf[BENCH_PATH_MAX];
    char log[BENCH_PATH_MAX];
    double ready_ms; /* from fork to the first answered FetchToken */
};

/* Writes dir/agent.conf for workers loops and room for many connections;
 * plugin_dir NULL keeps the agent's default (next to its binary). */
__attribute__((warn_unused_result)) int agentproc_prepare(struct agentproc *a, const char *dir,
                                                          unsigned workers, const char *plugin_dir,
                                                          char *err, size_t err_len);

/* Starts exe on a's config and waits until a FetchToken is answered with a
 * token. Fails (agent stopped) after timeout_ms. */
__attribute__((warn_unused_result)) int agentproc_start(struct agentproc *a, const char *exe,
                                                        int timeout_ms, char *err, size_t err_len);

/* SIGTERM, then SIGKILL after a grace; returns 0 when the agent exited
 * with status 0. */
int agentproc_stop(struct agentproc *a);

/* Prints the tail of the agent's log to stderr. */
void agentproc_dump_log(const struct agentproc *a);

/* --- floorsrv.c --------------------------------------------------------- */

struct floorsrv {
    pid_t pid;
    char sock[BENCH_PATH_MAX];
};

/* Starts the floor server on sock with loops threads. It answers every
 * request with one of two fixed frames: whoami for a WhoAmI request, fetch
 * for anything else. Call only while the caller has a single thread. */
__attribute__((warn_unused_result)) int floorsrv_start(struct floorsrv *f, const char *sock,
                                                       unsigned loops, const uint8_t *fetch,
                                                       size_t fetch_len, const uint8_t *whoami,
                                                       size_t whoami_len, char *err,
                                                       size_t err_len);
void floorsrv_stop(struct floorsrv *f);
/* The floor server's process: sockid-bench --floor-server SOCK LOOPS
 * FETCH_HEX WHOAMI_HEX, started by floorsrv_start. Runs until killed. */
int floorsrv_main(int argc, char **argv);

/* --- client.c ----------------------------------------------------------- */

struct client_spec {
    const char *sock;
    enum bench_kind kind;
    bool fresh;       /* a new connection per request */
    unsigned clients; /* threads */
    double seconds;   /* measured time */
};

/* What one round produced; latencies in ns, unsorted. */
struct client_round {
    uint64_t ok, errors;
    double elapsed_s;
    uint32_t *lat_ns;
    size_t n_lat;
    char first_error[200];
};

/* Runs one round: connects (persistent), starts all clients together,
 * stops them after spec->seconds. Latencies are appended to ret. */
__attribute__((warn_unused_result)) int client_round(const struct client_spec *spec,
                                                     struct client_round *ret);
void client_round_clear(struct client_round *r);

/* Opens n connections, each answered one FetchToken, and keeps them open
 * in fds (n entries). Returns how many failed (their fds are -1). */
size_t client_hold(const char *sock, size_t n, int *fds, char *why, size_t why_len);
void client_release(int *fds, size_t n);

/* --- the plan and its results (main.c, report.c) ------------------------- */

/* The servers of a run: the floor and agents with different entry counts,
 * all running at once so that rounds against them interleave. */
enum bench_target { BENCH_FLOOR, BENCH_AGENT_10, BENCH_AGENT_10K, BENCH_AGENT_100K, BENCH_TARGETS };

#define BENCH_TARGET_BIT(t) (1u << (t))
#define BENCH_SCENARIOS     7
#define BENCH_RUNS_MAX      32
#define BENCH_STARTS_MAX    16

struct bench_scenario {
    const char *name; /* fresh, persistent, uncached, whoami */
    enum bench_kind kind;
    bool fresh;
    unsigned clients;
    unsigned targets; /* BENCH_TARGET_BIT()s */
};

extern const struct bench_scenario bench_scenarios[BENCH_SCENARIOS];
extern const char *const bench_target_names[BENCH_TARGETS];
extern const size_t bench_target_entries[BENCH_TARGETS];

/* One server in one scenario of one run. */
struct bench_cell {
    bool present;
    uint64_t ok, errors;
    double rps;
    double p50_us, p90_us, p99_us, max_us;
    double cpu_ms; /* the server's, over its measured rounds */
    double cpu_us_per_req;
    double client_cpu_ms; /* the bench's own, over the same rounds */
    double client_cpu_us_per_req;
    double rss_mib, hwm_mib; /* after its last round */
    char first_error[200];
};

struct bench_run {
    struct bench_cell cells[BENCH_SCENARIOS][BENCH_TARGETS];
    bool has[BENCH_TARGETS];
    double preload_s[BENCH_TARGETS];
    double ready_ms[BENCH_TARGETS];         /* the first start of each agent */
    double ready_100k_ms[BENCH_STARTS_MAX]; /* every start with 100,000 entries */
    unsigned n_ready_100k;
    double start_cpu_ms[BENCH_TARGETS]; /* the agent's CPU time up to ready */
    double idle_rss_mib[BENCH_TARGETS]; /* right after the start */
    double idle_hwm_mib[BENCH_TARGETS];
    double idle_anon_mib[BENCH_TARGETS];
    double held_rss_mib[BENCH_TARGETS]; /* with the held connections open */
    double held_hwm_mib[BENCH_TARGETS];
    double held_anon_mib[BENCH_TARGETS];
    uint64_t held_failed[BENCH_TARGETS];
    uint64_t errors; /* every failed request or check of the run */
    unsigned attestors;
};

struct bench_options {
    const char *agent;
    unsigned runs;
    unsigned workers; /* loops of the agent and the floor */
    double round_s;
    unsigned rounds; /* per server and scenario */
    double warmup_s;
    unsigned starts; /* of the 100,000-entry agent, per run */
    size_t held;     /* connections held open for the memory figure */
    bool short_mode;
    bool json;
    const char *json_file; /* also write the JSON there */
    bool keep;
    const char *only;       /* a scenario name, or NULL for all */
    const char *plugin_dir; /* NULL: the agent's default */
    uint64_t seed;
};

/* --- report.c ----------------------------------------------------------- */

/* Sorts the round's latencies and fills the cell's throughput and
 * percentiles. */
void report_cell(struct client_round *round, struct bench_cell *cell);

/* The table for people, and the target check. */
void report_table(FILE *out, const struct bench_options *o, const struct bench_run *runs,
                  unsigned n_runs);
/* The same as one JSON document. Returns 0 or -ENOMEM. */
__attribute__((warn_unused_result)) int report_json(FILE *out, const struct bench_options *o,
                                                    const struct bench_run *runs, unsigned n_runs);

#endif
