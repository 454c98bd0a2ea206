/* The entry store: an embedded SQLite database in the data directory.
 *
 * The store is the only module that speaks SQL. WAL mode with
 * synchronous=FULL: store_insert and store_delete return only after the
 * change is durable, so an acknowledged change survives a crash or power
 * loss. The schema carries its version; older versions are migrated on
 * open, newer ones refused. The database is held in exclusive locking mode
 * from open to close: one agent per data directory (a second one gets
 * -EBUSY), and no other process reads it while the agent runs. */
#ifndef SOCKID_STORE_H
#define SOCKID_STORE_H

#include <stddef.h>

#include "entries.h"

#define STORE_FILE           "entries.db"
#define STORE_SCHEMA_VERSION 2

struct store;

/* Opens (creating if needed, mode 0600) DIR/entries.db and migrates it to
 * STORE_SCHEMA_VERSION. Errors, each with a message that names the file
 * and says what to do:
 *  -EBUSY       locked by another process (after a short wait);
 *  -EUCLEAN     corrupt or not a database;
 *  -EPROTONOSUPPORT  schema version newer than this agent's;
 *  other negative errno. */
__attribute__((warn_unused_result)) int store_open(const char *data_dir, struct store **ret,
                                                   char *err, size_t err_len);

/* Closes; accepts NULL; returns NULL. */
struct store *store_close(struct store *st);

/* Reads every entry, in the file's order (the order of insertion), and
 * hands each to add with one reference, which add takes whatever it
 * returns. The entries are built, and add is called, on a thread of the
 * store's while store_load waits: add runs alone, in order, but not on the
 * caller's thread. A negative return from add stops the load and is
 * returned. Every entry is validated again as it is read, as entry_new
 * validated it (entry_from_stored); one that fails is an error naming its
 * id (-EUCLEAN). *ret_n (may be NULL): how many were handed over. */
__attribute__((warn_unused_result)) int store_load(struct store *st,
                                                   int (*add)(void *ctx, struct entry *e),
                                                   void *ctx, size_t *ret_n, char *err,
                                                   size_t err_len);

/* Inserts e durably. -EEXIST when an entry with the same SPIFFE ID and
 * selector set exists (its id is written to existing_id, which has room
 * for ENTRY_ID_LEN + 1 bytes) or when e's id is taken (e's own id). */
__attribute__((warn_unused_result)) int store_insert(struct store *st, const struct entry *e,
                                                     char *existing_id, char *err, size_t err_len);

/* Deletes the entry with id durably. -ENOENT when there is none. */
__attribute__((warn_unused_result)) int store_delete(struct store *st, const char *id, char *err,
                                                     size_t err_len);

#endif
