/* Private to keys.c and keys_store.c: the keys object both halves work on,
 * the file naming they agree on, and the helpers keys.c calls to touch the
 * disk. Not part of the module's interface (keys.h). */
#ifndef SOCKID_KEYS_INTERNAL_H
#define SOCKID_KEYS_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sodium.h>

#include "keys.h"
#include "text.h"

#define KEYS_SEED_LEN crypto_sign_SEEDBYTES
#define KEYS_SUFFIX   ".key"
#define KEYS_B64      sodium_base64_VARIANT_URLSAFE_NO_PADDING

struct keys {
    pthread_mutex_t lock; /* publication */
    /* Bumped under lock with each publish; read without it by readers. */
    _Atomic uint64_t generation;
    struct keyset *current; /* written under write_lock and lock */
    /* One rotation or maintenance at a time, held across disk writes. */
    pthread_mutex_t write_lock;
    int dir_fd;
    char *dir; /* DATA_DIR/keys, for messages */
};

/* Writes a message into err (len bytes); does nothing when err is NULL. */

/* --- keys_store.c ---------------------------------------------------------- */

/* "KID.key" for key. */
void keys_key_name(const struct key *key, char name[static KEYS_KID_LEN + sizeof(KEYS_SUFFIX)]);
__attribute__((warn_unused_result)) int keys_fsync_dir(const struct keys *k, char *err,
                                                       size_t err_len);
/* Writes key's file atomically and durably. */
__attribute__((warn_unused_result)) int keys_write_file(const struct keys *k, const struct key *key,
                                                        char *err, size_t err_len);
/* Opens (creating) DATA_DIR/keys into k->dir and k->dir_fd and checks its
 * owner and mode. */
__attribute__((warn_unused_result)) int keys_open_dir(struct keys *k, const char *data_dir,
                                                      char *err, size_t err_len);
/* Loads every KID.key (at most KEYS_MAX) into keys; removes stale .tmp. */
__attribute__((warn_unused_result)) int keys_scan(struct keys *k, struct key *keys, size_t *ret_n,
                                                  char *err, size_t err_len);

#endif
