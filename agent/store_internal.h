/* Private to store.c and store_schema.c: the store object, the statements
 * prepared at open, and the error mapping both halves report through. Not
 * part of the module's interface (store.h). */
#ifndef SOCKID_STORE_INTERNAL_H
#define SOCKID_STORE_INTERNAL_H

#include <stddef.h>

#include <sqlite3.h>

#include "text.h"

/* The statements prepared once at open; their SQL is store_sql in
 * store_schema.c, next to the schema it reads. */
enum store_stmt {
    STMT_BEGIN,
    STMT_BEGIN_WRITE,
    STMT_COMMIT,
    STMT_ROLLBACK,
    STMT_FIND_IDENTITY,
    STMT_FIND_ID,
    STMT_INSERT_ENTRY,
    STMT_DELETE,
    STMT_LOAD_ENTRIES,
    STMT_MAX
};

/* The columns STMT_LOAD_ENTRIES returns. */
enum store_col {
    STORE_COL_SEQ,
    STORE_COL_ID,
    STORE_COL_SPIFFE_ID,
    STORE_COL_TTL,
    STORE_COL_HINT,
    STORE_COL_CREATED_AT,
    STORE_COL_REVISION,
    STORE_COL_SELECTORS,
    STORE_COL_AUDIENCES,
};

struct store {
    sqlite3 *db;
    char *path;
    sqlite3_stmt *stmt[STMT_MAX];
};

/* Writes a message into err (len bytes); does nothing when err is NULL. */

/* Turns an SQLite result code (rc, extended) into a negative errno and a
 * message that names the file and what to do. */
__attribute__((warn_unused_result)) int store_fail(const struct store *st, int rc, char *err,
                                                   size_t err_len);
/* store_fail for a database that is not what this agent wrote. */
__attribute__((warn_unused_result)) int store_corrupt(const struct store *st, char *err,
                                                      size_t err_len);

#endif
