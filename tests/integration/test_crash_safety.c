/* An acknowledged entry survives a crash. Writers create entries on the admin
 * socket, several connections at once and several requests in flight on
 * each, while the agent is killed with SIGKILL at a random moment; this is
 * repeated for several rounds on the same data dir, restarting the agent
 * each time. After each restart every create that was answered with its
 * entry is there with its id, a create that was sent but not answered may
 * be there or not (counted, and once settled it stays so), and nothing else
 * is. The database, as each crash left it (a copy) and at the end, passes
 * SQLite's integrity_check and foreign_key_check.
 *
 * The kill times come from a seed printed at the start; SOCKID_IT_SEED=N
 * repeats a run's schedule (the interleaving itself is up to the kernel).
 *
 * Usage: test_crash_safety AGENT */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

#define ROUNDS      5
#define WRITERS     3
#define DEPTH       3 /* creates each writer keeps in flight */
#define KILL_MIN_MS 50
#define KILL_MAX_MS 500
#define MAX_RECORDS 60000
#define LIST_PAGE   7 /* small, so that the final listing spans many pages */
#define PYTHON      "/usr/bin/python3"

enum rec_state {
    REC_UNSENT,  /* the send failed: never reached the agent whole */
    REC_SENT,    /* in flight: sent, no answer */
    REC_ACKED,   /* answered with its entry */
    REC_PRESENT, /* in flight at a kill, found after the restart */
    REC_ABSENT,  /* in flight at a kill, not found after the restart */
};

struct rec {
    int round;
    enum rec_state state;
    char id[33];
};

static struct rec recs[MAX_RECORDS];
static size_t n_recs;
static pthread_mutex_t recs_lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_bool killed;
static const char *agent_exe;
static char admin_sock[H_PATH_MAX];
static int round_now;

struct writer {
    pthread_t thread;
    char error[512]; /* empty: no unexpected event */
};

static void spiffe_id_of(size_t i, char *buf, size_t len)
{
    (void)snprintf(buf, len, "spiffe://example.org/crash/%zu", i);
}

/* The record index a SPIFFE ID of ours names, or -1. */
static long index_of(const char *spiffe_id)
{
    static const char prefix[] = "spiffe://example.org/crash/";
    if (strncmp(spiffe_id, prefix, sizeof(prefix) - 1) != 0)
        return -1;
    char *end;
    errno = 0;
    unsigned long v = strtoul(spiffe_id + sizeof(prefix) - 1, &end, 10);
    if (errno || *end || v >= n_recs)
        return -1;
    return (long)v;
}

static long rec_new(void)
{
    (void)pthread_mutex_lock(&recs_lock);
    long i = n_recs < MAX_RECORDS ? (long)n_recs++ : -1;
    if (i >= 0)
        recs[i] = (struct rec){.round = round_now, .state = REC_UNSENT};
    (void)pthread_mutex_unlock(&recs_lock);
    return i;
}

static void rec_set(long i, enum rec_state state, const char *id)
{
    (void)pthread_mutex_lock(&recs_lock);
    recs[i].state = state;
    if (id)
        memcpy(recs[i].id, id, 33);
    (void)pthread_mutex_unlock(&recs_lock);
}

static void *writer_run(void *arg)
{
    struct writer *w = arg;
    char gid_sel[32];
    (void)snprintf(gid_sel, sizeof(gid_sel), "unix:gid:%d", round_now);
    const char *sels[] = {"unix:uid:4242", gid_sel};
    int fd = proto_connect(admin_sock);
    if (fd < 0) {
        if (!atomic_load(&killed))
            (void)snprintf(w->error, sizeof(w->error), "cannot connect to %s: %s", admin_sock,
                           strerror(-fd));
        return NULL;
    }
    long pending[DEPTH];
    size_t head = 0, count = 0;
    for (;;) {
        while (count < DEPTH && !atomic_load(&killed)) {
            long i = rec_new();
            if (i < 0)
                break; /* enough records: wait for the kill with what is in flight */
            char sid[64];
            spiffe_id_of((size_t)i, sid, sizeof(sid));
            int r = admin_send_create(fd, sid, sels, 2);
            if (r < 0) {
                /* A frame the agent did not receive whole is never acted on:
                 * the record stays unsent. */
                if (!atomic_load(&killed))
                    (void)snprintf(w->error, sizeof(w->error), "sending create %ld: %s", i,
                                   strerror(-r));
                break;
            }
            rec_set(i, REC_SENT, NULL);
            pending[(head + count) % DEPTH] = i;
            count++;
        }
        if (count == 0)
            break;
        if (w->error[0])
            break;
        Sockid__Admin__Response *resp = NULL;
        int r = admin_recv(fd, H_TIMEOUT_MS, &resp);
        if (r < 0) {
            if (!atomic_load(&killed))
                (void)snprintf(w->error, sizeof(w->error),
                               "no answer to create %ld before the kill: %s", pending[head],
                               strerror(-r));
            break; /* what is pending stays in flight */
        }
        long i = pending[head];
        head = (head + 1) % DEPTH;
        count--;
        char sid[64], desc[1024];
        spiffe_id_of((size_t)i, sid, sizeof(sid));
        const Sockid__Admin__Entry *e =
            resp->kind_case == SOCKID__ADMIN__RESPONSE__KIND_CREATE_ENTRY
                ? resp->create_entry->entry
                : NULL;
        if (!e || e->id.len != 32 || !h_bytes_eq(e->spiffe_id, sid)) {
            admin_describe_result(0, resp, desc, sizeof(desc));
            (void)snprintf(w->error, sizeof(w->error), "create %s: expected its entry, got %s", sid,
                           desc);
            sockid__admin__response__free_unpacked(resp, NULL);
            break;
        }
        char id[33];
        memcpy(id, e->id.data, 32);
        id[32] = '\0';
        rec_set(i, REC_ACKED, id);
        sockid__admin__response__free_unpacked(resp, NULL);
    }
    (void)close(fd);
    return NULL;
}

/* --- the database, checked by SQLite itself --------------------------------- */

static void copy_file(const char *src, const char *dst)
{
    int in = open(src, O_RDONLY | O_CLOEXEC);
    if (in < 0 && errno == ENOENT)
        return;
    H_CHECK(in >= 0, "open %s: %s", src, strerror(errno));
    int out = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    H_CHECK(out >= 0, "create %s: %s", dst, strerror(errno));
    char buf[65536];
    for (;;) {
        ssize_t n = read(in, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        H_CHECK(n >= 0, "read %s: %s", src, strerror(errno));
        if (n == 0)
            break;
        H_CHECK(write(out, buf, (size_t)n) == n, "write %s: %s", dst, strerror(errno));
    }
    (void)close(in);
    H_CHECK(close(out) == 0, "close %s: %s", dst, strerror(errno));
}

static off_t file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? st.st_size : -1;
}

/* Runs integrity_check and foreign_key_check on db (agent stopped) and
 * returns the number of rows in its entries table. */
static long db_check(const char *db, const char *what)
{
    static const char script[] =
        "import sqlite3, sys\n"
        "con = sqlite3.connect(sys.argv[1])\n"
        "ic = con.execute('PRAGMA integrity_check').fetchall()\n"
        "fk = con.execute('PRAGMA foreign_key_check').fetchall()\n"
        "n = con.execute('SELECT count(*) FROM entries').fetchone()[0]\n"
        "con.close()\n"
        "if ic != [('ok',)] or fk:\n"
        "    sys.exit('integrity_check: %r; foreign_key_check: %r' % (ic, fk))\n"
        "print(n)\n";
    static struct h_run res;
    h_run(NULL, (const char *const[]){PYTHON, "-c", script, db, NULL}, &res);
    H_CHECK(res.status == 0, "%s: the database %s fails SQLite's checks: %s%s", what, db, res.out,
            res.err);
    char *end;
    long n = strtol(res.out, &end, 10);
    H_CHECK(end != res.out && n >= 0, "%s: unexpected output from the check: %s", what, res.out);
    return n;
}

/* Checks a copy of the database as the kill left it, so that the next agent
 * still meets the files exactly as they were. */
static long db_check_crashed(const char *dir, const char *scratch, int round, off_t *ret_wal)
{
    static const char *const suffixes[] = {"", "-wal", "-shm", "-journal"};
    char sub[H_PATH_MAX + 32];
    (void)snprintf(sub, sizeof(sub), "%s/round-%d", scratch, round);
    H_CHECK(mkdir(sub, 0700) == 0, "mkdir %s: %s", sub, strerror(errno));
    for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
        char src[H_PATH_MAX + 64], dst[H_PATH_MAX + 64];
        (void)snprintf(src, sizeof(src), "%s/data/entries.db%s", dir, suffixes[i]);
        (void)snprintf(dst, sizeof(dst), "%s/entries.db%s", sub, suffixes[i]);
        if (i == 1)
            *ret_wal = file_size(src);
        copy_file(src, dst);
    }
    char db[H_PATH_MAX + 64], what[64];
    (void)snprintf(db, sizeof(db), "%s/entries.db", sub);
    (void)snprintf(what, sizeof(what), "after the kill of round %d", round);
    return db_check(db, what);
}

/* --- what a restarted agent holds ------------------------------------------- */

struct settled {
    size_t acked, present, absent;
};

/* Every acknowledged entry is there with its id; each create in flight at
 * the last kill is settled as present or absent, and earlier ones stay as
 * they were settled; no other entry exists. */
static void check_entries(uint32_t page_size, const char *when, struct settled *ret)
{
    struct admin_listing l;
    admin_list_all(admin_sock, page_size, &l);
    bool *listed = calloc(n_recs ? n_recs : 1, sizeof(*listed));
    H_CHECK(listed, "out of memory");
    for (size_t k = 0; k < l.n; k++) {
        long i = index_of(l.spiffe_ids[k]);
        H_CHECK(i >= 0, "%s: entry %s has the SPIFFE ID %s, which no create of this test sent",
                when, l.ids[k], l.spiffe_ids[k]);
        H_CHECK(!listed[i], "%s: two entries with the SPIFFE ID %s", when, l.spiffe_ids[k]);
        const struct rec *r = &recs[i];
        H_CHECK(r->state != REC_UNSENT && r->state != REC_ABSENT,
                "%s: entry %s (%s) exists, but its create %s", when, l.ids[k], l.spiffe_ids[k],
                r->state == REC_UNSENT ? "was never sent whole"
                                       : "was found absent after an earlier restart");
        H_CHECK(r->state == REC_SENT || strcmp(r->id, l.ids[k]) == 0,
                "%s: %s has the id %s, but its create was answered with %s", when, l.spiffe_ids[k],
                l.ids[k], r->id);
        listed[i] = true;
        if (r->state == REC_SENT)
            memcpy(recs[i].id, l.ids[k], 33);
    }
    struct settled s = {0};
    for (size_t i = 0; i < n_recs; i++) {
        struct rec *r = &recs[i];
        char sid[64];
        spiffe_id_of(i, sid, sizeof(sid));
        switch (r->state) {
        case REC_ACKED:
            H_CHECK(listed[i],
                    "%s: the entry %s for %s is missing, though its create was acknowledged "
                    "(round %d)",
                    when, r->id, sid, r->round);
            s.acked++;
            break;
        case REC_SENT:
            r->state = listed[i] ? REC_PRESENT : REC_ABSENT;
            break;
        case REC_PRESENT:
            H_CHECK(listed[i], "%s: %s (%s), found after an earlier restart, is gone", when, r->id,
                    sid);
            break;
        default:
            break;
        }
        if (r->state == REC_PRESENT)
            s.present++;
        else if (r->state == REC_ABSENT)
            s.absent++;
    }
    H_CHECK(l.n == s.acked + s.present, "%s: %zu entries listed, expected %zu + %zu", when, l.n,
            s.acked, s.present);
    free(listed);
    admin_listing_free(&l);
    *ret = s;
}

/* Each kept entry, asked for by id on one connection. */
static void check_get_each(void)
{
    int fd = proto_connect(admin_sock);
    H_CHECK(fd >= 0, "connect %s: %s", admin_sock, strerror(-fd));
    for (size_t i = 0; i < n_recs; i++) {
        const struct rec *r = &recs[i];
        if (r->state != REC_ACKED && r->state != REC_PRESENT)
            continue;
        char sid[64], desc[1024];
        spiffe_id_of(i, sid, sizeof(sid));
        Sockid__Admin__Response *resp = NULL;
        int e = admin_send_get(fd, r->id);
        if (e == 0)
            e = admin_recv(fd, H_TIMEOUT_MS, &resp);
        admin_describe_result(e, resp, desc, sizeof(desc));
        H_CHECK(e == 0 && resp->kind_case == SOCKID__ADMIN__RESPONSE__KIND_GET_ENTRY &&
                    resp->get_entry->entry && h_bytes_eq(resp->get_entry->entry->spiffe_id, sid),
                "get %s (%s): expected the entry, got %s", r->id, sid, desc);
        sockid__admin__response__free_unpacked(resp, NULL);
    }
    (void)close(fd);
}

static uint64_t health_entries(void)
{
    int fd = proto_connect(admin_sock);
    H_CHECK(fd >= 0, "connect %s: %s", admin_sock, strerror(-fd));
    Sockid__Admin__Response *resp = NULL;
    int r = admin_send_health(fd);
    if (r == 0)
        r = admin_recv(fd, H_TIMEOUT_MS, &resp);
    char desc[512];
    admin_describe_result(r, resp, desc, sizeof(desc));
    H_CHECK(r == 0 && resp->kind_case == SOCKID__ADMIN__RESPONSE__KIND_HEALTH,
            "admin health: expected an answer, got %s", desc);
    uint64_t n = resp->health->entries;
    sockid__admin__response__free_unpacked(resp, NULL);
    (void)close(fd);
    return n;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s AGENT\n", argv[0]);
        return 2;
    }
    agent_exe = argv[1];
    (void)signal(SIGPIPE, SIG_IGN);
    static struct h_run probe;
    if (access(PYTHON, X_OK) == 0)
        h_run(NULL, (const char *const[]){PYTHON, "-c", "import sqlite3", NULL}, &probe);
    else
        probe.status = 127;
    if (probe.status != 0)
        h_skip("needs %s with its sqlite3 module for PRAGMA integrity_check", PYTHON);

    unsigned seed;
    const char *env = getenv("SOCKID_IT_SEED");
    if (env && *env)
        seed = (unsigned)strtoul(env, NULL, 10);
    else
        seed = (unsigned)time(NULL) ^ (unsigned)getpid() << 16;
    h_note("seed %u (SOCKID_IT_SEED=%u repeats the kill schedule)", seed, seed);
    unsigned rng = seed;

    char dir[H_PATH_MAX], scratch[H_PATH_MAX];
    h_tmpdir(dir);
    h_tmpdir(scratch);
    static struct agent a;
    const char *const extra[] = {"--trust-domain", "example.org", NULL};
    size_t total_in_flight = 0, total_acked = 0;
    size_t in_flight[ROUNDS];

    for (int round = 0; round < ROUNDS; round++) {
        agent_start(&a, agent_exe, dir, extra);
        agent_wait_admin(&a);
        agent_admin_path(&a, admin_sock);
        if (round > 0) {
            struct settled s;
            char when[64];
            (void)snprintf(when, sizeof(when), "after the restart following round %d", round - 1);
            size_t before_present = 0;
            for (size_t i = 0; i < n_recs; i++)
                before_present += recs[i].state == REC_PRESENT;
            check_entries(0, when, &s);
            size_t now_present = s.present - before_present;
            h_note("  restart: %zu acknowledged entries all there; of the %zu in flight at the "
                   "kill, %zu present, %zu absent",
                   s.acked, in_flight[round - 1], now_present, in_flight[round - 1] - now_present);
        }

        round_now = round;
        atomic_store(&killed, false);
        size_t first = n_recs;
        static struct writer writers[WRITERS];
        for (size_t w = 0; w < WRITERS; w++) {
            writers[w].error[0] = '\0';
            H_CHECK(pthread_create(&writers[w].thread, NULL, writer_run, &writers[w]) == 0,
                    "pthread_create failed");
        }
        int delay = KILL_MIN_MS + (int)(rand_r(&rng) % (KILL_MAX_MS - KILL_MIN_MS + 1));
        sleep_ms(delay);
        atomic_store(&killed, true);
        agent_kill(&a);
        for (size_t w = 0; w < WRITERS; w++)
            (void)pthread_join(writers[w].thread, NULL);
        for (size_t w = 0; w < WRITERS; w++)
            H_CHECK(!writers[w].error[0], "round %d, writer %zu: %s", round, w + 1,
                    writers[w].error);

        size_t acked = 0, sent = 0, unsent = 0;
        for (size_t i = first; i < n_recs; i++) {
            acked += recs[i].state == REC_ACKED;
            sent += recs[i].state == REC_SENT;
            unsent += recs[i].state == REC_UNSENT;
        }
        in_flight[round] = sent;
        total_in_flight += sent;
        total_acked += acked;
        off_t wal = -1;
        long rows = db_check_crashed(dir, scratch, round, &wal);
        h_note("round %d: SIGKILL after %d ms: %zu creates acknowledged, %zu in flight (sent, "
               "not answered), %zu not sent whole; the crashed database (WAL %lld bytes) passes "
               "integrity_check with %ld entries",
               round + 1, delay, acked, sent, unsent, (long long)wal, rows);
        H_CHECK(n_recs < MAX_RECORDS, "round %d reached the test's limit of %d records", round,
                MAX_RECORDS);
    }

    /* The last restart: everything, every way. */
    agent_start(&a, agent_exe, dir, extra);
    agent_wait_admin(&a);
    agent_admin_path(&a, admin_sock);
    struct settled s;
    size_t before_present = 0;
    for (size_t i = 0; i < n_recs; i++)
        before_present += recs[i].state == REC_PRESENT;
    check_entries(LIST_PAGE, "after the last restart", &s);
    size_t now_present = s.present - before_present;
    h_note("  restart: %zu acknowledged entries all there; of the %zu in flight at the kill, %zu "
           "present, %zu absent",
           s.acked, in_flight[ROUNDS - 1], now_present, in_flight[ROUNDS - 1] - now_present);
    check_get_each();
    uint64_t counted = health_entries();
    H_CHECK(counted == s.acked + s.present, "admin health counts %" PRIu64 " entries, expected %zu",
            counted, s.acked + s.present);
    H_CHECK(s.acked == total_acked, "%zu acknowledged entries found, %zu acknowledged", s.acked,
            total_acked);
    agent_stop(&a);
    char db[H_PATH_MAX + 32];
    (void)snprintf(db, sizeof(db), "%s/data/entries.db", dir);
    long rows = db_check(db, "after the last stop");
    H_CHECK((size_t)rows == s.acked + s.present,
            "the stopped database holds %ld entries, expected %zu", rows, s.acked + s.present);
    h_note(
        "%d rounds: %zu creates acknowledged, all kept (listed in pages of %d, each read by id); "
        "%zu in flight at the kills: %zu present, %zu absent; the stopped database passes "
        "integrity_check and foreign_key_check with %ld entries",
        ROUNDS, total_acked, LIST_PAGE, total_in_flight, s.present, s.absent, rows);
    H_CHECK(s.present + s.absent == total_in_flight, "in-flight accounting: %zu + %zu != %zu",
            s.present, s.absent, total_in_flight);
    h_note("PASS");
    return 0;
}
