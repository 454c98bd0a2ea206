/* libFuzzer harness for what the store reads back from its file: a row's
 * fields as entry_from_stored takes them (the selectors and the audiences
 * each one block of NUL-terminated strings). Whatever the bytes, it must
 * refuse with a message or build an entry that holds exactly what entry_new
 * would accept; and an entry it built, stored again, builds the same entry.
 *
 * Input: a 16-byte header (five 16-bit lengths: id, SPIFFE ID, selectors,
 * audiences, hint; a flags byte, bit 0 "has a hint"; a 32-bit ttl; one
 * spare byte), then the fields' bytes in that order, cut short where the
 * input ends. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "entries.h"
#include "selector.h"
#include "text.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define HEADER 16u

/* An entry's strings as one block, the store's encoding. */
static size_t block(char *const *items, size_t n, char *out)
{
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(items[i]) + 1;
        memcpy(out + len, items[i], l);
        len += l;
    }
    return len;
}

static void check(const struct entry *e)
{
    if (!entries_id_valid(e->id, strlen(e->id)) ||
        !entries_spiffe_id_valid(e->spiffe_id, strlen(e->spiffe_id), NULL, NULL, 0) ||
        e->n_selectors < 1 || e->n_selectors > ENTRY_MAX_SELECTORS ||
        e->n_audiences > ENTRY_MAX_AUDIENCES || e->ttl == 0)
        abort();
    for (size_t i = 0; i < e->n_selectors; i++)
        if (!selector_valid(e->selectors[i], strlen(e->selectors[i]), NULL, 0) ||
            (i > 0 && strcmp(e->selectors[i - 1], e->selectors[i]) >= 0))
            abort();
    for (size_t i = 0; i < e->n_audiences; i++)
        if (!entries_audience_valid(e->audiences[i], strlen(e->audiences[i]), NULL, 0) ||
            (i > 0 && strcmp(e->audiences[i - 1], e->audiences[i]) >= 0))
            abort();
    if (e->hint && (strlen(e->hint) == 0 || strlen(e->hint) > ENTRY_HINT_MAX ||
                    text_printable_span(e->hint, strlen(e->hint)) != strlen(e->hint)))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < HEADER)
        return 0;
    size_t len[5], at = HEADER;
    const char *field[5];
    for (size_t i = 0; i < 5; i++) {
        len[i] = (size_t)data[2 * i] | (size_t)data[2 * i + 1] << 8;
        if (len[i] > size - at)
            len[i] = size - at;
        field[i] = (const char *)data + at;
        at += len[i];
    }
    uint32_t ttl;
    memcpy(&ttl, data + 11, sizeof(ttl));
    struct entry_stored in = {
        .id = field[0],
        .id_len = len[0],
        .spiffe_id = field[1],
        .spiffe_id_len = len[1],
        .selectors = field[2],
        .selectors_len = len[2],
        .audiences = field[3],
        .audiences_len = len[3],
        .hint = (data[10] & 1) ? field[4] : NULL,
        .hint_len = len[4],
        .ttl = ttl,
        .created_at = (int64_t)size - 1000,
        .revision = size,
    };
    char err[512] = "";
    struct entry *e = NULL;
    int r = entry_from_stored(&in, &e, err, sizeof(err));
    if (r != 0) {
        if (r != -EINVAL || e || !err[0])
            abort();
        return 0;
    }
    check(e);

    /* Stored again, as store_insert writes it: the same entry. */
    static char sel[ENTRY_MAX_SELECTORS * (SELECTOR_MAX_LEN + 1)];
    static char aud[ENTRY_MAX_AUDIENCES * (ENTRY_AUDIENCE_MAX + 1)];
    struct entry_stored again = {
        .id = e->id,
        .id_len = strlen(e->id),
        .spiffe_id = e->spiffe_id,
        .spiffe_id_len = strlen(e->spiffe_id),
        .selectors = sel,
        .selectors_len = block(e->selectors, e->n_selectors, sel),
        .audiences = aud,
        .audiences_len = block(e->audiences, e->n_audiences, aud),
        .hint = e->hint,
        .hint_len = e->hint ? strlen(e->hint) : 0,
        .ttl = e->ttl,
        .created_at = e->created_at,
        .revision = e->revision,
    };
    struct entry *f = NULL;
    if (entry_from_stored(&again, &f, err, sizeof(err)) != 0 || !entry_same_identity(e, f) ||
        f->n_audiences != e->n_audiences || (!f->hint) != (!e->hint) ||
        (f->hint && strcmp(f->hint, e->hint) != 0))
        abort();
    for (size_t i = 0; i < e->n_audiences; i++)
        if (strcmp(e->audiences[i], f->audiences[i]) != 0)
            abort();
    (void)entry_unref(f);
    (void)entry_unref(e);
    return 0;
}
