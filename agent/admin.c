/* Admin requests: authorize, validate, make durable, publish, answer. */
#include "admin.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

#define LIST_PAGE_DEFAULT 100u
#define LIST_PAGE_MAX     1000u
/* A page stops growing past this many bytes of entries, so that a page of
 * large entries stays far below the response limit. */
#define LIST_PAGE_BYTES (1024u * 1024u)

static uint64_t monotonic_ms(void)
{
    struct timespec ts;
    (void)clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

int admin_init(struct admin *a, const struct config *cfg, struct store *store,
               struct entries_registry *registry, struct keys *keys,
               struct entries_snapshot *current, uint64_t started_ms)
{
    *a = (struct admin){
        .cfg = cfg,
        .store = store,
        .registry = registry,
        .keys = keys,
        .current = entries_snapshot_ref(current),
        .started_ms = started_ms,
    };
    int r = pthread_mutex_init(&a->lock, NULL);
    if (r != 0) {
        a->current = entries_snapshot_unref(a->current);
        return -r;
    }
    return 0;
}

void admin_attach(struct admin *a, const struct attest *attest,
                  const struct peer_features *features, admin_stats_fn *fn, void *ctx)
{
    a->attest = attest;
    a->features = *features;
    a->stats_fn = fn;
    a->stats_ctx = ctx;
}

void admin_fini(struct admin *a)
{
    a->current = entries_snapshot_unref(a->current);
    (void)pthread_mutex_destroy(&a->lock);
}

size_t admin_entry_count(struct admin *a)
{
    (void)pthread_mutex_lock(&a->lock);
    size_t n = entries_snapshot_count(a->current);
    (void)pthread_mutex_unlock(&a->lock);
    return n;
}

void admin_maintain_keys(struct admin *a, int64_t now)
{
    char err[256];
    (void)pthread_mutex_lock(&a->lock);
    struct keyset *before = keys_current(a->keys);
    const struct key *old = before ? keyset_active(before) : NULL;
    int r = keys_maintain(a->keys, now, a->cfg->key_rotation, a->cfg->max_ttl, err, sizeof(err));
    if (r < 0) {
        /* Retried every sweep: say it once, and again only when it changes or
         * an hour later. */
        if (strcmp(err, a->last_key_error) != 0 || now - a->last_key_error_at >= 3600) {
            log_error("key maintenance failed: %s", err);
            (void)snprintf(a->last_key_error, sizeof(a->last_key_error), "%s", err);
            a->last_key_error_at = now;
        }
    } else if (r > 0) {
        a->last_key_error[0] = '\0';
        struct keyset *after = keys_current(a->keys);
        const struct key *active = after ? keyset_active(after) : NULL;
        if (old && active && strcmp(old->kid, active->kid) != 0)
            log_info("rotated the signing key on schedule: %s is active, %s is retired",
                     active->kid, old->kid);
        else
            log_info("dropped retired signing keys whose tokens have all expired; %zu keys left",
                     after ? keyset_count(after) : 0);
        keyset_unref(after);
    }
    keyset_unref(before);
    (void)pthread_mutex_unlock(&a->lock);
}

static bool id_in(const struct config_id_list *list, uint32_t id)
{
    for (size_t i = 0; i < list->n; i++)
        if (list->ids[i] == id)
            return true;
    return false;
}

bool admin_authorized(const struct config *cfg, const struct admin_caller *caller)
{
    if (!caller->known)
        return false;
    /* Root and the agent's own user own the database and the keys anyway. */
    if (caller->uid == 0 || caller->uid == geteuid() || id_in(&cfg->admin_uids, caller->uid))
        return true;
    if (id_in(&cfg->admin_gids, caller->gid))
        return true;
    for (size_t i = 0; i < caller->n_groups; i++)
        if (id_in(&cfg->admin_gids, caller->groups[i]))
            return true;
    return false;
}

static void error_va(struct arena *arena, Sockid__Admin__Response *resp, Sockid__ErrorCode code,
                     const char *fmt, va_list ap)
{
    static const Sockid__Error oom = {
        PROTOBUF_C_MESSAGE_INIT(&sockid__error__descriptor),
        SOCKID__ERROR_CODE__INTERNAL,
        (char *)"the agent ran out of request memory; raise request_memory",
    };
    Sockid__Error *e = arena_alloc(arena, sizeof(*e));
    char *msg = arena_alloc(arena, 768);
    if (!e || !msg) {
        e = (Sockid__Error *)&oom;
    } else {
        sockid__error__init(e);
        (void)vsnprintf(msg, 768, fmt, ap);
        e->code = code;
        e->message = msg;
    }
    resp->kind_case = SOCKID__ADMIN__RESPONSE__KIND_ERROR;
    resp->error = e;
}

void admin_error(struct arena *arena, Sockid__Admin__Response *resp, Sockid__ErrorCode code,
                 const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    error_va(arena, resp, code, fmt, ap);
    va_end(ap);
}

static const char *request_name(const Sockid__Admin__Request *req)
{
    switch (req->kind_case) {
    case SOCKID__ADMIN__REQUEST__KIND_CREATE_ENTRY:
        return "create_entry";
    case SOCKID__ADMIN__REQUEST__KIND_DELETE_ENTRY:
        return "delete_entry";
    case SOCKID__ADMIN__REQUEST__KIND_GET_ENTRY:
        return "get_entry";
    case SOCKID__ADMIN__REQUEST__KIND_LIST_ENTRIES:
        return "list_entries";
    case SOCKID__ADMIN__REQUEST__KIND_HEALTH:
        return "admin_health";
    case SOCKID__ADMIN__REQUEST__KIND_ROTATE_KEY:
        return "rotate_key";
    case SOCKID__ADMIN__REQUEST__KIND_STATUS:
        return "status";
    case SOCKID__ADMIN__REQUEST__KIND_METRICS:
        return "metrics";
    default:
        return "unknown";
    }
}

/* One refusal: logged once with who asked, answered once. */
static void refuse(struct arena *arena, const struct admin_caller *caller,
                   const Sockid__Admin__Request *req, Sockid__Admin__Response *resp,
                   Sockid__ErrorCode code, const char *reason)
{
    log_refusal(caller->pid, caller->uid, request_name(req), reason);
    admin_error(arena, resp, code, "%s", reason);
}

/* A bytes field as a C string: refuses embedded NULs, copies into the arena. */
static const char *bytes_str(struct arena *arena, const ProtobufCBinaryData *b, bool *ok)
{
    if (b->len > 0 && memchr(b->data, '\0', b->len)) {
        *ok = false;
        return NULL;
    }
    char *s = arena_alloc(arena, b->len + 1);
    if (!s) {
        *ok = false;
        return NULL;
    }
    if (b->len)
        memcpy(s, b->data, b->len);
    s[b->len] = '\0';
    return s;
}

static ProtobufCBinaryData bin(const char *s)
{
    return (ProtobufCBinaryData){.len = s ? strlen(s) : 0, .data = (uint8_t *)s};
}

static ProtobufCBinaryData *bin_array(struct arena *arena, char *const *items, size_t n)
{
    ProtobufCBinaryData *out = arena_alloc(arena, sizeof(*out) * (n ? n : 1));
    if (!out)
        return NULL;
    for (size_t i = 0; i < n; i++)
        out[i] = bin(items[i]);
    return out;
}

/* The wire form of e, pointing into e (which outlives the reply: the caller
 * holds a snapshot reference or the entry itself until it is packed). */
static Sockid__Admin__Entry *entry_to_pb(struct arena *arena, const struct entry *e)
{
    Sockid__Admin__Entry *pb = arena_alloc(arena, sizeof(*pb));
    if (!pb)
        return NULL;
    sockid__admin__entry__init(pb);
    pb->id = bin(e->id);
    pb->spiffe_id = bin(e->spiffe_id);
    pb->selectors = bin_array(arena, e->selectors, e->n_selectors);
    pb->audiences = bin_array(arena, e->audiences, e->n_audiences);
    if (!pb->selectors || !pb->audiences)
        return NULL;
    pb->n_selectors = e->n_selectors;
    pb->n_audiences = e->n_audiences;
    pb->ttl_seconds = e->ttl;
    pb->hint = bin(e->hint);
    pb->created_at = e->created_at;
    pb->revision = e->revision;
    return pb;
}

static size_t entry_size(const struct entry *e)
{
    size_t n = strlen(e->spiffe_id) + ENTRY_ID_LEN + 64 + (e->hint ? strlen(e->hint) : 0);
    for (size_t i = 0; i < e->n_selectors; i++)
        n += strlen(e->selectors[i]) + 4;
    for (size_t i = 0; i < e->n_audiences; i++)
        n += strlen(e->audiences[i]) + 4;
    return n;
}

/* Publishes next as the current snapshot (consuming the caller's ref). */
static void admin_publish(struct admin *a, struct entries_snapshot *next)
{
    entries_snapshot_unref(a->current);
    a->current = entries_snapshot_ref(next);
    entries_registry_publish(a->registry, next);
}

bool admin_create_spec(const Sockid__Admin__CreateEntryRequest *c, struct admin_create_spec *out,
                       char *err, size_t err_len)
{
    if (c->n_selectors > ENTRY_MAX_SELECTORS) {
        (void)snprintf(err, err_len, "an entry has at most %u selectors, got %zu",
                       ENTRY_MAX_SELECTORS, c->n_selectors);
        return false;
    }
    if (c->n_audiences > ENTRY_MAX_AUDIENCES) {
        (void)snprintf(err, err_len, "an entry has at most %u audiences, got %zu",
                       ENTRY_MAX_AUDIENCES, c->n_audiences);
        return false;
    }
    for (size_t i = 0; i < c->n_selectors; i++) {
        out->sels[i] = (const char *)c->selectors[i].data;
        out->sel_lens[i] = c->selectors[i].len;
    }
    for (size_t i = 0; i < c->n_audiences; i++) {
        out->auds[i] = (const char *)c->audiences[i].data;
        out->aud_lens[i] = c->audiences[i].len;
    }
    out->spec = (struct entry_spec){
        .spiffe_id = (const char *)c->spiffe_id.data,
        .spiffe_id_len = c->spiffe_id.len,
        .selectors = out->sels,
        .selector_lens = out->sel_lens,
        .n_selectors = c->n_selectors,
        .ttl = c->ttl_seconds,
        .audiences = out->auds,
        .audience_lens = out->aud_lens,
        .n_audiences = c->n_audiences,
        .hint = c->hint.len ? (const char *)c->hint.data : NULL,
        .hint_len = c->hint.len,
    };
    return true;
}

static void handle_create(struct admin *a, struct arena *arena, const struct admin_caller *caller,
                          const Sockid__Admin__Request *req, Sockid__Admin__Response *resp,
                          struct entries_snapshot **ret_hold)
{
    char err[512];
    struct admin_create_spec cs;
    if (!admin_create_spec(req->create_entry, &cs, err, sizeof(err))) {
        refuse(arena, caller, req, resp, SOCKID__ERROR_CODE__INVALID_ARGUMENT, err);
        return;
    }
    struct entry *e = NULL;
    int r = entry_new(&cs.spec, a->cfg->trust_domain, a->cfg->default_ttl, a->cfg->max_ttl, &e, err,
                      sizeof(err));
    if (r == -ENOMEM) {
        refuse(arena, caller, req, resp, SOCKID__ERROR_CODE__UNAVAILABLE,
               "the agent is out of memory");
        return;
    }
    if (r < 0) {
        refuse(arena, caller, req, resp, SOCKID__ERROR_CODE__INVALID_ARGUMENT, err);
        return;
    }

    (void)pthread_mutex_lock(&a->lock);
    struct entries_snapshot *next = NULL;
    const struct entry *dup = entries_snapshot_find_identity(a->current, e);
    if (dup) {
        (void)snprintf(err, sizeof(err),
                       "an entry with SPIFFE ID %s and these selectors exists already: %s",
                       e->spiffe_id, dup->id);
        refuse(arena, caller, req, resp, SOCKID__ERROR_CODE__ALREADY_EXISTS, err);
        goto out;
    }
    char existing[ENTRY_ID_LEN + 1] = "";
    r = store_insert(a->store, e, existing, err, sizeof(err));
    if (r < 0) {
        refuse(arena, caller, req, resp,
               r == -EEXIST ? SOCKID__ERROR_CODE__ALREADY_EXISTS : SOCKID__ERROR_CODE__UNAVAILABLE,
               err);
        goto out;
    }
    /* Durable from here: the entry is in the store even if publishing
     * fails, and will be loaded at the next start. */
    r = entries_snapshot_derive(a->current, e, NULL, &next);
    if (r < 0) {
        log_error("entry %s was stored but cannot be activated (%s); it takes effect when the "
                  "agent restarts",
                  e->id, strerror(-r));
        refuse(arena, caller, req, resp, SOCKID__ERROR_CODE__UNAVAILABLE,
               "the entry was stored but the agent is out of memory to activate it; it takes "
               "effect when the agent restarts");
        goto out;
    }
    admin_publish(a, next);
    log_info("admin: uid %lu (pid %ld) created entry %s for %s with %zu selectors",
             (unsigned long)caller->uid, (long)caller->pid, e->id, e->spiffe_id, e->n_selectors);
    /* The reply points into e: the snapshot that holds it is kept until the
     * reply is packed. */
    *ret_hold = entries_snapshot_ref(next);
    Sockid__Admin__CreateEntryResponse *cr = arena_alloc(arena, sizeof(*cr));
    Sockid__Admin__Entry *pb = cr ? entry_to_pb(arena, e) : NULL;
    if (!pb) {
        admin_error(arena, resp, SOCKID__ERROR_CODE__INTERNAL,
                    "the entry %s was created, but the answer did not fit in request_memory",
                    e->id);
        goto out;
    }
    sockid__admin__create_entry_response__init(cr);
    cr->entry = pb;
    resp->kind_case = SOCKID__ADMIN__RESPONSE__KIND_CREATE_ENTRY;
    resp->create_entry = cr;
out:
    (void)pthread_mutex_unlock(&a->lock);
    entry_unref(e);
}

static const char *id_arg(struct arena *arena, const ProtobufCBinaryData *b)
{
    bool ok = true;
    const char *id = bytes_str(arena, b, &ok);
    return ok && entries_id_valid(id, b->len) ? id : NULL;
}

static void handle_delete(struct admin *a, struct arena *arena, const struct admin_caller *caller,
                          const Sockid__Admin__Request *req, Sockid__Admin__Response *resp)
{
    char err[512];
    const char *id = id_arg(arena, &req->delete_entry->id);
    if (!id) {
        refuse(arena, caller, req, resp, SOCKID__ERROR_CODE__INVALID_ARGUMENT,
               "an entry id is 32 lowercase hex characters, as 'sockid entry list' shows");
        return;
    }
    (void)pthread_mutex_lock(&a->lock);
    struct entries_snapshot *next = NULL;
    if (!entries_snapshot_find(a->current, id)) {
        (void)snprintf(err, sizeof(err), "no entry with id %s", id);
        refuse(arena, caller, req, resp, SOCKID__ERROR_CODE__NOT_FOUND, err);
        goto out;
    }
    int r = store_delete(a->store, id, err, sizeof(err));
    if (r < 0) {
        refuse(arena, caller, req, resp,
               r == -ENOENT ? SOCKID__ERROR_CODE__NOT_FOUND : SOCKID__ERROR_CODE__UNAVAILABLE, err);
        goto out;
    }
    r = entries_snapshot_derive(a->current, NULL, id, &next);
    if (r < 0) {
        log_error("entry %s was deleted from the store but is still active in memory (%s); "
                  "restart the agent",
                  id, strerror(-r));
        refuse(arena, caller, req, resp, SOCKID__ERROR_CODE__UNAVAILABLE,
               "the entry was deleted from the store but the agent is out of memory to drop it; "
               "restart the agent");
        goto out;
    }
    admin_publish(a, next);
    log_info("admin: uid %lu (pid %ld) deleted entry %s", (unsigned long)caller->uid,
             (long)caller->pid, id);
    Sockid__Admin__DeleteEntryResponse *dr = arena_alloc(arena, sizeof(*dr));
    if (!dr) {
        admin_error(arena, resp, SOCKID__ERROR_CODE__INTERNAL, "deleted, but out of memory");
        goto out;
    }
    sockid__admin__delete_entry_response__init(dr);
    resp->kind_case = SOCKID__ADMIN__RESPONSE__KIND_DELETE_ENTRY;
    resp->delete_entry = dr;
out:
    (void)pthread_mutex_unlock(&a->lock);
}

static void handle_get(const struct entries_snapshot *snap, struct arena *arena,
                       const struct admin_caller *caller, const Sockid__Admin__Request *req,
                       Sockid__Admin__Response *resp)
{
    char err[128];
    const char *id = id_arg(arena, &req->get_entry->id);
    if (!id) {
        refuse(arena, caller, req, resp, SOCKID__ERROR_CODE__INVALID_ARGUMENT,
               "an entry id is 32 lowercase hex characters, as 'sockid entry list' shows");
        return;
    }
    const struct entry *e = entries_snapshot_find(snap, id);
    if (!e) {
        (void)snprintf(err, sizeof(err), "no entry with id %s", id);
        admin_error(arena, resp, SOCKID__ERROR_CODE__NOT_FOUND, "%s", err);
        return;
    }
    Sockid__Admin__GetEntryResponse *gr = arena_alloc(arena, sizeof(*gr));
    Sockid__Admin__Entry *pb = gr ? entry_to_pb(arena, e) : NULL;
    if (!pb) {
        admin_error(arena, resp, SOCKID__ERROR_CODE__INTERNAL,
                    "the answer did not fit in request_memory; raise request_memory");
        return;
    }
    sockid__admin__get_entry_response__init(gr);
    gr->entry = pb;
    resp->kind_case = SOCKID__ADMIN__RESPONSE__KIND_GET_ENTRY;
    resp->get_entry = gr;
}

static bool entry_has_selector(const struct entry *e, const char *sel)
{
    for (size_t i = 0; i < e->n_selectors; i++)
        if (strcmp(e->selectors[i], sel) == 0)
            return true;
    return false;
}

/* Page tokens are "<created_at>:<id>" of the last entry of the previous page:
 * the next page starts after it in the stable order, so entries created or
 * deleted between pages neither repeat nor shift the rest. */
static bool parse_page_token(const char *tok, int64_t *ret_created, char ret_id[ENTRY_ID_LEN + 1])
{
    char *end;
    errno = 0;
    long long created = strtoll(tok, &end, 10);
    if (errno || end == tok || *end != ':' || !entries_id_valid(end + 1, strlen(end + 1)))
        return false;
    *ret_created = created;
    memcpy(ret_id, end + 1, ENTRY_ID_LEN + 1);
    return true;
}

static void handle_list(const struct entries_snapshot *snap, struct arena *arena,
                        const struct admin_caller *caller, const Sockid__Admin__Request *req,
                        Sockid__Admin__Response *resp)
{
    const Sockid__Admin__ListEntriesRequest *l = req->list_entries;
    bool ok = true;
    const char *want_id = l->spiffe_id.len ? bytes_str(arena, &l->spiffe_id, &ok) : NULL;
    const char *want_sel = l->selector.len ? bytes_str(arena, &l->selector, &ok) : NULL;
    const char *tok = l->page_token.len ? bytes_str(arena, &l->page_token, &ok) : NULL;
    if (!ok) {
        refuse(arena, caller, req, resp, SOCKID__ERROR_CODE__INVALID_ARGUMENT,
               "a filter or page token holds a NUL byte");
        return;
    }
    uint32_t page = l->page_size ? l->page_size : LIST_PAGE_DEFAULT;
    if (page > LIST_PAGE_MAX) {
        char err[96];
        (void)snprintf(err, sizeof(err), "page_size is at most %u, got %u", LIST_PAGE_MAX, page);
        refuse(arena, caller, req, resp, SOCKID__ERROR_CODE__INVALID_ARGUMENT, err);
        return;
    }
    size_t n = entries_snapshot_count(snap), start = 0;
    if (tok) {
        int64_t created;
        char id[ENTRY_ID_LEN + 1];
        if (!parse_page_token(tok, &created, id)) {
            refuse(arena, caller, req, resp, SOCKID__ERROR_CODE__INVALID_ARGUMENT,
                   "the page token is not one this agent issued; start the listing again");
            return;
        }
        /* First entry after (created, id) in the stable order. */
        size_t lo = 0, hi = n;
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            const struct entry *e = entries_snapshot_at(snap, mid);
            if (e->created_at < created || (e->created_at == created && strcmp(e->id, id) <= 0))
                lo = mid + 1;
            else
                hi = mid;
        }
        start = lo;
    }
    Sockid__Admin__ListEntriesResponse *lr = arena_alloc(arena, sizeof(*lr));
    Sockid__Admin__Entry **items = arena_alloc(arena, sizeof(*items) * page);
    if (!lr || !items) {
        admin_error(arena, resp, SOCKID__ERROR_CODE__INTERNAL,
                    "the answer did not fit in request_memory; ask for a smaller page_size");
        return;
    }
    sockid__admin__list_entries_response__init(lr);
    size_t count = 0, bytes = 0, i;
    const struct entry *last = NULL;
    for (i = start; i < n && count < page && bytes < LIST_PAGE_BYTES; i++) {
        const struct entry *e = entries_snapshot_at(snap, i);
        if (want_id && strcmp(e->spiffe_id, want_id) != 0)
            continue;
        if (want_sel && !entry_has_selector(e, want_sel))
            continue;
        items[count] = entry_to_pb(arena, e);
        if (!items[count]) {
            if (count == 0) {
                /* Not even one entry fits: an empty page would look like the
                 * end of the listing. */
                admin_error(arena, resp, SOCKID__ERROR_CODE__RESOURCE_EXHAUSTED,
                            "entry %s does not fit in request_memory; raise request_memory", e->id);
                return;
            }
            break; /* the arena is full: end the page here */
        }
        bytes += entry_size(e);
        last = e;
        count++;
    }
    /* More to come when the scan stopped before the end (page full, bytes, or
     * arena) and there is a last entry to continue from. */
    if (last && i < n) {
        char *next = arena_alloc(arena, 32 + ENTRY_ID_LEN);
        if (next) {
            (void)snprintf(next, 32 + ENTRY_ID_LEN, "%" PRId64 ":%s", last->created_at, last->id);
            lr->next_page_token = bin(next);
        }
    }
    lr->n_entries = count;
    lr->entries = items;
    resp->kind_case = SOCKID__ADMIN__RESPONSE__KIND_LIST_ENTRIES;
    resp->list_entries = lr;
}

static void handle_health(struct admin *a, const struct entries_snapshot *snap, struct arena *arena,
                          Sockid__Admin__Response *resp)
{
    Sockid__Admin__HealthResponse *h = arena_alloc(arena, sizeof(*h));
    if (!h) {
        admin_error(arena, resp, SOCKID__ERROR_CODE__INTERNAL, "out of request memory");
        return;
    }
    sockid__admin__health_response__init(h);
    h->version = (char *)SOCKID_VERSION;
    h->uptime_ms = monotonic_ms() - a->started_ms;
    h->entries = entries_snapshot_count(snap);
    resp->kind_case = SOCKID__ADMIN__RESPONSE__KIND_HEALTH;
    resp->health = h;
}

static void handle_rotate(struct admin *a, struct arena *arena, const struct admin_caller *caller,
                          const Sockid__Admin__Request *req, Sockid__Admin__Response *resp)
{
    char err[256];
    (void)pthread_mutex_lock(&a->lock);
    struct keyset *before = keys_current(a->keys);
    const struct key *old = before ? keyset_active(before) : NULL;
    int r = keys_rotate(a->keys, (int64_t)time(NULL), a->cfg->max_ttl, err, sizeof(err));
    struct keyset *after = r == 0 ? keys_current(a->keys) : NULL;
    (void)pthread_mutex_unlock(&a->lock);
    const struct key *active = after ? keyset_active(after) : NULL;
    Sockid__Admin__RotateKeyResponse *rr = arena_alloc(arena, sizeof(*rr));
    char *new_kid = arena_alloc(arena, KEYS_KID_LEN + 1);
    char *old_kid = arena_alloc(arena, KEYS_KID_LEN + 1);
    if (r < 0) {
        refuse(arena, caller, req, resp, SOCKID__ERROR_CODE__UNAVAILABLE, err);
    } else if (!active || !rr || !new_kid || !old_kid) {
        admin_error(arena, resp, SOCKID__ERROR_CODE__INTERNAL, "rotated, but out of memory");
    } else {
        memcpy(new_kid, active->kid, KEYS_KID_LEN + 1);
        memcpy(old_kid, old ? old->kid : "", old ? KEYS_KID_LEN + 1 : 1);
        log_info("admin: uid %lu (pid %ld) rotated the signing key: %s is active, %s is retired",
                 (unsigned long)caller->uid, (long)caller->pid, new_kid, old_kid);
        sockid__admin__rotate_key_response__init(rr);
        rr->active_kid = bin(new_kid);
        rr->retired_kid = bin(old_kid);
        resp->kind_case = SOCKID__ADMIN__RESPONSE__KIND_ROTATE_KEY;
        resp->rotate_key = rr;
    }
    keyset_unref(after);
    keyset_unref(before);
}

void admin_handle(struct admin *a, struct arena *arena, const struct admin_caller *caller,
                  const Sockid__Admin__Request *req, Sockid__Admin__Response *resp,
                  struct entries_snapshot **ret_hold)
{
    *ret_hold = NULL;
    if (!admin_authorized(a->cfg, caller)) {
        char why[160];
        (void)snprintf(why, sizeof(why),
                       "permission denied: uid %lu is not an admin of this agent "
                       "(admin_uids, admin_gids)",
                       (unsigned long)caller->uid);
        refuse(arena, caller, req, resp, SOCKID__ERROR_CODE__PERMISSION_DENIED, why);
        return;
    }
    /* Reads use the writer's current snapshot under the lock: admin calls
     * are rare, and this way a create is visible to the next list at once. */
    switch (req->kind_case) {
    case SOCKID__ADMIN__REQUEST__KIND_CREATE_ENTRY:
        handle_create(a, arena, caller, req, resp, ret_hold);
        return;
    case SOCKID__ADMIN__REQUEST__KIND_DELETE_ENTRY:
        handle_delete(a, arena, caller, req, resp);
        return;
    case SOCKID__ADMIN__REQUEST__KIND_ROTATE_KEY:
        handle_rotate(a, arena, caller, req, resp);
        return;
    case SOCKID__ADMIN__REQUEST__KIND_STATUS:
        admin_status(a, arena, resp);
        return;
    case SOCKID__ADMIN__REQUEST__KIND_METRICS:
        admin_metrics(a, arena, resp);
        return;
    case SOCKID__ADMIN__REQUEST__KIND_GET_ENTRY:
    case SOCKID__ADMIN__REQUEST__KIND_LIST_ENTRIES:
    case SOCKID__ADMIN__REQUEST__KIND_HEALTH: {
        (void)pthread_mutex_lock(&a->lock);
        struct entries_snapshot *snap = entries_snapshot_ref(a->current);
        (void)pthread_mutex_unlock(&a->lock);
        if (req->kind_case == SOCKID__ADMIN__REQUEST__KIND_GET_ENTRY)
            handle_get(snap, arena, caller, req, resp);
        else if (req->kind_case == SOCKID__ADMIN__REQUEST__KIND_LIST_ENTRIES)
            handle_list(snap, arena, caller, req, resp);
        else
            handle_health(a, snap, arena, resp);
        /* The reply points into snap's entries: keep them until it is packed,
         * whatever another loop changes meanwhile. */
        *ret_hold = snap;
        return;
    }
    default:
        break;
    }
    if (req->base.n_unknown_fields > 0)
        admin_error(arena, resp, SOCKID__ERROR_CODE__UNIMPLEMENTED,
                    "unknown admin request type (field %u): this agent is older than the client; "
                    "upgrade sockid-agent",
                    req->base.unknown_fields[0].tag);
    else
        admin_error(arena, resp, SOCKID__ERROR_CODE__INVALID_ARGUMENT,
                    "the request names no call: set one of the Request fields");
}
