/* The entry store: DATA_DIR/entries.db, an SQLite database.
 *
 * Durability. WAL with synchronous=FULL: every commit fsyncs the WAL before
 * it returns, so an insert or delete that returned 0 survives a crash or a
 * power loss (in WAL mode synchronous=NORMAL only syncs at checkpoints and
 * may lose the last commits). The file is created by us with mode 0600 and
 * its directory is fsynced, so the new name is durable too; SQLite gives the
 * -wal file the database's mode and fsyncs the directory when creating it.
 *
 * One agent per data dir. The connection runs in locking_mode=EXCLUSIVE,
 * set before WAL is first touched: it holds the file's exclusive lock from
 * open to close and keeps the WAL index in its own memory (no -shm file).
 * A second agent on the same data dir fails to open with -EBUSY instead of
 * writing entries the first one would never see in its in-memory snapshot.
 * The price: other processes (the sqlite3 shell) cannot read the file while
 * the agent runs.
 *
 * Schema. Tables are STRICT, every string is a BLOB bound with its length,
 * so bytes round-trip exactly and nothing is ever parsed as text. Entries
 * have an internal integer key (seq) that the selector and audience tables
 * reference, so a load is three scans in key order merged in one pass, with
 * no sort inside SQLite and no lookup per entry; the result is then sorted
 * in the stable order with entry_cmp. identity_key is the SHA-256 of
 *   u32be(len(spiffe_id)) spiffe_id u32be(n) { u32be(len(sel)) sel }
 * over the sorted, unique selectors: "same SPIFFE ID and same selector set"
 * is one unique index. Changing that encoding needs a migration.
 *
 * Migrations. store_migrations[v - 1] takes a database from version v - 1
 * to v, each in its own transaction together with the version bump. A file
 * with a newer version is refused; a file with tables but without ours, or
 * with another application_id, is not a sockid database. */
#define _GNU_SOURCE /* asprintf */
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>
#include <sqlite3.h>

#define STORE_BUSY_TIMEOUT_MS  2000
#define STORE_APPLICATION_ID   0x736f636b /* "sock" */
#define STORE_IDENTITY_KEY_LEN crypto_hash_sha256_BYTES

static const char *const store_migrations[] = {
    /* 1: the first schema. */
    "PRAGMA application_id = 1936679787;" /* STORE_APPLICATION_ID */
    "CREATE TABLE schema_version ("
    "  id INTEGER PRIMARY KEY CHECK (id = 1),"
    "  version INTEGER NOT NULL"
    ") STRICT;"
    "INSERT INTO schema_version (id, version) VALUES (1, 0);"
    "CREATE TABLE entries ("
    "  seq INTEGER PRIMARY KEY,"
    "  id BLOB NOT NULL UNIQUE,"
    "  spiffe_id BLOB NOT NULL,"
    "  identity_key BLOB NOT NULL UNIQUE,"
    "  ttl INTEGER NOT NULL CHECK (ttl BETWEEN 0 AND 4294967295),"
    "  hint BLOB,"
    "  created_at INTEGER NOT NULL,"
    "  revision INTEGER NOT NULL CHECK (revision >= 0)"
    ") STRICT;"
    "CREATE TABLE entry_selectors ("
    "  entry INTEGER NOT NULL REFERENCES entries (seq) ON DELETE CASCADE,"
    "  selector BLOB NOT NULL,"
    "  PRIMARY KEY (entry, selector)"
    ") STRICT, WITHOUT ROWID;"
    "CREATE TABLE entry_audiences ("
    "  entry INTEGER NOT NULL REFERENCES entries (seq) ON DELETE CASCADE,"
    "  audience BLOB NOT NULL,"
    "  PRIMARY KEY (entry, audience)"
    ") STRICT, WITHOUT ROWID;",
};

_Static_assert(sizeof(store_migrations) / sizeof(store_migrations[0]) == STORE_SCHEMA_VERSION,
               "one migration per schema version");
_Static_assert(STORE_APPLICATION_ID == 1936679787, "the v1 script spells the id in decimal");

enum store_stmt {
    STMT_BEGIN,
    STMT_BEGIN_WRITE,
    STMT_COMMIT,
    STMT_ROLLBACK,
    STMT_FIND_IDENTITY,
    STMT_FIND_ID,
    STMT_INSERT_ENTRY,
    STMT_INSERT_SELECTOR,
    STMT_INSERT_AUDIENCE,
    STMT_DELETE,
    STMT_LOAD_ENTRIES,
    STMT_LOAD_SELECTORS,
    STMT_LOAD_AUDIENCES,
    STMT_MAX
};

static const char *const store_sql[STMT_MAX] = {
    [STMT_BEGIN] = "BEGIN",
    [STMT_BEGIN_WRITE] = "BEGIN IMMEDIATE",
    [STMT_COMMIT] = "COMMIT",
    [STMT_ROLLBACK] = "ROLLBACK",
    [STMT_FIND_IDENTITY] = "SELECT id FROM entries WHERE identity_key = ?1",
    [STMT_FIND_ID] = "SELECT 1 FROM entries WHERE id = ?1",
    [STMT_INSERT_ENTRY] = "INSERT INTO entries (id, spiffe_id, identity_key, ttl, hint, "
                          "created_at, revision) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    [STMT_INSERT_SELECTOR] = "INSERT INTO entry_selectors (entry, selector) VALUES (?1, ?2)",
    [STMT_INSERT_AUDIENCE] = "INSERT INTO entry_audiences (entry, audience) VALUES (?1, ?2)",
    [STMT_DELETE] = "DELETE FROM entries WHERE id = ?1",
    [STMT_LOAD_ENTRIES] = "SELECT seq, id, spiffe_id, ttl, hint, created_at, revision "
                          "FROM entries ORDER BY seq",
    [STMT_LOAD_SELECTORS] = "SELECT entry, selector FROM entry_selectors ORDER BY entry, selector",
    [STMT_LOAD_AUDIENCES] = "SELECT entry, audience FROM entry_audiences ORDER BY entry, audience",
};

struct store {
    sqlite3 *db;
    char *path;
    sqlite3_stmt *stmt[STMT_MAX];
};

static void set_err(char *err, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t len, const char *fmt, ...)
{
    if (!err || len == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    (void)vsnprintf(err, len, fmt, ap);
    va_end(ap);
}

static int store_errno_message(const char *path, int e, char *err, size_t err_len)
{
    switch (e) {
    case ENOSPC:
    case EDQUOT:
        set_err(err, err_len, "cannot write %s: %s: free some space and retry", path, strerror(e));
        return -ENOSPC;
    case EACCES:
    case EPERM:
        set_err(err, err_len,
                "cannot open %s: %s: the agent's user must own the data dir and the file", path,
                strerror(e));
        return -e;
    case EROFS:
        set_err(err, err_len,
                "cannot open %s for writing: %s: mount it read-write or choose another data dir",
                path, strerror(e));
        return -EROFS;
    case ENOENT:
        set_err(err, err_len, "cannot open %s: %s: create the data dir first", path, strerror(e));
        return -ENOENT;
    default:
        set_err(err, err_len, "cannot open %s: %s", path, strerror(e));
        return -e;
    }
}

/* Turns an SQLite result code (rc, extended) into a negative errno and a
 * message that names the file and what to do. */
static int store_fail(const struct store *st, int rc, char *err, size_t err_len)
{
    const char *path = st->path;
    const char *msg = st->db ? sqlite3_errmsg(st->db) : sqlite3_errstr(rc);
    int sys = st->db ? sqlite3_system_errno(st->db) : 0;

    switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        set_err(err, err_len,
                "%s is locked by another process: is another sockid-agent using this data dir?",
                path);
        return -EBUSY;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
        set_err(err, err_len,
                "%s is corrupt or not a sockid database: restore it from a backup or move it "
                "aside",
                path);
        return -EUCLEAN;
    case SQLITE_FULL:
        set_err(err, err_len, "cannot write %s: the disk is full: free some space and retry", path);
        return -ENOSPC;
    case SQLITE_READONLY:
        set_err(err, err_len,
                "cannot write %s: %s: the agent's user must be able to write the file and the "
                "data dir, on a filesystem mounted read-write",
                path, msg);
        return -EROFS;
    case SQLITE_PERM:
    case SQLITE_AUTH:
        set_err(err, err_len, "cannot use %s: permission denied: %s", path, msg);
        return -EACCES;
    case SQLITE_CANTOPEN:
        if (sys > 0)
            return store_errno_message(path, sys, err, err_len);
        set_err(err, err_len, "cannot open %s: %s", path, msg);
        return -EIO;
    case SQLITE_IOERR:
        if (rc == SQLITE_IOERR_NOMEM)
            break;
        if (sys == ENOSPC || sys == EDQUOT || sys == EACCES || sys == EPERM || sys == EROFS)
            return store_errno_message(path, sys, err, err_len);
        set_err(err, err_len, "I/O error on %s: %s%s%s: check the disk and the kernel log", path,
                msg, sys > 0 ? ": " : "", sys > 0 ? strerror(sys) : "");
        return -EIO;
    case SQLITE_NOMEM:
        break;
    case SQLITE_TOOBIG:
        set_err(err, err_len, "%s: %s", path, msg);
        return -E2BIG;
    case SQLITE_CONSTRAINT:
        set_err(err, err_len, "%s refused the change: %s", path, msg);
        return -EINVAL;
    default:
        set_err(err, err_len, "%s: %s", path, msg);
        return -EIO;
    }
    set_err(err, err_len, "out of memory");
    return -ENOMEM;
}

static int store_corrupt(const struct store *st, char *err, size_t err_len)
{
    return store_fail(st, SQLITE_CORRUPT, err, err_len);
}

/* Runs a constant PRAGMA; when expect is not NULL its first row must say
 * expect (case-insensitively). */
static int store_pragma(struct store *st, const char *sql, const char *expect, char *err,
                        size_t err_len)
{
    sqlite3_stmt *s = NULL;
    int r = 0;
    int rc = sqlite3_prepare_v2(st->db, sql, -1, &s, NULL);
    if (rc != SQLITE_OK)
        return store_fail(st, rc, err, err_len);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        const char *got = (const char *)sqlite3_column_text(s, 0);
        if (expect && (!got || strcasecmp(got, expect) != 0)) {
            set_err(err, err_len, "%s: \"%s\" left the setting at %s instead of %s", st->path, sql,
                    got ? got : "nothing", expect);
            r = -ENOTSUP;
            goto out;
        }
        while ((rc = sqlite3_step(s)) == SQLITE_ROW)
            ;
    } else if (rc == SQLITE_DONE && expect) {
        set_err(err, err_len, "%s: \"%s\" is not supported by this SQLite", st->path, sql);
        r = -ENOTSUP;
        goto out;
    }
    if (rc != SQLITE_DONE)
        r = store_fail(st, rc, err, err_len);
out:
    sqlite3_finalize(s);
    return r;
}

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

/* Reads the one integer a query returns: 0 with *ret set, 1 when there is
 * no row, or a negative errno. */
static int store_query_int(struct store *st, const char *sql, int64_t *ret, char *err,
                           size_t err_len)
{
    sqlite3_stmt *s = NULL;
    int r;
    int rc = sqlite3_prepare_v2(st->db, sql, -1, &s, NULL);
    if (rc != SQLITE_OK)
        return store_fail(st, rc, err, err_len);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        if (sqlite3_column_type(s, 0) != SQLITE_INTEGER) {
            r = store_corrupt(st, err, err_len);
            goto out;
        }
        *ret = sqlite3_column_int64(s, 0);
        r = 0;
    } else if (rc == SQLITE_DONE) {
        r = 1;
    } else {
        r = store_fail(st, rc, err, err_len);
    }
out:
    sqlite3_finalize(s);
    return r;
}

/* The schema version: 0 for an empty database. */
static int store_schema_version(struct store *st, int64_t *ret, char *err, size_t err_len)
{
    int64_t app_id = 0, n = 0, version = 0;
    int r = store_query_int(st, "PRAGMA application_id", &app_id, err, err_len);
    if (r < 0)
        return r;
    if (r == 0 && app_id != 0 && app_id != STORE_APPLICATION_ID)
        return store_corrupt(st, err, err_len);

    r = store_query_int(st,
                        "SELECT count(*) FROM sqlite_master "
                        "WHERE type = 'table' AND name = 'schema_version'",
                        &n, err, err_len);
    if (r < 0)
        return r;
    if (n == 0) {
        r = store_query_int(st, "SELECT count(*) FROM sqlite_master", &n, err, err_len);
        if (r < 0)
            return r;
        if (n != 0) /* somebody else's tables */
            return store_corrupt(st, err, err_len);
        *ret = 0;
        return 0;
    }
    r = store_query_int(st, "SELECT version FROM schema_version WHERE id = 1", &version, err,
                        err_len);
    if (r < 0)
        return r;
    if (r == 1 || version < 1)
        return store_corrupt(st, err, err_len);
    *ret = version;
    return 0;
}

static int store_refuse_newer(const struct store *st, int64_t version, char *err, size_t err_len)
{
    set_err(err, err_len,
            "%s has schema version %" PRId64 ", newer than this agent's %d: upgrade sockid-agent, "
            "or move the file aside to start empty",
            st->path, version, STORE_SCHEMA_VERSION);
    return -EPROTONOSUPPORT;
}

static int store_migrate(struct store *st, char *err, size_t err_len)
{
    int64_t version = 0;
    int r = store_schema_version(st, &version, err, err_len);
    if (r < 0)
        return r;
    if (version > STORE_SCHEMA_VERSION)
        return store_refuse_newer(st, version, err, err_len);

    while (version < STORE_SCHEMA_VERSION) {
        sqlite3_stmt *bump = NULL;
        int rc = sqlite3_exec(st->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
        if (rc != SQLITE_OK)
            return store_fail(st, rc, err, err_len);
        r = store_schema_version(st, &version, err, err_len);
        if (r < 0)
            goto fail;
        if (version >= STORE_SCHEMA_VERSION) {
            r = version > STORE_SCHEMA_VERSION ? store_refuse_newer(st, version, err, err_len) : 0;
            goto fail;
        }
        rc = sqlite3_exec(st->db, store_migrations[version], NULL, NULL, NULL);
        if (rc == SQLITE_OK)
            rc = sqlite3_prepare_v2(st->db, "UPDATE schema_version SET version = ?1 WHERE id = 1",
                                    -1, &bump, NULL);
        if (rc == SQLITE_OK)
            rc = sqlite3_bind_int64(bump, 1, version + 1);
        if (rc == SQLITE_OK)
            rc = sqlite3_step(bump);
        sqlite3_finalize(bump);
        if (rc == SQLITE_DONE)
            rc = sqlite3_exec(st->db, "COMMIT", NULL, NULL, NULL);
        if (rc != SQLITE_OK) {
            r = store_fail(st, rc, err, err_len);
            goto fail;
        }
        version++;
    }
    return 0;
fail:
    if (!sqlite3_get_autocommit(st->db))
        (void)sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
    return r;
}

/* Creates the file ourselves, so that it is 0600 whatever the umask, and
 * makes its name durable. An existing file looser than 0600 is tightened. */
static int store_create_file(const char *data_dir, const char *path, char *err, size_t err_len)
{
    bool created = true;
    struct stat sb;
    int r = 0;
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0600);
    if (fd < 0 && errno == EEXIST) {
        created = false;
        fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    }
    if (fd < 0) {
        if (errno == ELOOP) {
            set_err(err, err_len, "%s is a symbolic link: the store must be a regular file", path);
            return -ELOOP;
        }
        return store_errno_message(path, errno, err, err_len);
    }
    if (fstat(fd, &sb) < 0) {
        r = store_errno_message(path, errno, err, err_len);
        goto out;
    }
    if (!S_ISREG(sb.st_mode)) {
        set_err(err, err_len, "%s is not a regular file: move it aside", path);
        r = -EINVAL;
        goto out;
    }
    if ((sb.st_mode & 07777) != 0600 && fchmod(fd, 0600) < 0) {
        r = -errno;
        set_err(err, err_len, "%s has mode %04o and cannot be made 0600: %s", path,
                (unsigned)(sb.st_mode & 07777), strerror(-r));
        goto out;
    }
    if (created) {
        int dfd = open(data_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0 || fsync(dfd) < 0) {
            r = -errno;
            set_err(err, err_len, "cannot sync data dir %s: %s", data_dir, strerror(-r));
        }
        if (dfd >= 0)
            (void)close(dfd);
    }
out:
    /* Closed before SQLite opens the file: closing any descriptor of a file
     * drops every POSIX lock this process holds on it, SQLite's included. */
    (void)close(fd);
    if (r < 0 && created)
        (void)unlink(path);
    return r;
}

static char *store_path(const char *data_dir)
{
    size_t len = strlen(data_dir);
    bool slash = len > 0 && data_dir[len - 1] == '/';
    /* Debian's SQLite takes names starting "file:" as URIs. */
    bool uri = strncmp(data_dir, "file:", 5) == 0;
    char *path = NULL;
    if (asprintf(&path, "%s%s%s" STORE_FILE, uri ? "./" : "", data_dir, slash ? "" : "/") < 0)
        return NULL;
    return path;
}

struct store *store_close(struct store *st)
{
    if (!st)
        return NULL;
    for (size_t i = 0; i < STMT_MAX; i++)
        sqlite3_finalize(st->stmt[i]);
    (void)sqlite3_close(st->db);
    free(st->path);
    free(st);
    return NULL;
}

int store_open(const char *data_dir, struct store **ret, char *err, size_t err_len)
{
    struct store *st = NULL;
    int r, rc;

    if (!data_dir || !*data_dir || !ret) {
        set_err(err, err_len, "no data directory for the entry store");
        return -EINVAL;
    }
    /* STRICT tables and SQLITE_OPEN_EXRESCODE came with 3.37. */
    if (sqlite3_libversion_number() < 3037000) {
        set_err(err, err_len, "SQLite %s is too old for the entry store: it needs 3.37 or newer",
                sqlite3_libversion());
        return -ENOTSUP;
    }
    if (sodium_init() < 0) {
        set_err(err, err_len, "libsodium failed to initialize");
        return -EIO;
    }
    st = calloc(1, sizeof(*st));
    if (!st || !(st->path = store_path(data_dir))) {
        set_err(err, err_len, "out of memory");
        r = -ENOMEM;
        goto fail;
    }
    r = store_create_file(data_dir, st->path, err, err_len);
    if (r < 0)
        goto fail;

    rc = sqlite3_open_v2(st->path, &st->db,
                         SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX |
                             SQLITE_OPEN_NOFOLLOW | SQLITE_OPEN_EXRESCODE,
                         NULL);
    if (rc != SQLITE_OK) {
        r = store_fail(st, rc, err, err_len);
        goto fail;
    }
    (void)sqlite3_extended_result_codes(st->db, 1);
    (void)sqlite3_busy_timeout(st->db, STORE_BUSY_TIMEOUT_MS);
    /* The file is ours alone: no schema-borne functions, no writable schema. */
    (void)sqlite3_db_config(st->db, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, (int *)NULL);
    (void)sqlite3_db_config(st->db, SQLITE_DBCONFIG_DEFENSIVE, 1, (int *)NULL);

    /* Exclusive before WAL is first touched: the WAL index then lives in
     * our memory, and the lock is held until close. */
    r = store_pragma(st, "PRAGMA locking_mode = EXCLUSIVE", "exclusive", err, err_len);
    if (r >= 0)
        r = store_pragma(st, "PRAGMA journal_mode = WAL", "wal", err, err_len);
    if (r >= 0)
        r = store_pragma(st, "PRAGMA synchronous = FULL", NULL, err, err_len);
    if (r >= 0)
        r = store_pragma(st, "PRAGMA synchronous", "2", err, err_len);
    if (r >= 0)
        r = store_pragma(st, "PRAGMA foreign_keys = ON", NULL, err, err_len);
    if (r >= 0)
        r = store_pragma(st, "PRAGMA foreign_keys", "1", err, err_len);
    if (r >= 0)
        r = store_migrate(st, err, err_len);
    if (r < 0)
        goto fail;

    for (size_t i = 0; i < STMT_MAX; i++) {
        rc = sqlite3_prepare_v3(st->db, store_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &st->stmt[i],
                                NULL);
        if (rc != SQLITE_OK) {
            r = store_fail(st, rc, err, err_len);
            goto fail;
        }
    }
    *ret = st;
    return 0;
fail:
    (void)store_close(st);
    return r;
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
        set_err(err, err_len, "cannot store an entry that is not valid");
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
        set_err(err, err_len, "an entry with this SPIFFE ID and these selectors exists already: %s",
                existing);
        r = -EEXIST;
        goto fail;
    }
    if (r < 0)
        goto fail;
    r = store_id_taken(st, e->id, err, err_len);
    if (r == 1) {
        memcpy(existing, e->id, sizeof(existing));
        set_err(err, err_len, "an entry with id %s exists already", e->id);
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
        set_err(err, err_len, "no entry id to delete");
        return -EINVAL;
    }
    size_t len = strnlen(id, ENTRY_ID_LEN + 1);
    if (!entries_id_valid(id, len)) {
        /* Not echoed: it may hold anything. */
        set_err(err, err_len, "no entry with that id: an entry id is %u lowercase hex digits",
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
        set_err(err, err_len, "no entry with id %s", id);
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
        set_err(err, err_len, "out of memory");
        return r;
    }
    if (r < 0 || !entries_id_valid(sc->buf + id_off, strlen(sc->buf + id_off))) {
        set_err(err, err_len,
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
        set_err(err, err_len, "out of memory");
        return r;
    }
    if (r < 0) {
        set_err(err, err_len,
                "entry %s in %s is not valid: %s: restore the file from a backup or move it aside",
                id, st->path, why[0] ? why : "refused");
        return -EUCLEAN;
    }
    return 0;
bad:
    if (r == -ENOMEM) {
        set_err(err, err_len, "out of memory");
    } else if (r == -EUCLEAN || r == -E2BIG) {
        set_err(err, err_len,
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
                set_err(err, err_len, "out of memory");
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
        set_err(err, err_len, "out of memory");
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
