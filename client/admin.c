/* libsockid's admin API: registration entries, health, key rotation, status
 * and metrics, on the agent's admin socket. Same connection machinery as the
 * workload API (client.c), behind a type of its own. */
#include <sockid/client.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin.pb-c.h"
#include "internal.h"

/* What sockid_admin_list_all_entries() holds at most: far past any real
 * registry, it only stops an agent that never says "last page". */
#define ADMIN_LIST_ALL_MAX (1u << 20)

struct sockid_admin {
    struct sockid_client conn;
};

static const struct client_socket admin_socket = {
    .env = SOCKID_ADMIN_SOCKET_ENV,
    .default_path = SOCKID_DEFAULT_ADMIN_SOCKET,
    .denied_hint = "run as root or as a user the agent's admin_uids or admin_gids allow, with "
                   "access to the socket and its directory",
};

int sockid_admin_open_errbuf(const char *path, int timeout_ms, struct sockid_admin **ret,
                             char *errbuf, size_t errbuf_size)
{
    if (errbuf && errbuf_size > 0)
        errbuf[0] = '\0';
    if (!ret || timeout_ms < -1) {
        if (errbuf && errbuf_size > 0)
            (void)snprintf(errbuf, errbuf_size,
                           "sockid_admin_open needs a result pointer and a timeout of -1 or more");
        return SOCKID_EUSAGE;
    }
    struct sockid_admin *a = malloc(sizeof(*a));
    if (!a) {
        if (errbuf && errbuf_size > 0)
            (void)snprintf(errbuf, errbuf_size, "out of memory");
        return SOCKID_ENOMEM;
    }
    client_init(&a->conn, timeout_ms);
    int r = client_open_path(&a->conn, &admin_socket, path, errbuf, errbuf_size);
    if (r < 0) {
        free(a);
        return r;
    }
    *ret = a;
    return 0;
}

int sockid_admin_open(const char *path, int timeout_ms, struct sockid_admin **ret)
{
    return sockid_admin_open_errbuf(path, timeout_ms, ret, NULL, 0);
}

int sockid_admin_open_fd(int fd, int timeout_ms, struct sockid_admin **ret)
{
    if (!ret || timeout_ms < -1)
        return SOCKID_EUSAGE;
    struct sockid_admin *a = malloc(sizeof(*a));
    if (!a)
        return SOCKID_ENOMEM;
    client_init(&a->conn, timeout_ms);
    int r = client_adopt_fd(&a->conn, fd);
    if (r < 0) {
        free(a);
        return r;
    }
    *ret = a;
    return 0;
}

struct sockid_admin *sockid_admin_close(struct sockid_admin *a)
{
    if (!a)
        return NULL;
    client_release(&a->conn);
    free(a);
    return NULL;
}

const char *sockid_admin_message(const struct sockid_admin *a)
{
    return a ? a->conn.message : "";
}

/* Sends req and reads its answer, which must be of kind want (or an error).
 * On success the caller owns *ret and frees it with free_unpacked. */
static int admin_call(struct sockid_client *c, const Sockid__Admin__Request *req,
                      Sockid__Admin__Response__KindCase want, Sockid__Admin__Response **ret)
{
    uint32_t len;
    int r = client_roundtrip(c, &req->base, &len);
    if (r < 0)
        return r;
    Sockid__Admin__Response *resp = sockid__admin__response__unpack(NULL, len, c->response);
    if (!resp)
        return client_unparsable(c);
    if (resp->kind_case == SOCKID__ADMIN__RESPONSE__KIND_ERROR && resp->error) {
        r = client_refusal(c, resp->error);
        sockid__admin__response__free_unpacked(resp, NULL);
        return r;
    }
    if (resp->kind_case != want) {
        sockid__admin__response__free_unpacked(resp, NULL);
        return client_wrong_kind(c);
    }
    *ret = resp;
    return 0;
}

struct sockid_entry *sockid_entry_free(struct sockid_entry *e)
{
    if (!e)
        return NULL;
    free(e->id);
    free(e->spiffe_id);
    client_free_list(e->selectors, e->n_selectors);
    client_free_list(e->audiences, e->n_audiences);
    free(e->hint);
    free(e);
    return NULL;
}

static int admin_copy_entry(struct sockid_client *c, const Sockid__Admin__Entry *in,
                            struct sockid_entry **ret)
{
    if (!in)
        return client_fail(c, SOCKID_EPROTO,
                           "the agent at %s answered without the entry: check that the agent and "
                           "libsockid versions match",
                           c->path);
    if (in->id.len == 0)
        return client_fail(c, SOCKID_EPROTO,
                           "the agent at %s sent an entry without an id: check the agent's version",
                           c->path);
    struct sockid_entry *e = calloc(1, sizeof(*e));
    if (!e)
        return client_fail(c, SOCKID_ENOMEM, "out of memory");
    int r = client_copy_bytes(c, &in->id, "entry id", &e->id);
    if (r == 0)
        r = client_copy_bytes(c, &in->spiffe_id, "SPIFFE ID", &e->spiffe_id);
    if (r == 0)
        r = client_copy_list(c, in->selectors, in->n_selectors, "selector", &e->selectors,
                             &e->n_selectors);
    if (r == 0)
        r = client_copy_list(c, in->audiences, in->n_audiences, "audience", &e->audiences,
                             &e->n_audiences);
    if (r == 0)
        r = client_copy_bytes(c, &in->hint, "hint", &e->hint);
    if (r < 0) {
        e = sockid_entry_free(e);
        return r;
    }
    e->ttl_seconds = in->ttl_seconds;
    e->created_at = in->created_at;
    e->revision = in->revision;
    *ret = e;
    return 0;
}

int sockid_admin_create_entry(struct sockid_admin *a, const struct sockid_entry_spec *spec,
                              struct sockid_entry **ret)
{
    static const char call[] = "sockid_admin_create_entry";
    if (!a)
        return SOCKID_EUSAGE;
    struct sockid_client *c = &a->conn;
    c->message[0] = '\0';
    if (!spec || !ret)
        return client_fail(c, SOCKID_EUSAGE, "%s needs a spec and a result pointer", call);

    Sockid__Admin__CreateEntryRequest body = SOCKID__ADMIN__CREATE_ENTRY_REQUEST__INIT;
    Sockid__Admin__Response *resp = NULL;
    int r = client_bytes(c, spec->spiffe_id, call, "SPIFFE ID", &body.spiffe_id);
    if (r < 0)
        return r;
    if (spec->hint && *spec->hint)
        (void)client_bytes(c, spec->hint, call, "hint", &body.hint);
    body.ttl_seconds = spec->ttl_seconds;
    r = client_bytes_list(c, spec->selectors, spec->n_selectors, call, "selector", &body.selectors);
    if (r < 0)
        goto out;
    body.n_selectors = spec->n_selectors;
    r = client_bytes_list(c, spec->audiences, spec->n_audiences, call, "audience", &body.audiences);
    if (r < 0)
        goto out;
    body.n_audiences = spec->n_audiences;

    Sockid__Admin__Request req = SOCKID__ADMIN__REQUEST__INIT;
    req.kind_case = SOCKID__ADMIN__REQUEST__KIND_CREATE_ENTRY;
    req.create_entry = &body;
    r = admin_call(c, &req, SOCKID__ADMIN__RESPONSE__KIND_CREATE_ENTRY, &resp);
    if (r < 0)
        goto out;
    r = admin_copy_entry(c, resp->create_entry->entry, ret);
out:
    if (resp)
        sockid__admin__response__free_unpacked(resp, NULL);
    free(body.selectors);
    free(body.audiences);
    return r;
}

int sockid_admin_delete_entry(struct sockid_admin *a, const char *id)
{
    if (!a)
        return SOCKID_EUSAGE;
    struct sockid_client *c = &a->conn;
    c->message[0] = '\0';
    Sockid__Admin__DeleteEntryRequest body = SOCKID__ADMIN__DELETE_ENTRY_REQUEST__INIT;
    int r = client_bytes(c, id, "sockid_admin_delete_entry", "entry id", &body.id);
    if (r < 0)
        return r;
    Sockid__Admin__Request req = SOCKID__ADMIN__REQUEST__INIT;
    req.kind_case = SOCKID__ADMIN__REQUEST__KIND_DELETE_ENTRY;
    req.delete_entry = &body;
    Sockid__Admin__Response *resp;
    r = admin_call(c, &req, SOCKID__ADMIN__RESPONSE__KIND_DELETE_ENTRY, &resp);
    if (r < 0)
        return r;
    sockid__admin__response__free_unpacked(resp, NULL);
    return 0;
}

int sockid_admin_get_entry(struct sockid_admin *a, const char *id, struct sockid_entry **ret)
{
    static const char call[] = "sockid_admin_get_entry";
    if (!a)
        return SOCKID_EUSAGE;
    struct sockid_client *c = &a->conn;
    c->message[0] = '\0';
    if (!ret)
        return client_fail(c, SOCKID_EUSAGE, "%s needs a result pointer", call);
    Sockid__Admin__GetEntryRequest body = SOCKID__ADMIN__GET_ENTRY_REQUEST__INIT;
    int r = client_bytes(c, id, call, "entry id", &body.id);
    if (r < 0)
        return r;
    Sockid__Admin__Request req = SOCKID__ADMIN__REQUEST__INIT;
    req.kind_case = SOCKID__ADMIN__REQUEST__KIND_GET_ENTRY;
    req.get_entry = &body;
    Sockid__Admin__Response *resp;
    r = admin_call(c, &req, SOCKID__ADMIN__RESPONSE__KIND_GET_ENTRY, &resp);
    if (r < 0)
        return r;
    r = admin_copy_entry(c, resp->get_entry->entry, ret);
    sockid__admin__response__free_unpacked(resp, NULL);
    return r;
}

struct sockid_entry_list *sockid_entry_list_free(struct sockid_entry_list *l)
{
    if (!l)
        return NULL;
    for (size_t i = 0; l->entries && i < l->n_entries; i++)
        sockid_entry_free(l->entries[i]);
    free(l->entries);
    free(l->next_page_token);
    free(l);
    return NULL;
}

static int admin_list_page(struct sockid_client *c, const struct sockid_entry_filter *filter,
                           uint32_t page_size, const uint8_t *page_token, size_t page_token_len,
                           struct sockid_entry_list **ret)
{
    static const char call[] = "sockid_admin_list_entries";
    Sockid__Admin__ListEntriesRequest body = SOCKID__ADMIN__LIST_ENTRIES_REQUEST__INIT;
    int r;
    if (filter && filter->spiffe_id &&
        (r = client_bytes(c, filter->spiffe_id, call, "SPIFFE ID filter", &body.spiffe_id)) < 0)
        return r;
    if (filter && filter->selector &&
        (r = client_bytes(c, filter->selector, call, "selector filter", &body.selector)) < 0)
        return r;
    if (page_token_len > 0 && !page_token)
        return client_fail(c, SOCKID_EUSAGE, "%s was given a page token length but no token", call);
    body.page_size = page_size;
    body.page_token.data = (uint8_t *)(uintptr_t)page_token;
    body.page_token.len = page_token ? page_token_len : 0;

    Sockid__Admin__Request req = SOCKID__ADMIN__REQUEST__INIT;
    req.kind_case = SOCKID__ADMIN__REQUEST__KIND_LIST_ENTRIES;
    req.list_entries = &body;
    Sockid__Admin__Response *resp;
    r = admin_call(c, &req, SOCKID__ADMIN__RESPONSE__KIND_LIST_ENTRIES, &resp);
    if (r < 0)
        return r;

    const Sockid__Admin__ListEntriesResponse *in = resp->list_entries;
    struct sockid_entry_list *l = calloc(1, sizeof(*l));
    if (!l || !(l->entries = calloc(in->n_entries > 0 ? in->n_entries : 1, sizeof(*l->entries)))) {
        r = client_fail(c, SOCKID_ENOMEM, "out of memory");
        goto out;
    }
    for (; l->n_entries < in->n_entries; l->n_entries++) {
        r = admin_copy_entry(c, in->entries[l->n_entries], &l->entries[l->n_entries]);
        if (r < 0)
            goto out;
    }
    /* Opaque to the caller, so a NUL in it is no concern of ours. */
    if (in->next_page_token.len > 0) {
        l->next_page_token = malloc(in->next_page_token.len);
        if (!l->next_page_token) {
            r = client_fail(c, SOCKID_ENOMEM, "out of memory");
            goto out;
        }
        memcpy(l->next_page_token, in->next_page_token.data, in->next_page_token.len);
        l->next_page_token_len = in->next_page_token.len;
    }
    *ret = l;
    l = NULL;
    r = 0;
out:
    l = sockid_entry_list_free(l);
    sockid__admin__response__free_unpacked(resp, NULL);
    return r;
}

int sockid_admin_list_entries(struct sockid_admin *a, const struct sockid_entry_filter *filter,
                              uint32_t page_size, const uint8_t *page_token, size_t page_token_len,
                              struct sockid_entry_list **ret)
{
    if (!a)
        return SOCKID_EUSAGE;
    struct sockid_client *c = &a->conn;
    c->message[0] = '\0';
    if (!ret)
        return client_fail(c, SOCKID_EUSAGE, "sockid_admin_list_entries needs a result pointer");
    return admin_list_page(c, filter, page_size, page_token, page_token_len, ret);
}

/* Moves page's entries to the end of all's. */
static int admin_list_append(struct sockid_client *c, struct sockid_entry_list *all,
                             struct sockid_entry_list *page)
{
    if (page->n_entries > ADMIN_LIST_ALL_MAX - all->n_entries)
        return client_fail(c, SOCKID_ELIMIT,
                           "more than %u entries match: narrow the filter, or page through them "
                           "with sockid_admin_list_entries",
                           ADMIN_LIST_ALL_MAX);
    size_t n = all->n_entries + page->n_entries;
    struct sockid_entry **v = realloc(all->entries, (n > 0 ? n : 1) * sizeof(*v));
    if (!v)
        return client_fail(c, SOCKID_ENOMEM, "out of memory");
    all->entries = v;
    memcpy(v + all->n_entries, page->entries, page->n_entries * sizeof(*v));
    all->n_entries = n;
    page->n_entries = 0;
    return 0;
}

int sockid_admin_list_all_entries(struct sockid_admin *a, const struct sockid_entry_filter *filter,
                                  struct sockid_entry_list **ret)
{
    if (!a)
        return SOCKID_EUSAGE;
    struct sockid_client *c = &a->conn;
    c->message[0] = '\0';
    if (!ret)
        return client_fail(c, SOCKID_EUSAGE,
                           "sockid_admin_list_all_entries needs a result pointer");

    struct sockid_entry_list *all = NULL, *page = NULL;
    uint8_t *token = NULL;
    size_t token_len = 0;
    int r;
    for (;;) {
        r = admin_list_page(c, filter, 0, token, token_len, &page);
        if (r < 0)
            goto out;
        size_t got = page->n_entries;
        free(token);
        token = page->next_page_token;
        token_len = page->next_page_token_len;
        page->next_page_token = NULL;
        if (!all) {
            all = page;
            page = NULL;
        } else {
            r = admin_list_append(c, all, page);
            if (r < 0)
                goto out;
            page = sockid_entry_list_free(page);
        }
        if (!token)
            break;
        /* Every page before the last moves the walk forward, so an agent
         * that keeps sending empty pages cannot keep it going forever. */
        if (got == 0) {
            r = client_fail(c, SOCKID_EPROTO,
                            "the agent at %s sent an empty page that is not the last: check "
                            "the agent's version",
                            c->path);
            goto out;
        }
    }
    *ret = all;
    all = NULL;
out:
    page = sockid_entry_list_free(page);
    all = sockid_entry_list_free(all);
    free(token);
    return r;
}

struct sockid_admin_health *sockid_admin_health_free(struct sockid_admin_health *h)
{
    if (!h)
        return NULL;
    free(h->version);
    free(h);
    return NULL;
}

int sockid_admin_health(struct sockid_admin *a, struct sockid_admin_health **ret)
{
    if (!a)
        return SOCKID_EUSAGE;
    struct sockid_client *c = &a->conn;
    c->message[0] = '\0';
    if (!ret)
        return client_fail(c, SOCKID_EUSAGE, "sockid_admin_health needs a result pointer");

    Sockid__Admin__HealthRequest body = SOCKID__ADMIN__HEALTH_REQUEST__INIT;
    Sockid__Admin__Request req = SOCKID__ADMIN__REQUEST__INIT;
    req.kind_case = SOCKID__ADMIN__REQUEST__KIND_HEALTH;
    req.health = &body;
    Sockid__Admin__Response *resp;
    int r = admin_call(c, &req, SOCKID__ADMIN__RESPONSE__KIND_HEALTH, &resp);
    if (r < 0)
        return r;

    const Sockid__Admin__HealthResponse *in = resp->health;
    struct sockid_admin_health *h = calloc(1, sizeof(*h));
    if (!h || !(h->version = strdup(in->version ? in->version : ""))) {
        h = sockid_admin_health_free(h);
        r = client_fail(c, SOCKID_ENOMEM, "out of memory");
        goto out;
    }
    h->uptime_ms = in->uptime_ms;
    h->entries = in->entries;
    *ret = h;
out:
    sockid__admin__response__free_unpacked(resp, NULL);
    return r;
}

struct sockid_key_rotation *sockid_key_rotation_free(struct sockid_key_rotation *k)
{
    if (!k)
        return NULL;
    free(k->active_kid);
    free(k->retired_kid);
    free(k);
    return NULL;
}

int sockid_admin_rotate_key(struct sockid_admin *a, struct sockid_key_rotation **ret)
{
    if (!a)
        return SOCKID_EUSAGE;
    struct sockid_client *c = &a->conn;
    c->message[0] = '\0';
    if (!ret)
        return client_fail(c, SOCKID_EUSAGE, "sockid_admin_rotate_key needs a result pointer");

    Sockid__Admin__RotateKeyRequest body = SOCKID__ADMIN__ROTATE_KEY_REQUEST__INIT;
    Sockid__Admin__Request req = SOCKID__ADMIN__REQUEST__INIT;
    req.kind_case = SOCKID__ADMIN__REQUEST__KIND_ROTATE_KEY;
    req.rotate_key = &body;
    Sockid__Admin__Response *resp;
    int r = admin_call(c, &req, SOCKID__ADMIN__RESPONSE__KIND_ROTATE_KEY, &resp);
    if (r < 0)
        return r;

    const Sockid__Admin__RotateKeyResponse *in = resp->rotate_key;
    struct sockid_key_rotation *k = NULL;
    if (in->active_kid.len == 0) {
        r = client_fail(c, SOCKID_EPROTO,
                        "the agent at %s rotated without naming the new key: check that the "
                        "agent and libsockid versions match",
                        c->path);
        goto out;
    }
    k = calloc(1, sizeof(*k));
    if (!k) {
        r = client_fail(c, SOCKID_ENOMEM, "out of memory");
        goto out;
    }
    r = client_copy_bytes(c, &in->active_kid, "key id", &k->active_kid);
    if (r == 0)
        r = client_copy_bytes(c, &in->retired_kid, "key id", &k->retired_kid);
    if (r < 0)
        goto out;
    *ret = k;
    k = NULL;
out:
    k = sockid_key_rotation_free(k);
    sockid__admin__response__free_unpacked(resp, NULL);
    return r;
}

/* ---- status and metrics ---- */

struct sockid_status *sockid_status_free(struct sockid_status *s)
{
    if (!s)
        return NULL;
    free(s->version);
    client_free_list(s->plugins, s->n_plugins);
    free(s->active_kid);
    for (size_t i = 0; s->requests && i < s->n_requests; i++)
        free(s->requests[i].name);
    free(s->requests);
    for (size_t i = 0; s->refusals && i < s->n_refusals; i++)
        free(s->refusals[i].name);
    free(s->refusals);
    free(s);
    return NULL;
}

static int status_copy_counters(struct sockid_client *c, Sockid__Admin__Counter *const *in,
                                size_t n, struct sockid_counter **ret, size_t *ret_n)
{
    struct sockid_counter *v = calloc(n > 0 ? n : 1, sizeof(*v));
    if (!v)
        return client_fail(c, SOCKID_ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        v[i].name = strdup(in[i] && in[i]->name ? in[i]->name : "");
        if (!v[i].name) {
            for (size_t j = 0; j < i; j++)
                free(v[j].name);
            free(v);
            return client_fail(c, SOCKID_ENOMEM, "out of memory");
        }
        v[i].value = in[i] ? in[i]->value : 0;
    }
    *ret = v;
    *ret_n = n;
    return 0;
}

static void status_copy_latency(const Sockid__Admin__Latency *in, struct sockid_latency *out)
{
    *out = (struct sockid_latency){0};
    if (!in)
        return;
    out->count = in->count;
    out->sum_us = in->sum_us;
    out->p50_us = in->p50_us;
    out->p90_us = in->p90_us;
    out->p99_us = in->p99_us;
}

int sockid_admin_status(struct sockid_admin *a, struct sockid_status **ret)
{
    if (!a)
        return SOCKID_EUSAGE;
    struct sockid_client *c = &a->conn;
    c->message[0] = '\0';
    if (!ret)
        return client_fail(c, SOCKID_EUSAGE, "sockid_admin_status needs a result pointer");

    Sockid__Admin__StatusRequest body = SOCKID__ADMIN__STATUS_REQUEST__INIT;
    Sockid__Admin__Request req = SOCKID__ADMIN__REQUEST__INIT;
    req.kind_case = SOCKID__ADMIN__REQUEST__KIND_STATUS;
    req.status = &body;
    Sockid__Admin__Response *resp;
    int r = admin_call(c, &req, SOCKID__ADMIN__RESPONSE__KIND_STATUS, &resp);
    if (r < 0)
        return r;

    const Sockid__Admin__StatusResponse *in = resp->status;
    struct sockid_status *s = calloc(1, sizeof(*s));
    if (!s || !(s->version = strdup(in->version ? in->version : ""))) {
        r = client_fail(c, SOCKID_ENOMEM, "out of memory");
        goto out;
    }
    r = client_copy_list(c, in->plugins, in->n_plugins, "plugin name", &s->plugins, &s->n_plugins);
    if (r == 0)
        r = client_copy_bytes(c, &in->active_kid, "key id", &s->active_kid);
    if (r == 0)
        r = status_copy_counters(c, in->requests, in->n_requests, &s->requests, &s->n_requests);
    if (r == 0)
        r = status_copy_counters(c, in->refusals, in->n_refusals, &s->refusals, &s->n_refusals);
    if (r < 0)
        goto out;
    s->uptime_ms = in->uptime_ms;
    if (in->features) {
        s->so_peerpidfd = in->features->so_peerpidfd ? 1 : 0;
        s->pidfd_get_info = in->features->pidfd_get_info ? 1 : 0;
        s->so_peergroups = in->features->so_peergroups ? 1 : 0;
    }
    s->entries = in->entries;
    s->active_key_created_at = in->active_key_created_at;
    s->active_key_age_seconds = in->active_key_age_seconds;
    s->keys = in->keys;
    s->event_loops = in->event_loops;
    s->connections_open = in->connections_open;
    s->connections_accepted = in->connections_accepted;
    s->connections_rejected = in->connections_rejected;
    s->tokens_signed = in->tokens_signed;
    s->token_cache_hits = in->token_cache_hits;
    status_copy_latency(in->request_latency, &s->request_latency);
    status_copy_latency(in->attestation_latency, &s->attestation_latency);
    *ret = s;
    s = NULL;
out:
    s = sockid_status_free(s);
    sockid__admin__response__free_unpacked(resp, NULL);
    return r;
}

struct sockid_metrics *sockid_metrics_free(struct sockid_metrics *m)
{
    if (!m)
        return NULL;
    free(m->text);
    free(m);
    return NULL;
}

int sockid_admin_metrics(struct sockid_admin *a, struct sockid_metrics **ret)
{
    if (!a)
        return SOCKID_EUSAGE;
    struct sockid_client *c = &a->conn;
    c->message[0] = '\0';
    if (!ret)
        return client_fail(c, SOCKID_EUSAGE, "sockid_admin_metrics needs a result pointer");

    Sockid__Admin__MetricsRequest body = SOCKID__ADMIN__METRICS_REQUEST__INIT;
    Sockid__Admin__Request req = SOCKID__ADMIN__REQUEST__INIT;
    req.kind_case = SOCKID__ADMIN__REQUEST__KIND_METRICS;
    req.metrics = &body;
    Sockid__Admin__Response *resp;
    int r = admin_call(c, &req, SOCKID__ADMIN__RESPONSE__KIND_METRICS, &resp);
    if (r < 0)
        return r;

    struct sockid_metrics *m = calloc(1, sizeof(*m));
    if (!m) {
        r = client_fail(c, SOCKID_ENOMEM, "out of memory");
        goto out;
    }
    r = client_copy_bytes(c, &resp->metrics->text, "metrics text", &m->text);
    if (r < 0)
        goto out;
    m->len = resp->metrics->text.len;
    *ret = m;
    m = NULL;
out:
    m = sockid_metrics_free(m);
    sockid__admin__response__free_unpacked(resp, NULL);
    return r;
}
