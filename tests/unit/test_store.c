/* The entry store (agent/store.c).
 *
 * Every test runs in a fresh mkdtemp directory, removed afterwards. Files are
 * damaged, locked and inspected through the sqlite3 API directly, as an
 * operator's tools or another process would. Times are printed for the
 * record, never asserted. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "store.h"

#define ERR_MAX 512

struct dir {
    char path[64];
    char db[128];
};

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int setup(void **state)
{
    struct dir *d = calloc(1, sizeof(*d));
    assert_non_null(d);
    const char *tmp = getenv("TMPDIR");
    (void)snprintf(d->path, sizeof(d->path), "%s/test_store.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    assert_non_null(mkdtemp(d->path));
    (void)snprintf(d->db, sizeof(d->db), "%s/%s", d->path, STORE_FILE);
    *state = d;
    return 0;
}

static int teardown(void **state)
{
    struct dir *d = *state;
    assert_int_equal(nftw(d->path, rm_one, 16, FTW_DEPTH | FTW_PHYS), 0);
    free(d);
    return 0;
}

static double now_s(void)
{
    struct timespec ts;
    (void)clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static struct store *open_ok(const struct dir *d)
{
    struct store *st = NULL;
    char err[ERR_MAX] = "";
    int r = store_open(d->path, &st, err, sizeof(err));
    if (r != 0)
        fail_msg("store_open: %d: %s", r, err);
    assert_non_null(st);
    return st;
}

/* Opening must fail with want and exactly this message (path filled in). */
static void expect_open_error(const struct dir *d, int want, const char *fmt)
{
    struct store *st = (struct store *)&st; /* ret_* is written only on success */
    struct store *const sentinel = st;
    char err[ERR_MAX] = "", msg[ERR_MAX];

    (void)snprintf(msg, sizeof(msg), fmt, d->db);
    assert_int_equal(store_open(d->path, &st, err, sizeof(err)), want);
    assert_ptr_equal(st, sentinel);
    assert_string_equal(err, msg);
}

static struct entry *mk(const char *id, const char *spiffe_id, const char *const *sel, size_t n_sel,
                        const char *const *aud, size_t n_aud, const char *hint, int64_t created_at)
{
    struct entry *e = NULL;
    char err[ERR_MAX] = "";
    int r = entry_from_parts(id, spiffe_id, sel, n_sel, 300, aud, n_aud, hint, created_at, 7, &e,
                             err, sizeof(err));
    if (r != 0)
        fail_msg("entry_from_parts: %d: %s", r, err);
    return e;
}

/* A simple entry: one selector unix:uid:N. */
static struct entry *mk_simple(const char *id, unsigned uid, int64_t created_at)
{
    char sel[64];
    const char *sels[] = {sel};
    (void)snprintf(sel, sizeof(sel), "unix:uid:%u", uid);
    return mk(id, "spiffe://example.org/svc", sels, 1, NULL, 0, NULL, created_at);
}

static void make_id(char out[static ENTRY_ID_LEN + 1], unsigned n)
{
    (void)snprintf(out, ENTRY_ID_LEN + 1, "%032x", n);
}

static void insert_ok(struct store *st, const struct entry *e)
{
    char existing[ENTRY_ID_LEN + 1] = "";
    char err[ERR_MAX] = "";
    int r = store_insert(st, e, existing, err, sizeof(err));
    if (r != 0)
        fail_msg("store_insert %s: %d: %s", e->id, r, err);
}

/* What store_load hands over, collected (on the store's thread). */
struct collected {
    struct entry **v;
    size_t n, cap;
    size_t fail_at; /* the add that fails with -ENOSPC; SIZE_MAX: none */
};

static int collect(void *ctx, struct entry *e)
{
    struct collected *c = ctx;
    if (c->n == c->fail_at) {
        (void)entry_unref(e); /* add takes the reference whatever it returns */
        return -ENOSPC;
    }
    if (c->n == c->cap) {
        c->cap = c->cap ? 2 * c->cap : 16;
        c->v = realloc(c->v, c->cap * sizeof(*c->v));
        assert_non_null(c->v);
    }
    c->v[c->n++] = e;
    return 0;
}

static void collected_free(struct collected *c)
{
    for (size_t i = 0; i < c->n; i++)
        (void)entry_unref(c->v[i]);
    free(c->v);
}

/* store_load into a list: ret_* written only on success. */
static int load_list(struct store *st, struct entry ***ret, size_t *ret_n, char *err,
                     size_t err_len)
{
    struct collected c = {.fail_at = SIZE_MAX};
    size_t n = 0;
    int r = store_load(st, collect, &c, &n, err, err_len);
    if (r < 0) {
        collected_free(&c);
        return r;
    }
    assert_int_equal(n, c.n);
    if (!c.v)
        assert_non_null(c.v = malloc(1));
    *ret = c.v;
    *ret_n = c.n;
    return 0;
}

/* The entries in the file's order, as store_load gives them. */
static struct entry **load_raw(struct store *st, size_t *n)
{
    struct entry **list = NULL;
    char err[ERR_MAX] = "";
    int r = load_list(st, &list, n, err, sizeof(err));
    if (r != 0)
        fail_msg("store_load: %d: %s", r, err);
    return list;
}

/* The entries in the stable order, as a snapshot holds them. */
static struct entry **load_ok(struct store *st, size_t *n)
{
    struct entry **list = load_raw(st, n);
    assert_int_equal(entries_sort(list, *n), 0);
    return list;
}

static void free_list(struct entry **list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        (void)entry_unref(list[i]);
    free(list);
}

static void assert_entry_equal(const struct entry *a, const struct entry *b)
{
    assert_string_equal(a->id, b->id);
    assert_string_equal(a->spiffe_id, b->spiffe_id);
    assert_int_equal(a->n_selectors, b->n_selectors);
    for (size_t i = 0; i < a->n_selectors; i++)
        assert_string_equal(a->selectors[i], b->selectors[i]);
    assert_int_equal(a->ttl, b->ttl);
    assert_int_equal(a->n_audiences, b->n_audiences);
    for (size_t i = 0; i < a->n_audiences; i++)
        assert_string_equal(a->audiences[i], b->audiences[i]);
    if (!a->hint || !b->hint)
        assert_ptr_equal(a->hint, b->hint);
    else
        assert_string_equal(a->hint, b->hint);
    assert_int_equal(a->created_at, b->created_at);
    assert_int_equal(a->revision, b->revision);
}

/* Runs SQL on the (closed) store's file with a connection of our own. */
static void db_exec(const struct dir *d, const char *sql)
{
    sqlite3 *db = NULL;
    char *msg = NULL;
    assert_int_equal(sqlite3_open_v2(d->db, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
        fail_msg("%s: %s", sql, msg);
    assert_int_equal(sqlite3_close(db), SQLITE_OK);
}

static int64_t db_int(const struct dir *d, const char *sql)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *s = NULL;
    assert_int_equal(sqlite3_open_v2(d->db, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(s, 0);
    assert_int_equal(sqlite3_finalize(s), SQLITE_OK);
    assert_int_equal(sqlite3_close(db), SQLITE_OK);
    return v;
}

static void test_close_null(void **state)
{
    (void)state;
    assert_null(store_close(NULL));
}

/* Every field round-trips byte for byte; entries come back in the order of
 * insertion, which entries_sort puts in the stable order: created_at, then
 * id. */
static void test_survives_reopen(void **state)
{
    struct dir *d = *state;
    const char *many[ENTRY_MAX_SELECTORS];
    char many_buf[ENTRY_MAX_SELECTORS][48];
    for (size_t i = 0; i < ENTRY_MAX_SELECTORS; i++) {
        (void)snprintf(many_buf[i], sizeof(many_buf[i]), "unix:supplementary_gid:%zu", 1000 + i);
        many[i] = many_buf[i];
    }
    const char *utf8_sel[] = {"k8s:pod-uid:0b8e-ü", "cgroup:unified:/a:b:c/ünï ✓",
                              "unix:user:renée"};
    const char *aud[] = {"https://api.example.org", "spiffe://example.org/db", "z"};
    const char *one_aud[] = {"only"};
    struct entry *in[5];
    in[0] = mk("00000000000000000000000000000003", "spiffe://example.org/late", many,
               ENTRY_MAX_SELECTORS, aud, 3, NULL, 2000);
    in[1] = mk("ffffffffffffffffffffffffffffffff", "spiffe://example.org/ns/e-1/sa_2", utf8_sel, 3,
               one_aud, 1, "naïve café — 日本語 ✓", 1000);
    in[2] = mk("0000000000000000000000000000000a", "spiffe://example.org/a", utf8_sel, 2, NULL, 0,
               "plain hint", 1000);
    in[3] = mk("00000000000000000000000000000001", "spiffe://other.example/x", many, 1, NULL, 0,
               NULL, -5);
    in[4] = mk("00000000000000000000000000000002", "spiffe://example.org/late", many, 2, NULL, 0,
               NULL, 2000);
    /* Expected order: created_at -5, 1000 (id 0a < ff), 2000 (id 02 < 03). */
    const size_t order[] = {3, 2, 1, 4, 0};

    struct store *st = open_ok(d);
    for (size_t i = 0; i < 5; i++)
        insert_ok(st, in[i]);
    st = store_close(st);
    assert_null(st);

    st = open_ok(d);
    size_t n = 0;
    /* In the file's order: as inserted. */
    struct entry **list = load_raw(st, &n);
    assert_int_equal(n, 5);
    for (size_t i = 0; i < n; i++)
        assert_entry_equal(list[i], in[i]);
    free_list(list, n);
    list = load_ok(st, &n);
    assert_int_equal(n, 5);
    for (size_t i = 0; i < n; i++)
        assert_entry_equal(list[i], in[order[i]]);
    free_list(list, n);

    /* Loading twice gives the same; nothing is consumed. */
    list = load_ok(st, &n);
    assert_int_equal(n, 5);
    assert_string_equal(list[0]->id, in[3]->id);
    free_list(list, n);
    st = store_close(st);
    for (size_t i = 0; i < 5; i++)
        (void)entry_unref(in[i]);
}

static void test_empty_store_loads_nothing(void **state)
{
    struct dir *d = *state;
    struct store *st = open_ok(d);
    size_t n = 99;
    struct entry **list = load_ok(st, &n);
    assert_int_equal(n, 0);
    assert_non_null(list);
    free(list);
    st = store_close(st);
    /* A second open of an existing, migrated file. */
    st = open_ok(d);
    st = store_close(st);
    assert_int_equal(db_int(d, "SELECT version FROM schema_version"), STORE_SCHEMA_VERSION);
}

static void test_newer_schema_refused(void **state)
{
    struct dir *d = *state;
    struct store *st = open_ok(d);
    st = store_close(st);
    char sql[128], msg[256];
    (void)snprintf(sql, sizeof(sql), "UPDATE schema_version SET version = %d",
                   STORE_SCHEMA_VERSION + 1);
    db_exec(d, sql);
    (void)snprintf(msg, sizeof(msg),
                   "%%s has schema version %d, newer than this agent's %d: upgrade "
                   "sockid-agent, or move the file aside to start empty",
                   STORE_SCHEMA_VERSION + 1, STORE_SCHEMA_VERSION);
    expect_open_error(d, -EPROTONOSUPPORT, msg);
    /* Refusing touched nothing. */
    assert_int_equal(db_int(d, "SELECT version FROM schema_version"), STORE_SCHEMA_VERSION + 1);
}

#define CORRUPT_MSG                                                                                \
    "%s is corrupt or not a sockid database: restore it from a backup or move it aside"

static void write_file(const char *path, const void *buf, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, buf, len), (ssize_t)len);
    assert_int_equal(close(fd), 0);
}

static void test_random_bytes_refused(void **state)
{
    struct dir *d = *state;
    uint8_t buf[16384];
    srand(42);
    for (size_t i = 0; i < sizeof(buf); i++)
        buf[i] = (uint8_t)rand();
    write_file(d->db, buf, sizeof(buf));
    expect_open_error(d, -EUCLEAN, CORRUPT_MSG);
    /* Short junk too. */
    write_file(d->db, "hello, world\n", 13);
    expect_open_error(d, -EUCLEAN, CORRUPT_MSG);
}

static void test_truncated_refused(void **state)
{
    struct dir *d = *state;
    struct store *st = open_ok(d);
    char id[ENTRY_ID_LEN + 1];
    for (unsigned i = 0; i < 300; i++) {
        make_id(id, i + 1);
        struct entry *e = mk_simple(id, i, i);
        insert_ok(st, e);
        (void)entry_unref(e);
    }
    st = store_close(st); /* checkpoints the WAL into the file */
    struct stat sb;
    assert_int_equal(stat(d->db, &sb), 0);
    assert_true(sb.st_size >= 8 * 4096);
    assert_int_equal(truncate(d->db, sb.st_size / 2), 0);
    expect_open_error(d, -EUCLEAN, CORRUPT_MSG);
    /* Cut inside the header. */
    assert_int_equal(truncate(d->db, 50), 0);
    expect_open_error(d, -EUCLEAN, CORRUPT_MSG);
}

static void test_foreign_database_refused(void **state)
{
    struct dir *d = *state;
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(d->db, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "CREATE TABLE t (x)", NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_close(db), SQLITE_OK);
    expect_open_error(d, -EUCLEAN, CORRUPT_MSG);

    /* Another application's id on an otherwise empty file. */
    assert_int_equal(unlink(d->db), 0);
    assert_int_equal(sqlite3_open(d->db, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "PRAGMA application_id = 42", NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_close(db), SQLITE_OK);
    expect_open_error(d, -EUCLEAN, CORRUPT_MSG);
}

#define LOCKED_MSG "%s is locked by another process: is another sockid-agent using this data dir?"

static void test_locked_by_other_connection(void **state)
{
    struct dir *d = *state;
    struct store *st = open_ok(d);
    st = store_close(st);

    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(d->db, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "BEGIN EXCLUSIVE", NULL, NULL, NULL), SQLITE_OK);
    double t0 = now_s();
    expect_open_error(d, -EBUSY, LOCKED_MSG);
    print_message("locked open gave up after %.2f s\n", now_s() - t0);
    assert_int_equal(sqlite3_exec(db, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_close(db), SQLITE_OK);

    st = open_ok(d); /* free again */
    st = store_close(st);
}

/* Two agents on one data dir: the second is refused while the first runs. */
static void test_second_store_refused(void **state)
{
    struct dir *d = *state;
    struct store *st = open_ok(d);
    /* Locked from open on, before anything is written. */
    expect_open_error(d, -EBUSY, LOCKED_MSG);
    struct entry *e = mk_simple("0123456789abcdef0123456789abcdef", 1, 1);
    insert_ok(st, e);
    st = store_close(st);
    st = open_ok(d);
    size_t n = 0;
    struct entry **list = load_ok(st, &n);
    assert_int_equal(n, 1);
    assert_entry_equal(list[0], e);
    free_list(list, n);
    st = store_close(st);
    (void)entry_unref(e);
}

static void test_duplicate_identity(void **state)
{
    struct dir *d = *state;
    const char *sel_ab[] = {"unix:uid:1", "unix:gid:2"};
    const char *sel_ba[] = {"unix:gid:2", "unix:uid:1"};
    const char *aud[] = {"x"};
    struct entry *first = mk("11111111111111111111111111111111", "spiffe://example.org/a", sel_ab,
                             2, NULL, 0, NULL, 10);
    /* Same SPIFFE ID and selector set, given in another order, with other
     * audiences, ttl and hint: still the same identity. */
    struct entry *dup = mk("22222222222222222222222222222222", "spiffe://example.org/a", sel_ba, 2,
                           aud, 1, "again", 20);
    /* A subset of the selectors, or another SPIFFE ID: a different identity. */
    struct entry *subset = mk("33333333333333333333333333333333", "spiffe://example.org/a", sel_ab,
                              1, NULL, 0, NULL, 30);
    struct entry *other = mk("44444444444444444444444444444444", "spiffe://example.org/b", sel_ab,
                             2, NULL, 0, NULL, 40);
    /* First's id with another identity. */
    struct entry *same_id = mk("11111111111111111111111111111111", "spiffe://example.org/c", sel_ab,
                               2, NULL, 0, NULL, 50);
    struct store *st = open_ok(d);
    char existing[ENTRY_ID_LEN + 1];
    char err[ERR_MAX];

    insert_ok(st, first);
    memset(existing, 'Z', sizeof(existing));
    err[0] = '\0';
    assert_int_equal(store_insert(st, dup, existing, err, sizeof(err)), -EEXIST);
    assert_string_equal(existing, first->id);
    assert_string_equal(err, "an entry with this SPIFFE ID and these selectors exists already: "
                             "11111111111111111111111111111111");
    insert_ok(st, subset);
    insert_ok(st, other);

    memset(existing, 'Z', sizeof(existing));
    assert_int_equal(store_insert(st, same_id, existing, err, sizeof(err)), -EEXIST);
    assert_string_equal(existing, first->id);
    assert_string_equal(err, "an entry with id 11111111111111111111111111111111 exists already");

    /* The refused inserts left nothing behind. */
    st = store_close(st);
    assert_int_equal(db_int(d, "SELECT count(*) FROM entries"), 3);
    /* 5 selectors in all, each followed by a NUL; no audiences. */
    assert_int_equal(db_int(d, "SELECT sum(length(selectors)) FROM entries"),
                     3 * strlen("unix:uid:1") + 2 * strlen("unix:gid:2") + 5);
    assert_int_equal(db_int(d, "SELECT sum(length(audiences)) FROM entries"), 0);
    st = open_ok(d);
    size_t n = 0;
    struct entry **list = load_ok(st, &n);
    assert_int_equal(n, 3);
    assert_entry_equal(list[0], first);
    assert_entry_equal(list[1], subset);
    assert_entry_equal(list[2], other);
    free_list(list, n);
    st = store_close(st);
    (void)entry_unref(first);
    (void)entry_unref(dup);
    (void)entry_unref(subset);
    (void)entry_unref(other);
    (void)entry_unref(same_id);
}

static void test_delete(void **state)
{
    struct dir *d = *state;
    const char *aud[] = {"a", "b"};
    const char *sel[] = {"unix:uid:1", "unix:gid:1"};
    struct entry *a =
        mk("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "spiffe://example.org/a", sel, 2, aud, 2, NULL, 1);
    struct entry *b = mk_simple("bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", 2, 2);
    struct entry *again =
        mk("cccccccccccccccccccccccccccccccc", "spiffe://example.org/a", sel, 2, NULL, 0, NULL, 3);
    char err[ERR_MAX];
    struct store *st = open_ok(d);

    insert_ok(st, a);
    insert_ok(st, b);
    assert_int_equal(store_delete(st, "dddddddddddddddddddddddddddddddd", err, sizeof(err)),
                     -ENOENT);
    assert_string_equal(err, "no entry with id dddddddddddddddddddddddddddddddd");
    assert_int_equal(store_delete(st, "not an id\n", err, sizeof(err)), -ENOENT);
    assert_string_equal(err, "no entry with that id: an entry id is 32 lowercase hex digits");

    err[0] = '\0';
    assert_int_equal(store_delete(st, a->id, err, sizeof(err)), 0);
    assert_string_equal(err, "");
    assert_int_equal(store_delete(st, a->id, err, sizeof(err)), -ENOENT);
    /* Its identity is free again. */
    insert_ok(st, again);
    st = store_close(st);

    st = open_ok(d);
    size_t n = 0;
    struct entry **list = load_ok(st, &n);
    assert_int_equal(n, 2);
    assert_entry_equal(list[0], b);
    assert_entry_equal(list[1], again);
    free_list(list, n);
    st = store_close(st);
    /* The selectors and audiences went with it: they are in its row. */
    assert_int_equal(db_int(d, "SELECT count(*) FROM entries"), 2);
    assert_int_equal(db_int(d, "SELECT sum(length(audiences)) FROM entries"), 0);
    (void)entry_unref(a);
    (void)entry_unref(b);
    (void)entry_unref(again);
}

static void test_invalid_rows_refused_on_load(void **state)
{
    struct dir *d = *state;
    struct entry *e = mk_simple("0123456789abcdef0123456789abcdef", 1, 1);
    struct entry *f = mk_simple("fedcba9876543210fedcba9876543210", 2, 2);
    struct store *st = open_ok(d);
    insert_ok(st, e);
    insert_ok(st, f);
    st = store_close(st);

    /* The pristine file, to start each case from. */
    struct stat sb;
    assert_int_equal(stat(d->db, &sb), 0);
    size_t len = (size_t)sb.st_size;
    uint8_t *pristine = malloc(len);
    assert_non_null(pristine);
    int fd = open(d->db, O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    assert_int_equal(read(fd, pristine, len), (ssize_t)len);
    assert_int_equal(close(fd), 0);

    static const struct {
        const char *sql;
        bool prefix; /* the rest is entries.c's reason */
        const char *message;
    } cases[] = {
        {"UPDATE entries SET spiffe_id = X'6e6f7065' WHERE seq = 1" /* "nope" */, false,
         "entry 0123456789abcdef0123456789abcdef in %s is not valid: SPIFFE ID must start with "
         "'spiffe://': restore the file from a backup or move it aside"},
        {"UPDATE entries SET hint = X'610062' WHERE seq = 2" /* "a\0b" */, false,
         "entry fedcba9876543210fedcba9876543210 in %s is not valid: hint holds a control "
         "character at byte 1: restore the file from a backup or move it aside"},
        {"UPDATE entries SET ttl = 0 WHERE seq = 2", true,
         "entry fedcba9876543210fedcba9876543210 in %s is not valid: "},
        {"UPDATE entries SET selectors = X''", false,
         "entry 0123456789abcdef0123456789abcdef in %s is not valid: an entry needs at least 1 "
         "selector, got 0: restore the file from a backup or move it aside"},
        /* "unix:uid:1" without its NUL */
        {"UPDATE entries SET selectors = X'756e69783a7569643a31' WHERE seq = 2", false,
         "entry fedcba9876543210fedcba9876543210 in %s is not valid: the selectors are not a "
         "list of strings that each end with a NUL: restore the file from a backup or move it "
         "aside"},
        /* "unix:uid:1\0\0": an empty selector */
        {"UPDATE entries SET selectors = X'756e69783a7569643a310000' WHERE seq = 2", true,
         "entry fedcba9876543210fedcba9876543210 in %s is not valid: selector 2 of 2 (''): "},
        /* "unix:uid:\x9b\0": a C1 control in the value */
        {"UPDATE entries SET selectors = X'756e69783a7569643ac29b00' WHERE seq = 1", true,
         "entry 0123456789abcdef0123456789abcdef in %s is not valid: selector 1 of 1 "},
        {"UPDATE entries SET audiences = X'6100206200' WHERE seq = 1" /* "a\0 b\0" */, true,
         "entry 0123456789abcdef0123456789abcdef in %s is not valid: audience 2 of 2 "},
        {"UPDATE entries SET audiences = X'61' WHERE seq = 1" /* "a" */, false,
         "entry 0123456789abcdef0123456789abcdef in %s is not valid: the audiences are not a "
         "list of strings that each end with a NUL: restore the file from a backup or move it "
         "aside"},
        {"UPDATE entries SET spiffe_id = X'7370696666653a2f2f612f00' WHERE seq = 1", false,
         "entry 0123456789abcdef0123456789abcdef in %s is not valid: SPIFFE ID holds a NUL byte "
         "at byte 11: restore the file from a backup or move it aside"},
        {"PRAGMA ignore_check_constraints = 1; UPDATE entries SET revision = -1 WHERE seq = 2",
         false,
         "entry fedcba9876543210fedcba9876543210 in %s is not valid: a field is malformed: "
         "restore the file from a backup or move it aside"},
        /* A column longer than any valid entry's is refused before it is
         * copied (STORE_COLUMN_MAX): 1 MB of selectors, 1 MB of id. */
        {"UPDATE entries SET selectors = zeroblob(1000000) WHERE seq = 2", false,
         "entry fedcba9876543210fedcba9876543210 in %s is not valid: a field is malformed: "
         "restore the file from a backup or move it aside"},
        {"UPDATE entries SET id = zeroblob(1000000) WHERE seq = 1", false,
         "%s holds an entry (row 1) with a malformed id: restore the file from a backup or move "
         "it aside"},
        {"UPDATE entries SET id = X'3031' WHERE seq = 1", false,
         "%s holds an entry (row 1) with a malformed id: restore the file from a backup or move "
         "it aside"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char msg[ERR_MAX], err[ERR_MAX] = "";
        struct entry **list = (struct entry **)&list;
        size_t n = 77;
        write_file(d->db, pristine, len);
        db_exec(d, cases[i].sql);
        st = open_ok(d);
        assert_int_equal(load_list(st, &list, &n, err, sizeof(err)), -EUCLEAN);
        assert_ptr_equal(list, (struct entry **)&list); /* ret_* untouched */
        assert_int_equal(n, 77);
        (void)snprintf(msg, sizeof(msg), cases[i].message, d->db);
        if (cases[i].prefix) {
            assert_memory_equal(err, msg, strlen(msg));
            assert_true(strstr(err, ": restore the file from a backup or move it aside") != NULL);
        } else {
            assert_string_equal(err, msg);
        }
        st = store_close(st);
    }
    free(pristine);
    (void)entry_unref(e);
    (void)entry_unref(f);
}

static void test_file_mode_and_wal(void **state)
{
    struct dir *d = *state;
    mode_t old = umask(0);
    struct store *st = open_ok(d);
    (void)umask(old);
    struct stat sb;
    assert_int_equal(stat(d->db, &sb), 0);
    assert_int_equal(sb.st_mode & 07777, 0600);

    struct entry *e = mk_simple("0123456789abcdef0123456789abcdef", 1, 1);
    insert_ok(st, e);
    (void)entry_unref(e);
    /* The WAL exists while open, with the database's mode; no -shm file
     * (exclusive locking keeps the WAL index in memory). */
    char wal[160], shm[160];
    (void)snprintf(wal, sizeof(wal), "%s-wal", d->db);
    (void)snprintf(shm, sizeof(shm), "%s-shm", d->db);
    assert_int_equal(stat(wal, &sb), 0);
    assert_int_equal(sb.st_mode & 07777, 0600);
    assert_true(sb.st_size > 0);
    assert_int_equal(stat(shm, &sb), -1);
    /* Bytes 18 and 19 of the header are 2 in WAL mode. */
    uint8_t hdr[20];
    int fd = open(d->db, O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    assert_int_equal(read(fd, hdr, sizeof(hdr)), (ssize_t)sizeof(hdr));
    assert_int_equal(close(fd), 0);
    assert_int_equal(hdr[18], 2);
    assert_int_equal(hdr[19], 2);
    st = store_close(st);

    /* And as SQLite itself reports it. */
    sqlite3 *db = NULL;
    sqlite3_stmt *s = NULL;
    assert_int_equal(sqlite3_open_v2(d->db, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &s, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(s, 0), "wal");
    assert_int_equal(sqlite3_finalize(s), SQLITE_OK);
    assert_int_equal(sqlite3_close(db), SQLITE_OK);

    /* A looser file is tightened on open. */
    assert_int_equal(chmod(d->db, 0644), 0);
    st = open_ok(d);
    st = store_close(st);
    assert_int_equal(stat(d->db, &sb), 0);
    assert_int_equal(sb.st_mode & 07777, 0600);
}

static void test_not_a_regular_file(void **state)
{
    struct dir *d = *state;
    char err[ERR_MAX], msg[ERR_MAX];
    struct store *st = NULL;

    assert_int_equal(symlink("/etc/passwd", d->db), 0);
    assert_int_equal(store_open(d->path, &st, err, sizeof(err)), -ELOOP);
    (void)snprintf(msg, sizeof(msg), "%s is a symbolic link: the store must be a regular file",
                   d->db);
    assert_string_equal(err, msg);
    assert_int_equal(unlink(d->db), 0);

    assert_int_equal(mkfifo(d->db, 0600), 0);
    assert_int_equal(store_open(d->path, &st, err, sizeof(err)), -EINVAL);
    (void)snprintf(msg, sizeof(msg), "%s is not a regular file: move it aside", d->db);
    assert_string_equal(err, msg);
    assert_int_equal(unlink(d->db), 0);

    assert_int_equal(store_open("/nonexistent/sockid-test", &st, err, sizeof(err)), -ENOENT);
    assert_string_equal(err, "cannot open /nonexistent/sockid-test/entries.db: No such file or "
                             "directory: create the data dir first");
    assert_null(st);
}

/* A process that dies without closing leaves its commits in the WAL; the
 * next open recovers them. */
static void test_crash_keeps_acknowledged(void **state)
{
    struct dir *d = *state;
    char id[ENTRY_ID_LEN + 1];
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct store *st = NULL;
        if (store_open(d->path, &st, NULL, 0) != 0)
            _exit(1);
        for (unsigned i = 0; i < 3; i++) {
            make_id(id, i + 1);
            struct entry *e = mk_simple(id, i, i);
            if (store_insert(st, e, NULL, NULL, 0) != 0)
                _exit(2);
            (void)entry_unref(e);
        }
        _exit(0); /* no store_close: the WAL is not checkpointed */
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    char wal[160];
    struct stat sb;
    (void)snprintf(wal, sizeof(wal), "%s-wal", d->db);
    assert_int_equal(stat(wal, &sb), 0);
    assert_true(sb.st_size > 0);

    struct store *st = open_ok(d);
    size_t n = 0;
    struct entry **list = load_ok(st, &n);
    assert_int_equal(n, 3);
    make_id(id, 3);
    assert_string_equal(list[2]->id, id);
    free_list(list, n);
    st = store_close(st);
}

static void test_many_inserts_then_reload(void **state)
{
    struct dir *d = *state;
    enum { N = 10000 };
    char id[ENTRY_ID_LEN + 1];
    struct store *st = open_ok(d);
    double t0 = now_s();
    for (unsigned i = 0; i < N; i++) {
        /* Ids in reverse so that the stable order is not insertion order. */
        make_id(id, N - i);
        struct entry *e = mk_simple(id, i, (int64_t)(i / 3));
        insert_ok(st, e);
        (void)entry_unref(e);
    }
    double t1 = now_s();
    st = store_close(st);
    double t2 = now_s();
    st = open_ok(d);
    double t3 = now_s();
    size_t n = 0;
    struct entry **list = load_ok(st, &n);
    double t4 = now_s();
    print_message("%d inserts: %.1f us each (durable); close %.1f ms; open %.1f ms; "
                  "load %.1f ms\n",
                  N, (t1 - t0) / N * 1e6, (t2 - t1) * 1e3, (t3 - t2) * 1e3, (t4 - t3) * 1e3);
    assert_int_equal(n, N);
    for (size_t i = 1; i < n; i++)
        assert_true(entry_cmp(list[i - 1], list[i]) < 0);
    free_list(list, n);
    st = store_close(st);
}

/* A failure of the callback stops the load, after the entries before it
 * were handed over in order; the rest are never built. Loads of every size
 * around a batch's go through the same path. */
static void test_load_stops_when_add_fails(void **state)
{
    struct dir *d = *state;
    char id[ENTRY_ID_LEN + 1], err[ERR_MAX], msg[ERR_MAX];
    struct store *st = open_ok(d);
    for (unsigned i = 0; i < 1000; i++) {
        make_id(id, i + 1);
        struct entry *e = mk_simple(id, i, i);
        insert_ok(st, e);
        (void)entry_unref(e);
    }
    static const size_t fail_at[] = {0, 1, 255, 256, 257, 700, 999};
    for (size_t k = 0; k < sizeof(fail_at) / sizeof(fail_at[0]); k++) {
        struct collected c = {.fail_at = fail_at[k]};
        size_t n = 12345;
        err[0] = '\0';
        assert_int_equal(store_load(st, collect, &c, &n, err, sizeof(err)), -ENOSPC);
        assert_int_equal(n, 12345); /* ret_n untouched */
        assert_int_equal(c.n, fail_at[k]);
        for (size_t i = 0; i < c.n; i++) {
            make_id(id, (unsigned)i + 1);
            assert_string_equal(c.v[i]->id, id);
        }
        make_id(id, (unsigned)fail_at[k] + 1);
        (void)snprintf(msg, sizeof(msg), "cannot load entry %s from %s: %s", id, d->db,
                       strerror(ENOSPC));
        assert_string_equal(err, msg);
        collected_free(&c);
    }
    /* And the store still loads afterwards. */
    size_t n = 0;
    struct entry **list = load_raw(st, &n);
    assert_int_equal(n, 1000);
    free_list(list, n);
    st = store_close(st);
}

/* Turns the (closed) store's file back into schema version 1, as agents
 * before version 2 wrote it: each selector and audience a row of its own
 * table. */
static void downgrade_to_v1(const struct dir *d)
{
    static const char *const children[] = {"selectors", "audiences"};
    sqlite3 *db = NULL;
    sqlite3_stmt *rd = NULL, *wr[2] = {NULL, NULL};
    assert_int_equal(sqlite3_open_v2(d->db, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db,
                                  "BEGIN;"
                                  "CREATE TABLE entry_selectors ("
                                  "  entry INTEGER NOT NULL REFERENCES entries (seq) ON DELETE "
                                  "CASCADE,"
                                  "  selector BLOB NOT NULL,"
                                  "  PRIMARY KEY (entry, selector)"
                                  ") STRICT, WITHOUT ROWID;"
                                  "CREATE TABLE entry_audiences ("
                                  "  entry INTEGER NOT NULL REFERENCES entries (seq) ON DELETE "
                                  "CASCADE,"
                                  "  audience BLOB NOT NULL,"
                                  "  PRIMARY KEY (entry, audience)"
                                  ") STRICT, WITHOUT ROWID;",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    assert_int_equal(
        sqlite3_prepare_v2(db, "SELECT seq, selectors, audiences FROM entries", -1, &rd, NULL),
        SQLITE_OK);
    assert_int_equal(
        sqlite3_prepare_v2(db, "INSERT INTO entry_selectors VALUES (?1, ?2)", -1, &wr[0], NULL),
        SQLITE_OK);
    assert_int_equal(
        sqlite3_prepare_v2(db, "INSERT INTO entry_audiences VALUES (?1, ?2)", -1, &wr[1], NULL),
        SQLITE_OK);
    while (sqlite3_step(rd) == SQLITE_ROW) {
        for (int c = 0; c < 2; c++) {
            const char *p = sqlite3_column_blob(rd, 1 + c);
            size_t len = (size_t)sqlite3_column_bytes(rd, 1 + c);
            for (size_t i = 0; i < len;) {
                const char *nul = memchr(p + i, '\0', len - i);
                assert_non_null(nul);
                assert_int_equal(sqlite3_bind_int64(wr[c], 1, sqlite3_column_int64(rd, 0)),
                                 SQLITE_OK);
                assert_int_equal(
                    sqlite3_bind_blob(wr[c], 2, p + i, (int)(nul - (p + i)), SQLITE_TRANSIENT),
                    SQLITE_OK);
                if (sqlite3_step(wr[c]) != SQLITE_DONE)
                    fail_msg("downgrading %s: %s", children[c], sqlite3_errmsg(db));
                assert_int_equal(sqlite3_reset(wr[c]), SQLITE_OK);
                i = (size_t)(nul - p) + 1;
            }
        }
    }
    assert_int_equal(sqlite3_finalize(rd), SQLITE_OK);
    assert_int_equal(sqlite3_finalize(wr[0]), SQLITE_OK);
    assert_int_equal(sqlite3_finalize(wr[1]), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db,
                                  "ALTER TABLE entries DROP COLUMN selectors;"
                                  "ALTER TABLE entries DROP COLUMN audiences;"
                                  "UPDATE schema_version SET version = 1;"
                                  "COMMIT;",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_close(db), SQLITE_OK);
}

/* A version 1 file, as the first agents wrote it, is migrated on open:
 * every entry loads as it was, identities still collide, and the child
 * tables are gone. */
static void test_migration_v1_keeps_entries(void **state)
{
    struct dir *d = *state;
    enum { N = 700 };
    const char *aud[] = {"https://api.example.org", "b", "zz"};
    char id[ENTRY_ID_LEN + 1];
    struct entry *in[N];
    struct store *st = open_ok(d);
    for (unsigned i = 0; i < N; i++) {
        char sel_buf[4][64], hint[32];
        const char *sel[4];
        size_t n_sel = 1 + i % 4;
        for (size_t j = 0; j < n_sel; j++) {
            /* Shared selectors and entries' own, some outside ASCII. */
            if (j == 0)
                (void)snprintf(sel_buf[j], sizeof(sel_buf[j]), "unix:uid:%u", i % 7);
            else
                (void)snprintf(sel_buf[j], sizeof(sel_buf[j]), "k8s:pod-name:p%u-%zu-\u00e9", i, j);
            sel[j] = sel_buf[j];
        }
        (void)snprintf(hint, sizeof(hint), "hint %u", i);
        make_id(id, N - i); /* the stable order is not insertion order */
        char spiffe[64];
        (void)snprintf(spiffe, sizeof(spiffe), "spiffe://example.org/w/%u", i);
        in[i] = mk(id, spiffe, sel, n_sel, aud, i % 4, i % 3 ? hint : NULL, (int64_t)(i / 10));
        insert_ok(st, in[i]);
    }
    st = store_close(st);
    downgrade_to_v1(d);
    assert_int_equal(db_int(d, "SELECT version FROM schema_version"), 1);
    assert_int_equal(db_int(d, "SELECT count(*) FROM entry_selectors"), N / 4 * (1 + 2 + 3 + 4));

    st = open_ok(d);
    size_t n = 0;
    struct entry **list = load_ok(st, &n);
    assert_int_equal(n, N);
    for (size_t i = 0; i < n; i++) {
        /* Entry i was created at i / 10 with id N - i: in each group of
         * ten, the last inserted comes first. */
        size_t want = i / 10 * 10 + 9 - i % 10;
        assert_entry_equal(list[i], in[want]);
    }
    free_list(list, n);

    /* The identity keys came along: the same identity is still refused. */
    struct entry *again = NULL;
    char err[ERR_MAX] = "", existing[ENTRY_ID_LEN + 1] = "";
    const char *sel[] = {in[5]->selectors[1], in[5]->selectors[0]};
    struct entry_spec spec = {
        .spiffe_id = in[5]->spiffe_id,
        .spiffe_id_len = strlen(in[5]->spiffe_id),
        .selectors = sel,
        .selector_lens = (size_t[]){strlen(sel[0]), strlen(sel[1])},
        .n_selectors = 2,
    };
    assert_int_equal(in[5]->n_selectors, 2);
    assert_int_equal(entry_new(&spec, "example.org", 60, 3600, &again, err, sizeof(err)), 0);
    assert_int_equal(store_insert(st, again, existing, err, sizeof(err)), -EEXIST);
    assert_string_equal(existing, in[5]->id);
    (void)entry_unref(again);
    st = store_close(st);

    assert_int_equal(db_int(d, "SELECT version FROM schema_version"), STORE_SCHEMA_VERSION);
    assert_int_equal(db_int(d, "SELECT count(*) FROM sqlite_master WHERE name IN "
                               "('entry_selectors', 'entry_audiences')"),
                     0);
    assert_int_equal(db_int(d, "SELECT count(*) FROM pragma_foreign_key_check"), 0);
    for (unsigned i = 0; i < N; i++)
        (void)entry_unref(in[i]);
}

/* A version 1 entry without selectors (a damaged file) migrates, and is
 * refused on load as version 1 refused it. */
static void test_migration_v1_keeps_bad_entry_refused(void **state)
{
    struct dir *d = *state;
    struct entry *e = mk_simple("0123456789abcdef0123456789abcdef", 1, 1);
    struct store *st = open_ok(d);
    insert_ok(st, e);
    st = store_close(st);
    downgrade_to_v1(d);
    db_exec(d, "DELETE FROM entry_selectors");
    st = open_ok(d);
    struct entry **list = NULL;
    size_t n = 0;
    char err[ERR_MAX] = "";
    assert_int_equal(load_list(st, &list, &n, err, sizeof(err)), -EUCLEAN);
    assert_non_null(strstr(err, "an entry needs at least 1 selector, got 0"));
    st = store_close(st);
    (void)entry_unref(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_close_null),
        cmocka_unit_test_setup_teardown(test_survives_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_store_loads_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_newer_schema_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_random_bytes_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncated_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_foreign_database_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_locked_by_other_connection, setup, teardown),
        cmocka_unit_test_setup_teardown(test_second_store_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_duplicate_identity, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_rows_refused_on_load, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_mode_and_wal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_a_regular_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crash_keeps_acknowledged, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_inserts_then_reload, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_stops_when_add_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migration_v1_keeps_entries, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migration_v1_keeps_bad_entry_refused, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
