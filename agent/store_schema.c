/* The entry store's database (see store.h): opening DATA_DIR/entries.db,
 * its pragmas, the schema and its migrations, the statements prepared at
 * open, and the mapping of SQLite errors to errno and messages.
 *
 * Separate from store.c, which inserts, deletes and loads entries with the
 * prepared statements: everything here runs once per open, or on the error
 * path, and is what changes when the schema does.
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
 * so bytes round-trip exactly and nothing is ever parsed as text. One row
 * per entry, keyed by an internal integer (seq, the order of insertion):
 * its selectors are one BLOB, the strings sorted and unique, each followed
 * by a NUL byte (a selector cannot hold one); its audiences likewise. A
 * load is then one scan in key order, one step per entry, with no sort
 * inside SQLite (the snapshot puts entries in the stable order). Version 1
 * kept selectors and audiences in two child tables, a row each: a load
 * was three scans merged, and a step per selector. identity_key is the
 * SHA-256 of
 *   u32be(len(spiffe_id)) spiffe_id u32be(n) { u32be(len(sel)) sel }
 * over the sorted, unique selectors: "same SPIFFE ID and same selector set"
 * is one unique index. Changing that encoding needs a migration.
 *
 * Migrations. store_migrations[v - 1] takes a database from version v - 1
 * to v, each in its own transaction together with the version bump; a
 * step that SQL alone cannot do (version 2 packs the child rows into
 * blocks) runs in C inside it. A file with a newer version is refused; a
 * file with tables but without ours, or with another application_id, is
 * not a sockid database. */
#define _GNU_SOURCE /* asprintf */
#include "store.h"
#include "store_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
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

#define STORE_BUSY_TIMEOUT_MS 2000
#define STORE_APPLICATION_ID  0x736f636b /* "sock" */

/* A migration: SQL, then (when there is one) a conversion in C, then
 * more SQL; all in the transaction that bumps the version. */
struct store_migration {
    const char *sql;
    int (*convert)(struct store *st, char *err, size_t err_len);
    const char *after;
};

static int store_pack_children(struct store *st, char *err, size_t err_len);

static const struct store_migration store_migrations[] = {
    /* 1: the first schema. */
    {"PRAGMA application_id = 1936679787;" /* STORE_APPLICATION_ID */
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
     NULL, NULL},
    /* 2: an entry's selectors and audiences in its own row, one block each
     * (see the top of this file); the child tables go. */
    {"ALTER TABLE entries ADD COLUMN selectors BLOB NOT NULL DEFAULT x'';"
     "ALTER TABLE entries ADD COLUMN audiences BLOB NOT NULL DEFAULT x'';",
     store_pack_children,
     "DROP TABLE entry_selectors;"
     "DROP TABLE entry_audiences;"},
};

_Static_assert(sizeof(store_migrations) / sizeof(store_migrations[0]) == STORE_SCHEMA_VERSION,
               "one migration per schema version");
_Static_assert(STORE_APPLICATION_ID == 1936679787, "the v1 script spells the id in decimal");

/* Migration 2: packs a version 1 child table (entry, value) into blocks:
 * read_sql gives its rows in primary key order, where one entry's rows are
 * adjacent and its values sorted (bytewise, as BLOBs compare); write_sql
 * stores each entry's block in its row. */
static int store_pack_table(struct store *st, const char *read_sql, const char *write_sql,
                            char *err, size_t err_len)
{
    sqlite3_stmt *rd = NULL, *wr = NULL;
    char *block = NULL;
    size_t len = 0, cap = 0;
    sqlite3_int64 owner = 0;
    bool have = false;
    int r = 0;
    int rc = sqlite3_prepare_v2(st->db, read_sql, -1, &rd, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(st->db, write_sql, -1, &wr, NULL);
    if (rc != SQLITE_OK)
        goto fail;
    for (;;) {
        int row = sqlite3_step(rd);
        if (row != SQLITE_ROW && row != SQLITE_DONE) {
            rc = row;
            goto fail;
        }
        sqlite3_int64 entry = row == SQLITE_ROW ? sqlite3_column_int64(rd, 0) : 0;
        if (have && (row == SQLITE_DONE || entry != owner)) {
            rc = sqlite3_bind_int64(wr, 1, owner);
            if (rc == SQLITE_OK)
                rc = sqlite3_bind_blob64(wr, 2, block, len, SQLITE_STATIC);
            if (rc == SQLITE_OK)
                rc = sqlite3_step(wr);
            if (rc != SQLITE_DONE)
                goto fail;
            (void)sqlite3_reset(wr);
            len = 0;
        }
        if (row == SQLITE_DONE)
            break;
        owner = entry;
        have = true;
        const void *p = sqlite3_column_blob(rd, 1);
        size_t n = (size_t)sqlite3_column_bytes(rd, 1);
        if (len + n + 1 > cap) {
            size_t ncap = cap ? cap : 1024;
            while (ncap < len + n + 1)
                ncap *= 2;
            char *b = realloc(block, ncap);
            if (!b) {
                r = -ENOMEM;
                text_err(err, err_len, "out of memory");
                goto out;
            }
            block = b;
            cap = ncap;
        }
        if (n)
            memcpy(block + len, p, n);
        block[len + n] = '\0'; /* a NUL inside is left for the load to refuse */
        len += n + 1;
    }
    goto out;
fail:
    r = store_fail(st, rc, err, err_len);
out:
    sqlite3_finalize(rd);
    sqlite3_finalize(wr);
    free(block);
    return r;
}

static int store_pack_children(struct store *st, char *err, size_t err_len)
{
    int r =
        store_pack_table(st, "SELECT entry, selector FROM entry_selectors ORDER BY entry, selector",
                         "UPDATE entries SET selectors = ?2 WHERE seq = ?1", err, err_len);
    if (r == 0)
        r = store_pack_table(st,
                             "SELECT entry, audience FROM entry_audiences ORDER BY entry, audience",
                             "UPDATE entries SET audiences = ?2 WHERE seq = ?1", err, err_len);
    return r;
}

static const char *const store_sql[STMT_MAX] = {
    [STMT_BEGIN] = "BEGIN",
    [STMT_BEGIN_WRITE] = "BEGIN IMMEDIATE",
    [STMT_COMMIT] = "COMMIT",
    [STMT_ROLLBACK] = "ROLLBACK",
    [STMT_FIND_IDENTITY] = "SELECT id FROM entries WHERE identity_key = ?1",
    [STMT_FIND_ID] = "SELECT 1 FROM entries WHERE id = ?1",
    [STMT_INSERT_ENTRY] = "INSERT INTO entries (id, spiffe_id, identity_key, ttl, hint, "
                          "created_at, revision, selectors, audiences) "
                          "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    [STMT_DELETE] = "DELETE FROM entries WHERE id = ?1",
    /* The column order is STORE_COL_*. */
    [STMT_LOAD_ENTRIES] = "SELECT seq, id, spiffe_id, ttl, hint, created_at, revision, "
                          "selectors, audiences "
                          "FROM entries ORDER BY seq",
};

static int store_errno_message(const char *path, int e, char *err, size_t err_len)
{
    switch (e) {
    case ENOSPC:
    case EDQUOT:
        text_err(err, err_len, "cannot write %s: %s: free some space and retry", path, strerror(e));
        return -ENOSPC;
    case EACCES:
    case EPERM:
        text_err(err, err_len,
                 "cannot open %s: %s: the agent's user must own the data dir and the file", path,
                 strerror(e));
        return -e;
    case EROFS:
        text_err(err, err_len,
                 "cannot open %s for writing: %s: mount it read-write or choose another data dir",
                 path, strerror(e));
        return -EROFS;
    case ENOENT:
        text_err(err, err_len, "cannot open %s: %s: create the data dir first", path, strerror(e));
        return -ENOENT;
    default:
        text_err(err, err_len, "cannot open %s: %s", path, strerror(e));
        return -e;
    }
}

/* Turns an SQLite result code (rc, extended) into a negative errno and a
 * message that names the file and what to do. */
int store_fail(const struct store *st, int rc, char *err, size_t err_len)
{
    const char *path = st->path;
    const char *msg = st->db ? sqlite3_errmsg(st->db) : sqlite3_errstr(rc);
    int sys = st->db ? sqlite3_system_errno(st->db) : 0;

    switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        text_err(err, err_len,
                 "%s is locked by another process: is another sockid-agent using this data dir?",
                 path);
        return -EBUSY;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
        text_err(err, err_len,
                 "%s is corrupt or not a sockid database: restore it from a backup or move it "
                 "aside",
                 path);
        return -EUCLEAN;
    case SQLITE_FULL:
        text_err(err, err_len, "cannot write %s: the disk is full: free some space and retry",
                 path);
        return -ENOSPC;
    case SQLITE_READONLY:
        text_err(err, err_len,
                 "cannot write %s: %s: the agent's user must be able to write the file and the "
                 "data dir, on a filesystem mounted read-write",
                 path, msg);
        return -EROFS;
    case SQLITE_PERM:
    case SQLITE_AUTH:
        text_err(err, err_len, "cannot use %s: permission denied: %s", path, msg);
        return -EACCES;
    case SQLITE_CANTOPEN:
        if (sys > 0)
            return store_errno_message(path, sys, err, err_len);
        text_err(err, err_len, "cannot open %s: %s", path, msg);
        return -EIO;
    case SQLITE_IOERR:
        if (rc == SQLITE_IOERR_NOMEM)
            break;
        if (sys == ENOSPC || sys == EDQUOT || sys == EACCES || sys == EPERM || sys == EROFS)
            return store_errno_message(path, sys, err, err_len);
        text_err(err, err_len, "I/O error on %s: %s%s%s: check the disk and the kernel log", path,
                 msg, sys > 0 ? ": " : "", sys > 0 ? strerror(sys) : "");
        return -EIO;
    case SQLITE_NOMEM:
        break;
    case SQLITE_TOOBIG:
        text_err(err, err_len, "%s: %s", path, msg);
        return -E2BIG;
    case SQLITE_CONSTRAINT:
        text_err(err, err_len, "%s refused the change: %s", path, msg);
        return -EINVAL;
    default:
        text_err(err, err_len, "%s: %s", path, msg);
        return -EIO;
    }
    text_err(err, err_len, "out of memory");
    return -ENOMEM;
}

int store_corrupt(const struct store *st, char *err, size_t err_len)
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
            text_err(err, err_len, "%s: \"%s\" left the setting at %s instead of %s", st->path, sql,
                     got ? got : "nothing", expect);
            r = -ENOTSUP;
            goto out;
        }
        while ((rc = sqlite3_step(s)) == SQLITE_ROW)
            ;
    } else if (rc == SQLITE_DONE && expect) {
        text_err(err, err_len, "%s: \"%s\" is not supported by this SQLite", st->path, sql);
        r = -ENOTSUP;
        goto out;
    }
    if (rc != SQLITE_DONE)
        r = store_fail(st, rc, err, err_len);
out:
    sqlite3_finalize(s);
    return r;
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
    text_err(err, err_len,
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
        const struct store_migration *m = &store_migrations[version];
        rc = sqlite3_exec(st->db, m->sql, NULL, NULL, NULL);
        if (rc == SQLITE_OK && m->convert) {
            r = m->convert(st, err, err_len);
            if (r < 0)
                goto fail;
        }
        if (rc == SQLITE_OK && m->after)
            rc = sqlite3_exec(st->db, m->after, NULL, NULL, NULL);
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
            text_err(err, err_len, "%s is a symbolic link: the store must be a regular file", path);
            return -ELOOP;
        }
        return store_errno_message(path, errno, err, err_len);
    }
    if (fstat(fd, &sb) < 0) {
        r = store_errno_message(path, errno, err, err_len);
        goto out;
    }
    if (!S_ISREG(sb.st_mode)) {
        text_err(err, err_len, "%s is not a regular file: move it aside", path);
        r = -EINVAL;
        goto out;
    }
    if ((sb.st_mode & 07777) != 0600 && fchmod(fd, 0600) < 0) {
        r = -errno;
        text_err(err, err_len, "%s has mode %04o and cannot be made 0600: %s", path,
                 (unsigned)(sb.st_mode & 07777), strerror(-r));
        goto out;
    }
    if (created) {
        int dfd = open(data_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0 || fsync(dfd) < 0) {
            r = -errno;
            text_err(err, err_len, "cannot sync data dir %s: %s", data_dir, strerror(-r));
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
        text_err(err, err_len, "no data directory for the entry store");
        return -EINVAL;
    }
    /* STRICT tables and SQLITE_OPEN_EXRESCODE came with 3.37. */
    if (sqlite3_libversion_number() < 3037000) {
        text_err(err, err_len, "SQLite %s is too old for the entry store: it needs 3.37 or newer",
                 sqlite3_libversion());
        return -ENOTSUP;
    }
    if (sodium_init() < 0) {
        text_err(err, err_len, "libsodium failed to initialize");
        return -EIO;
    }
    st = calloc(1, sizeof(*st));
    if (!st || !(st->path = store_path(data_dir))) {
        text_err(err, err_len, "out of memory");
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
    /* The page cache, 256 KiB instead of SQLite's 2 MiB: the agent reads
     * the file once, at start, in one scan that needs no cache, and then
     * only writes, which touch a few pages of each B-tree. */
    if (r >= 0)
        r = store_pragma(st, "PRAGMA cache_size = -256", NULL, err, err_len);
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
