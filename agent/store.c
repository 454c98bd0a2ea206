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
#include <stdbool.h>
#include <stdint.h>
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

/* Writes the rows of one entry inside the caller's transaction. */
static int store_insert_rows(struct store *st, const struct entry *e, const uint8_t *key,
                             const char *const *sel, size_t n_sel, const char *const *aud,
                             size_t n_aud, char *err, size_t err_len)
{
    sqlite3_stmt *s = st->stmt[STMT_INSERT_ENTRY];
    int rc = sqlite3_bind_blob(s, 1, e->id, ENTRY_ID_LEN, SQLITE_STATIC);
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
    if (rc != SQLITE_OK) {
        (void)sqlite3_clear_bindings(s);
        return store_fail(st, rc, err, err_len);
    }
    int r = store_exec(st, s, err, err_len);
    (void)sqlite3_clear_bindings(s);
    if (r < 0)
        return r;

    sqlite3_int64 seq = sqlite3_last_insert_rowid(st->db);
    for (int table = 0; table < 2; table++) {
        s = st->stmt[table == 0 ? STMT_INSERT_SELECTOR : STMT_INSERT_AUDIENCE];
        const char *const *items = table == 0 ? sel : aud;
        size_t n = table == 0 ? n_sel : n_aud;
        for (size_t i = 0; i < n; i++) {
            rc = sqlite3_bind_int64(s, 1, seq);
            if (rc == SQLITE_OK)
                rc = store_bind_str(s, 2, items[i]);
            r = rc == SQLITE_OK ? store_exec(st, s, err, err_len)
                                : store_fail(st, rc, err, err_len);
            (void)sqlite3_clear_bindings(s);
            if (r < 0)
                return r;
        }
    }
    return 0;
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
        store_set_err(err, err_len, "cannot store an entry that is not valid");
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
        store_set_err(err, err_len,
                      "an entry with this SPIFFE ID and these selectors exists already: %s",
                      existing);
        r = -EEXIST;
        goto fail;
    }
    if (r < 0)
        goto fail;
    r = store_id_taken(st, e->id, err, err_len);
    if (r == 1) {
        memcpy(existing, e->id, sizeof(existing));
        store_set_err(err, err_len, "an entry with id %s exists already", e->id);
        r = -EEXIST;
        goto fail;
    }
    if (r < 0)
        goto fail;
    r = store_insert_rows(st, e, key, sel, n_sel, aud, n_aud, err, err_len);
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
        store_set_err(err, err_len, "no entry id to delete");
        return -EINVAL;
    }
    size_t len = strnlen(id, ENTRY_ID_LEN + 1);
    if (!entries_id_valid(id, len)) {
        /* Not echoed: it may hold anything. */
        store_set_err(err, err_len, "no entry with that id: an entry id is %u lowercase hex digits",
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
        store_set_err(err, err_len, "no entry with id %s", id);
        return -ENOENT;
    }
    return 0;
}

/* --- loading ------------------------------------------------------------- */

/* Per-entry scratch: the NUL-terminated copies entry_from_parts reads. */
struct store_scratch {
    char *buf;
    size_t len, cap;
};

/* Appends a NUL-terminated copy of a column; returns its offset or -1. */
static int store_scratch_add(struct store_scratch *sc, sqlite3_stmt *s, int col, size_t *ret_off)
{
    const void *p = sqlite3_column_blob(s, col);
    size_t n = (size_t)sqlite3_column_bytes(s, col);
    if (p && memchr(p, '\0', n))
        return -EUCLEAN; /* entry_from_parts would see a shorter string */
    if (sc->len + n + 1 > sc->cap) {
        size_t cap = sc->cap ? sc->cap : 4096;
        while (cap < sc->len + n + 1)
            cap *= 2;
        char *b = realloc(sc->buf, cap);
        if (!b)
            return -ENOMEM;
        sc->buf = b;
        sc->cap = cap;
    }
    if (n)
        memcpy(sc->buf + sc->len, p, n);
    sc->buf[sc->len + n] = '\0';
    *ret_off = sc->len;
    sc->len += n + 1;
    return 0;
}

/* A child table cursor: its statement and whether it is on a row. */
struct store_child {
    sqlite3_stmt *s;
    int rc;
};

/* Copies the child rows of entry seq (at most max) into sc, their offsets
 * into off. A row for an entry before seq is an orphan: corrupt. */
static int store_child_collect(struct store *st, struct store_child *c, sqlite3_int64 seq,
                               struct store_scratch *sc, size_t *off, size_t max, size_t *ret_n,
                               char *err, size_t err_len)
{
    size_t n = 0;
    while (c->rc == SQLITE_ROW) {
        sqlite3_int64 owner = sqlite3_column_int64(c->s, 0);
        if (owner < seq)
            return store_corrupt(st, err, err_len);
        if (owner > seq)
            break;
        if (n == max)
            return -E2BIG;
        int r = store_scratch_add(sc, c->s, 1, &off[n]);
        if (r < 0)
            return r;
        n++;
        c->rc = sqlite3_step(c->s);
    }
    if (c->rc != SQLITE_ROW && c->rc != SQLITE_DONE)
        return store_fail(st, c->rc, err, err_len);
    *ret_n = n;
    return 0;
}

static int store_entry_cmp(const void *a, const void *b)
{
    return entry_cmp(*(struct entry *const *)a, *(struct entry *const *)b);
}

/* Builds the entry on the current row of the entries cursor. */
static int store_load_one(struct store *st, sqlite3_stmt *s, struct store_child *sel_c,
                          struct store_child *aud_c, struct store_scratch *sc, struct entry **ret,
                          char *err, size_t err_len)
{
    size_t sel_off[ENTRY_MAX_SELECTORS], aud_off[ENTRY_MAX_AUDIENCES];
    const char *sel[ENTRY_MAX_SELECTORS], *aud[ENTRY_MAX_AUDIENCES];
    size_t id_off, spiffe_off, hint_off = 0, n_sel = 0, n_aud = 0;
    char id[ENTRY_ID_LEN + 1];
    char why[256];
    int r;

    sqlite3_int64 seq = sqlite3_column_int64(s, 0);
    sc->len = 0;
    r = store_scratch_add(sc, s, 1, &id_off);
    if (r == -ENOMEM) {
        store_set_err(err, err_len, "out of memory");
        return r;
    }
    if (r < 0 || !entries_id_valid(sc->buf + id_off, strlen(sc->buf + id_off))) {
        store_set_err(err, err_len,
                      "%s holds an entry (row %lld) with a malformed id: restore the file from a "
                      "backup or move it aside",
                      st->path, (long long)seq);
        return -EUCLEAN;
    }
    memcpy(id, sc->buf + id_off, sizeof(id));

    int64_t ttl = sqlite3_column_int64(s, 3);
    int64_t revision = sqlite3_column_int64(s, 6);
    if (sqlite3_column_type(s, 2) == SQLITE_NULL || ttl < 0 || ttl > UINT32_MAX || revision < 0) {
        r = -EUCLEAN;
        goto bad;
    }
    r = store_scratch_add(sc, s, 2, &spiffe_off);
    if (r == 0 && sqlite3_column_type(s, 4) != SQLITE_NULL)
        r = store_scratch_add(sc, s, 4, &hint_off);
    if (r == 0)
        r = store_child_collect(st, sel_c, seq, sc, sel_off, ENTRY_MAX_SELECTORS, &n_sel, err,
                                err_len);
    if (r == 0)
        r = store_child_collect(st, aud_c, seq, sc, aud_off, ENTRY_MAX_AUDIENCES, &n_aud, err,
                                err_len);
    if (r < 0)
        goto bad;

    for (size_t i = 0; i < n_sel; i++)
        sel[i] = sc->buf + sel_off[i];
    for (size_t i = 0; i < n_aud; i++)
        aud[i] = sc->buf + aud_off[i];
    why[0] = '\0';
    r = entry_from_parts(id, sc->buf + spiffe_off, sel, n_sel, (uint32_t)ttl, aud, n_aud,
                         sqlite3_column_type(s, 4) == SQLITE_NULL ? NULL : sc->buf + hint_off,
                         sqlite3_column_int64(s, 5), (uint64_t)revision, ret, why, sizeof(why));
    if (r == -ENOMEM) {
        store_set_err(err, err_len, "out of memory");
        return r;
    }
    if (r < 0) {
        store_set_err(
            err, err_len,
            "entry %s in %s is not valid: %s: restore the file from a backup or move it aside", id,
            st->path, why[0] ? why : "refused");
        return -EUCLEAN;
    }
    return 0;
bad:
    if (r == -ENOMEM) {
        store_set_err(err, err_len, "out of memory");
    } else if (r == -EUCLEAN || r == -E2BIG) {
        store_set_err(err, err_len,
                      "entry %s in %s is not valid: a field is malformed or has too many values: "
                      "restore the file from a backup or move it aside",
                      id, st->path);
        r = -EUCLEAN;
    }
    return r;
}

int store_load(struct store *st, struct entry ***ret, size_t *ret_n, char *err, size_t err_len)
{
    struct store_scratch sc = {0};
    struct store_child sel_c = {0}, aud_c = {0};
    struct entry **list = NULL;
    size_t n = 0, cap = 0;
    sqlite3_stmt *s = NULL;
    int r, rc;

    if (!st || !ret || !ret_n)
        return -EINVAL;
    /* One read transaction: the three cursors see the same state. */
    r = store_exec(st, st->stmt[STMT_BEGIN], err, err_len);
    if (r < 0)
        return r;

    s = st->stmt[STMT_LOAD_ENTRIES];
    sel_c.s = st->stmt[STMT_LOAD_SELECTORS];
    aud_c.s = st->stmt[STMT_LOAD_AUDIENCES];
    sel_c.rc = sqlite3_step(sel_c.s);
    aud_c.rc = sqlite3_step(aud_c.s);

    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 256;
            struct entry **l = realloc(list, ncap * sizeof(*l));
            if (!l) {
                store_set_err(err, err_len, "out of memory");
                r = -ENOMEM;
                goto out;
            }
            list = l;
            cap = ncap;
        }
        r = store_load_one(st, s, &sel_c, &aud_c, &sc, &list[n], err, err_len);
        if (r < 0)
            goto out;
        n++;
    }
    if (rc != SQLITE_DONE) {
        r = store_fail(st, rc, err, err_len);
        goto out;
    }
    /* Rows left over belong to no entry; a failed step is an error too. */
    if (sel_c.rc == SQLITE_ROW || aud_c.rc == SQLITE_ROW) {
        r = store_corrupt(st, err, err_len);
        goto out;
    }
    if (sel_c.rc != SQLITE_DONE || aud_c.rc != SQLITE_DONE) {
        r = store_fail(st, sel_c.rc != SQLITE_DONE ? sel_c.rc : aud_c.rc, err, err_len);
        goto out;
    }
    if (!list && !(list = malloc(sizeof(*list)))) { /* never NULL on success */
        store_set_err(err, err_len, "out of memory");
        r = -ENOMEM;
        goto out;
    }
    if (n > 1)
        qsort(list, n, sizeof(*list), store_entry_cmp);
    r = 0;
out:
    (void)sqlite3_reset(s);
    (void)sqlite3_reset(sel_c.s);
    (void)sqlite3_reset(aud_c.s);
    if (r == 0)
        r = store_exec(st, st->stmt[STMT_COMMIT], err, err_len);
    store_rollback(st);
    free(sc.buf);
    if (r < 0) {
        for (size_t i = 0; i < n; i++)
            (void)entry_unref(list[i]);
        free(list);
        return r;
    }
    *ret = list;
    *ret_n = n;
    return 0;
}
