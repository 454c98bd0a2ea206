/* The entry store's operations (see store.h): inserting, deleting and
 * loading entries through the statements prepared at open.
 *
 * Opening the database, its pragmas, schema, migrations and the mapping of
 * SQLite errors are in store_schema.c, whose top comment explains durability,
 * locking and the schema, including the identity_key this file computes. */
#include "store.h"
#include "store_internal.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>
#include <sqlite3.h>

#define STORE_IDENTITY_KEY_LEN crypto_hash_sha256_BYTES

/* Steps a statement that returns no rows, and resets it. */
static int store_exec(struct store *st, sqlite3_stmt *s, char *err, size_t err_len)
{
    int rc = sqlite3_step(s);
    int r = rc == SQLITE_DONE ? 0 : store_fail(st, rc, err, err_len);
    (void)sqlite3_reset(s);
    return r;
}

static void store_rollback(struct store *st)
{
    if (!sqlite3_get_autocommit(st->db)) {
        (void)sqlite3_step(st->stmt[STMT_ROLLBACK]);
        (void)sqlite3_reset(st->stmt[STMT_ROLLBACK]);
    }
}

/* --- writing ------------------------------------------------------------- */

static int store_strcmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Sorts and deduplicates n strings (n <= cap) into out; returns the count. */
static size_t store_canonical(char *const *in, size_t n, const char **out)
{
    size_t k = 0;
    if (n == 0)
        return 0;
    memcpy(out, in, n * sizeof(*out));
    qsort(out, n, sizeof(*out), store_strcmp);
    for (size_t i = 0; i < n; i++)
        if (k == 0 || strcmp(out[k - 1], out[i]) != 0)
            out[k++] = out[i];
    return k;
}

static void store_hash_part(crypto_hash_sha256_state *h, const void *p, size_t len)
{
    uint8_t be[4] = {(uint8_t)(len >> 24), (uint8_t)(len >> 16), (uint8_t)(len >> 8), (uint8_t)len};
    (void)crypto_hash_sha256_update(h, be, sizeof(be));
    if (len)
        (void)crypto_hash_sha256_update(h, p, len);
}

static void store_identity_key(const char *spiffe_id, const char *const *selectors, size_t n,
                               uint8_t out[static STORE_IDENTITY_KEY_LEN])
{
    crypto_hash_sha256_state h;
    uint8_t be[4] = {(uint8_t)(n >> 24), (uint8_t)(n >> 16), (uint8_t)(n >> 8), (uint8_t)n};

    (void)crypto_hash_sha256_init(&h);
    store_hash_part(&h, spiffe_id, strlen(spiffe_id));
    (void)crypto_hash_sha256_update(&h, be, sizeof(be));
    for (size_t i = 0; i < n; i++)
        store_hash_part(&h, selectors[i], strlen(selectors[i]));
    (void)crypto_hash_sha256_final(&h, out);
}

static int store_bind_str(sqlite3_stmt *s, int idx, const char *str)
{
    if (!str)
        return sqlite3_bind_null(s, idx);
    return sqlite3_bind_blob64(s, idx, str, strlen(str), SQLITE_STATIC);
}

static bool store_entry_ok(const struct entry *e)
{
    if (!e || !e->spiffe_id || !entries_id_valid(e->id, strnlen(e->id, sizeof(e->id))))
        return false;
    if (e->n_selectors < 1 || e->n_selectors > ENTRY_MAX_SELECTORS || !e->selectors)
        return false;
    if (e->n_audiences > ENTRY_MAX_AUDIENCES || (e->n_audiences && !e->audiences))
        return false;
    for (size_t i = 0; i < e->n_selectors; i++)
        if (!e->selectors[i])
            return false;
    for (size_t i = 0; i < e->n_audiences; i++)
        if (!e->audiences[i])
            return false;
    return e->revision <= INT64_MAX;
}

/* The block of n strings, each followed by a NUL, as stored (see
 * store_schema.c); the caller frees it. */
static char *store_block(const char *const *items, size_t n, size_t *ret_len)
{
    size_t len = 0;
    for (size_t i = 0; i < n; i++)
        len += strlen(items[i]) + 1;
    char *block = malloc(len ? len : 1);
    if (!block)
        return NULL;
    char *p = block;
    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(items[i]) + 1;
        memcpy(p, items[i], l);
        p += l;
    }
    *ret_len = len;
    return block;
}

/* Writes the row of one entry inside the caller's transaction. */
static int store_insert_row(struct store *st, const struct entry *e, const uint8_t *key,
                            const char *const *sel, size_t n_sel, const char *const *aud,
                            size_t n_aud, char *err, size_t err_len)
{
    sqlite3_stmt *s = st->stmt[STMT_INSERT_ENTRY];
    size_t sel_len = 0, aud_len = 0;
    char *sel_block = store_block(sel, n_sel, &sel_len);
    char *aud_block = store_block(aud, n_aud, &aud_len);
    int r, rc = SQLITE_NOMEM;
    if (!sel_block || !aud_block)
        goto out;
    rc = sqlite3_bind_blob(s, 1, e->id, ENTRY_ID_LEN, SQLITE_STATIC);
    if (rc == SQLITE_OK)
        rc = store_bind_str(s, 2, e->spiffe_id);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_blob(s, 3, key, STORE_IDENTITY_KEY_LEN, SQLITE_STATIC);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(s, 4, e->ttl);
    if (rc == SQLITE_OK)
        rc = store_bind_str(s, 5, e->hint);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(s, 6, e->created_at);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(s, 7, (int64_t)e->revision);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_blob64(s, 8, sel_block, sel_len, SQLITE_STATIC);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_blob64(s, 9, aud_block, aud_len, SQLITE_STATIC);
out:
    r = rc == SQLITE_OK ? store_exec(st, s, err, err_len) : store_fail(st, rc, err, err_len);
    (void)sqlite3_clear_bindings(s);
    free(sel_block);
    free(aud_block);
    return r;
}

/* Looks up the id of the entry with this identity: 0 with ret_id set, 1 when
 * there is none. */
static int store_find_identity(struct store *st, const uint8_t *key,
                               char ret_id[static ENTRY_ID_LEN + 1], char *err, size_t err_len)
{
    sqlite3_stmt *s = st->stmt[STMT_FIND_IDENTITY];
    int r = 1;
    int rc = sqlite3_bind_blob(s, 1, key, STORE_IDENTITY_KEY_LEN, SQLITE_STATIC);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        const void *id = sqlite3_column_blob(s, 0);
        if (sqlite3_column_bytes(s, 0) != ENTRY_ID_LEN || !id) {
            r = store_corrupt(st, err, err_len);
        } else {
            memcpy(ret_id, id, ENTRY_ID_LEN);
            ret_id[ENTRY_ID_LEN] = '\0';
            r = 0;
        }
    } else if (rc != SQLITE_DONE) {
        r = store_fail(st, rc, err, err_len);
    }
    (void)sqlite3_reset(s);
    (void)sqlite3_clear_bindings(s);
    return r;
}

/* 1 when an entry has this id, 0 when none, or a negative errno. */
static int store_id_taken(struct store *st, const char *id, char *err, size_t err_len)
{
    sqlite3_stmt *s = st->stmt[STMT_FIND_ID];
    int r;
    int rc = sqlite3_bind_blob(s, 1, id, ENTRY_ID_LEN, SQLITE_STATIC);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        r = 1;
    else if (rc == SQLITE_DONE)
        r = 0;
    else
        r = store_fail(st, rc, err, err_len);
    (void)sqlite3_reset(s);
    (void)sqlite3_clear_bindings(s);
    return r;
}

int store_insert(struct store *st, const struct entry *e, char *existing_id, char *err,
                 size_t err_len)
{
    const char *sel[ENTRY_MAX_SELECTORS], *aud[ENTRY_MAX_AUDIENCES];
    uint8_t key[STORE_IDENTITY_KEY_LEN];
    char existing[ENTRY_ID_LEN + 1];
    size_t n_sel, n_aud;
    int r;

    if (!st || !store_entry_ok(e)) {
        text_err(err, err_len, "cannot store an entry that is not valid");
        return -EINVAL;
    }
    n_sel = store_canonical(e->selectors, e->n_selectors, sel);
    n_aud = store_canonical(e->audiences, e->n_audiences, aud);
    store_identity_key(e->spiffe_id, sel, n_sel, key);

    r = store_exec(st, st->stmt[STMT_BEGIN_WRITE], err, err_len);
    if (r < 0)
        return r;
    r = store_find_identity(st, key, existing, err, err_len);
    if (r == 0) {
        text_err(err, err_len,
                 "an entry with this SPIFFE ID and these selectors exists already: %s", existing);
        r = -EEXIST;
        goto fail;
    }
    if (r < 0)
        goto fail;
    r = store_id_taken(st, e->id, err, err_len);
    if (r == 1) {
        memcpy(existing, e->id, sizeof(existing));
        text_err(err, err_len, "an entry with id %s exists already", e->id);
        r = -EEXIST;
        goto fail;
    }
    if (r < 0)
        goto fail;
    r = store_insert_row(st, e, key, sel, n_sel, aud, n_aud, err, err_len);
    if (r < 0)
        goto fail;
    r = store_exec(st, st->stmt[STMT_COMMIT], err, err_len);
    if (r < 0)
        goto fail;
    return 0;
fail:
    store_rollback(st);
    if (r == -EEXIST && existing_id)
        memcpy(existing_id, existing, sizeof(existing));
    return r;
}

int store_delete(struct store *st, const char *id, char *err, size_t err_len)
{
    if (!st || !id) {
        text_err(err, err_len, "no entry id to delete");
        return -EINVAL;
    }
    size_t len = strnlen(id, ENTRY_ID_LEN + 1);
    if (!entries_id_valid(id, len)) {
        /* Not echoed: it may hold anything. */
        text_err(err, err_len, "no entry with that id: an entry id is %u lowercase hex digits",
                 ENTRY_ID_LEN);
        return -ENOENT;
    }
    sqlite3_stmt *s = st->stmt[STMT_DELETE];
    int rc = sqlite3_bind_blob(s, 1, id, (int)len, SQLITE_STATIC);
    int r = rc == SQLITE_OK ? store_exec(st, s, err, err_len) : store_fail(st, rc, err, err_len);
    (void)sqlite3_clear_bindings(s);
    if (r < 0)
        return r;
    if (sqlite3_changes(st->db) == 0) {
        text_err(err, err_len, "no entry with id %s", id);
        return -ENOENT;
    }
    return 0;
}

/* --- loading ------------------------------------------------------------- */

/* Loading is a pipeline of two threads: the caller's steps SQLite and
 * copies each row's columns into a batch; a builder thread validates the
 * rows, builds their entries (entry_from_stored) and hands them to the
 * caller's callback, which costs about as much as the scan. Batches go
 * round a ring of STORE_RING; the builder takes them in order, so entries
 * keep the rows' order. The builder stops at the first row it refuses; the
 * scan stops at the next batch. A file of one batch, or a process that
 * cannot start a thread, has the caller build each batch itself. */
#define STORE_BATCH_ROWS 256
#define STORE_RING       4
/* The longest column a valid entry has: its selectors, each with a NUL.
 * A longer one (a damaged file) is refused without being copied. */
#define STORE_COLUMN_MAX (ENTRY_MAX_SELECTORS * (SELECTOR_MAX_LEN + 1u))

/* A row copied out of SQLite: its blobs as offsets into the batch's
 * bytes (which move as they grow). */
struct store_row {
    sqlite3_int64 seq;
    int64_t ttl, created_at, revision;
    size_t off[5], len[5]; /* id, SPIFFE ID, hint, selectors, audiences */
    bool hint;
    bool oversized; /* a column past STORE_COLUMN_MAX, not copied */
};

enum { ROW_ID, ROW_SPIFFE_ID, ROW_HINT, ROW_SELECTORS, ROW_AUDIENCES };

struct store_batch {
    size_t n;
    struct store_row rows[STORE_BATCH_ROWS];
    char *bytes;
    size_t len, cap;
};

struct store_loader {
    const struct store *st;
    pthread_mutex_t lock;
    pthread_cond_t changed;
    struct store_batch ring[STORE_RING];
    size_t filled, built; /* batches handed over, and taken back */
    bool done;            /* no batch will follow */
    bool stop;            /* the builder refused a row: stop scanning */
    bool threaded;        /* the builder runs (from the second batch on) */
    pthread_t builder;
    int (*add)(void *ctx, struct entry *e);
    void *ctx;
    /* The builder's, read by the caller after joining it. */
    size_t n; /* entries handed to add */
    int r;
    char err[512];
};

/* Appends a blob's bytes to the batch. */
static int store_batch_add(struct store_batch *b, sqlite3_value *v, size_t *ret_off,
                           size_t *ret_len)
{
    const void *p = sqlite3_value_blob(v);
    size_t n = (size_t)sqlite3_value_bytes(v);
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 64 * 1024;
        while (cap < b->len + n)
            cap *= 2;
        char *bytes = realloc(b->bytes, cap);
        if (!bytes)
            return -ENOMEM;
        b->bytes = bytes;
        b->cap = cap;
    }
    if (n)
        memcpy(b->bytes + b->len, p, n);
    *ret_off = b->len;
    *ret_len = n;
    b->len += n;
    return 0;
}

/* Copies the statement's current row into the batch. The scan is what a
 * load waits for, so calls into SQLite are spared: each column is fetched
 * once, as a value, and read from there (SQLite calls such values
 * unprotected: they are safe where only one thread uses the connection, as
 * this one does); most entries have no hint (NULL) and no audiences (an
 * empty blob). */
static int store_row_copy(struct store_batch *b, sqlite3_stmt *s)
{
    struct store_row *row = &b->rows[b->n];
    static const int cols[5] = {STORE_COL_ID, STORE_COL_SPIFFE_ID, STORE_COL_HINT,
                                STORE_COL_SELECTORS, STORE_COL_AUDIENCES};
    row->seq = sqlite3_value_int64(sqlite3_column_value(s, STORE_COL_SEQ));
    row->ttl = sqlite3_value_int64(sqlite3_column_value(s, STORE_COL_TTL));
    row->created_at = sqlite3_value_int64(sqlite3_column_value(s, STORE_COL_CREATED_AT));
    row->revision = sqlite3_value_int64(sqlite3_column_value(s, STORE_COL_REVISION));
    row->oversized = false;
    for (int i = 0; i < 5; i++) {
        sqlite3_value *v = sqlite3_column_value(s, cols[i]);
        if (i == ROW_HINT)
            row->hint = sqlite3_value_type(v) != SQLITE_NULL;
        int bytes = sqlite3_value_bytes(v);
        if (bytes > (int)STORE_COLUMN_MAX)
            row->oversized = true;
        if ((i == ROW_HINT && !row->hint) || (i == ROW_AUDIENCES && bytes == 0) ||
            bytes > (int)STORE_COLUMN_MAX) {
            row->off[i] = row->len[i] = 0;
            continue;
        }
        int r = store_batch_add(b, v, &row->off[i], &row->len[i]);
        if (r < 0)
            return r;
    }
    b->n++;
    return 0;
}

/* Builds the entry of a copied row; on failure a message that names the
 * entry (once its id is known to be one) or the row. */
static int store_row_build(const struct store *st, const struct store_batch *b,
                           const struct store_row *row, struct entry **ret, char *err,
                           size_t err_len)
{
    const char *id = b->bytes + row->off[ROW_ID];
    char why[256] = "";
    int r = -EINVAL;
    struct entry_stored in = {
        .id = id,
        .id_len = row->len[ROW_ID],
        .spiffe_id = b->bytes + row->off[ROW_SPIFFE_ID],
        .spiffe_id_len = row->len[ROW_SPIFFE_ID],
        .selectors = b->bytes + row->off[ROW_SELECTORS],
        .selectors_len = row->len[ROW_SELECTORS],
        .audiences = b->bytes + row->off[ROW_AUDIENCES],
        .audiences_len = row->len[ROW_AUDIENCES],
        .hint = row->hint ? b->bytes + row->off[ROW_HINT] : NULL,
        .hint_len = row->len[ROW_HINT],
        .ttl = (uint32_t)row->ttl,
        .created_at = row->created_at,
        .revision = (uint64_t)row->revision,
    };
    /* The columns are checked on insert; a damaged file may hold anything. */
    if (!row->oversized && row->ttl >= 0 && row->ttl <= UINT32_MAX && row->revision >= 0)
        r = entry_from_stored(&in, ret, why, sizeof(why));
    else
        (void)snprintf(why, sizeof(why), "a field is malformed");
    if (r == 0)
        return 0;
    if (r == -ENOMEM) {
        text_err(err, err_len, "out of memory");
        return r;
    }
    if (!entries_id_valid(in.id, in.id_len))
        text_err(err, err_len,
                 "%s holds an entry (row %lld) with a malformed id: restore the file from a "
                 "backup or move it aside",
                 st->path, (long long)row->seq);
    else
        text_err(
            err, err_len,
            "entry %.*s in %s is not valid: %s: restore the file from a backup or move it aside",
            (int)ENTRY_ID_LEN, id, st->path, why[0] ? why : "refused");
    return -EUCLEAN;
}

/* Builds a batch's entries and hands them over: the builder's work. */
static int store_batch_build(struct store_loader *ld, const struct store_batch *b)
{
    for (size_t i = 0; i < b->n; i++) {
        struct entry *e = NULL;
        int r = store_row_build(ld->st, b, &b->rows[i], &e, ld->err, sizeof(ld->err));
        if (r < 0)
            return r;
        char id[ENTRY_ID_LEN + 1];
        memcpy(id, e->id, sizeof(id));
        r = ld->add(ld->ctx, e);
        if (r < 0) {
            if (r == -ENOMEM)
                text_err(ld->err, sizeof(ld->err), "out of memory");
            else
                text_err(ld->err, sizeof(ld->err), "cannot load entry %s from %s: %s", id,
                         ld->st->path, strerror(-r));
            return r;
        }
        ld->n++;
    }
    return 0;
}

static void *store_builder(void *arg)
{
    struct store_loader *ld = arg;
    (void)pthread_mutex_lock(&ld->lock);
    for (;;) {
        while (ld->built == ld->filled && !ld->done)
            (void)pthread_cond_wait(&ld->changed, &ld->lock);
        if (ld->built == ld->filled)
            break; /* done, and nothing left */
        struct store_batch *b = &ld->ring[ld->built % STORE_RING];
        (void)pthread_mutex_unlock(&ld->lock);
        int r = ld->r < 0 ? ld->r : store_batch_build(ld, b);
        (void)pthread_mutex_lock(&ld->lock);
        if (r < 0) {
            ld->r = r;
            ld->stop = true;
        }
        ld->built++;
        (void)pthread_cond_broadcast(&ld->changed);
    }
    (void)pthread_mutex_unlock(&ld->lock);
    return NULL;
}

/* The scan: fills batches and hands them to the builder, which starts
 * when a second batch is coming (a file of a few entries needs no thread);
 * without one, builds them here. Returns an SQLite failure; the builder's
 * are in ld->r. */
static int store_scan(struct store *st, struct store_loader *ld, char *err, size_t err_len)
{
    bool tried = false;
    sqlite3_stmt *s = st->stmt[STMT_LOAD_ENTRIES];
    struct store_batch *b = NULL;
    int r = 0, rc;
    for (;;) {
        if (!b) {
            (void)pthread_mutex_lock(&ld->lock);
            while (ld->filled - ld->built == STORE_RING && !ld->stop)
                (void)pthread_cond_wait(&ld->changed, &ld->lock);
            bool stop = ld->stop;
            (void)pthread_mutex_unlock(&ld->lock);
            if (stop)
                break;
            b = &ld->ring[ld->filled % STORE_RING];
            b->n = b->len = 0;
        }
        rc = sqlite3_step(s);
        if (rc == SQLITE_ROW) {
            r = store_row_copy(b, s);
            if (r < 0) {
                text_err(err, err_len, "out of memory");
                break;
            }
            if (b->n < STORE_BATCH_ROWS)
                continue;
        } else if (rc != SQLITE_DONE) {
            r = store_fail(st, rc, err, err_len);
            break;
        }
        /* A full batch, or the last one. */
        if (!tried && rc == SQLITE_ROW) {
            tried = true;
            ld->threaded = pthread_create(&ld->builder, NULL, store_builder, ld) == 0;
        }
        if (ld->threaded) {
            (void)pthread_mutex_lock(&ld->lock);
            ld->filled++;
            (void)pthread_cond_broadcast(&ld->changed);
            (void)pthread_mutex_unlock(&ld->lock);
        } else {
            ld->filled++;
            if (ld->r == 0)
                ld->r = store_batch_build(ld, b);
            ld->built++;
            ld->stop = ld->r < 0;
        }
        b = NULL;
        if (rc == SQLITE_DONE)
            break;
    }
    (void)sqlite3_reset(s);
    return r;
}

int store_load(struct store *st, int (*add)(void *ctx, struct entry *e), void *ctx, size_t *ret_n,
               char *err, size_t err_len)
{
    struct store_loader *ld = NULL;
    int r;

    if (!st || !add)
        return -EINVAL;
    ld = calloc(1, sizeof(*ld));
    if (!ld) {
        text_err(err, err_len, "out of memory");
        return -ENOMEM;
    }
    ld->st = st;
    ld->add = add;
    ld->ctx = ctx;
    if (pthread_mutex_init(&ld->lock, NULL) != 0) {
        free(ld);
        text_err(err, err_len, "out of memory");
        return -ENOMEM;
    }
    if (pthread_cond_init(&ld->changed, NULL) != 0) {
        (void)pthread_mutex_destroy(&ld->lock);
        free(ld);
        text_err(err, err_len, "out of memory");
        return -ENOMEM;
    }
    r = store_exec(st, st->stmt[STMT_BEGIN], err, err_len);
    if (r < 0)
        goto out;
    r = store_scan(st, ld, err, err_len);
    if (ld->threaded) {
        (void)pthread_mutex_lock(&ld->lock);
        ld->done = true;
        (void)pthread_cond_broadcast(&ld->changed);
        (void)pthread_mutex_unlock(&ld->lock);
        (void)pthread_join(ld->builder, NULL);
    }
    /* A refused row comes before any row the scan failed on. */
    if (ld->r < 0) {
        r = ld->r;
        text_err(err, err_len, "%s", ld->err);
    }
    if (r == 0)
        r = store_exec(st, st->stmt[STMT_COMMIT], err, err_len);
out:
    store_rollback(st);
    for (size_t i = 0; i < STORE_RING; i++)
        free(ld->ring[i].bytes);
    (void)pthread_cond_destroy(&ld->changed);
    (void)pthread_mutex_destroy(&ld->lock);
    if (r == 0 && ret_n)
        *ret_n = ld->n;
    free(ld);
    return r;
}
