/* Private to entries.c and entries_index.c: what the entry model and the
 * snapshot index share. Not part of the module's interface (entries.h). */
#ifndef SOCKID_ENTRIES_INTERNAL_H
#define SOCKID_ENTRIES_INTERNAL_H

/* Initializes libsodium (idempotent, thread-safe): 0, or -EIO. Both entry
 * ids and snapshot hash keys are drawn from its random generator. */
__attribute__((warn_unused_result)) int entries_sodium_ready(void);

#endif
