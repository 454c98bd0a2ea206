/* libsockid: talk to the sockid agent from C.
 *
 *     struct sockid_client *c;
 *     int r = sockid_client_open(NULL, 5000, &c);   // $SOCKID_AGENT_SOCKET or the default
 *     if (r < 0) { fprintf(stderr, "%s\n", sockid_strerror(r)); return 3; }
 *     struct sockid_whoami *me;
 *     r = sockid_whoami(c, &me);
 *     if (r < 0) fprintf(stderr, "%s\n", sockid_client_message(c));
 *     ...
 *     me = sockid_whoami_free(me);
 *     c = sockid_client_close(c);
 *
 * Every call returns 0 or one of the negative SOCKID_E* codes below; a
 * refusal from the agent also leaves the agent's one-sentence explanation in
 * sockid_client_message(). Results are written only on success and are
 * freed by their own *_free(), which accepts NULL and returns NULL.
 * A client is one connection; use one client per thread. */
#ifndef SOCKID_CLIENT_H
#define SOCKID_CLIENT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(SOCKID_BUILDING_CLIENT)
#define SOCKID_API __attribute__((visibility("default")))
#else
#define SOCKID_API
#endif
#define SOCKID_WUR __attribute__((warn_unused_result))

#define SOCKID_DEFAULT_AGENT_SOCKET "/run/sockid/agent.sock"
#define SOCKID_AGENT_SOCKET_ENV     "SOCKID_AGENT_SOCKET"

/* Error codes. -1 to -9 mirror the agent's wire codes. */
enum sockid_error {
    SOCKID_OK = 0,
    SOCKID_EINVAL = -1,         /* the agent says the request is invalid */
    SOCKID_EPERM = -2,          /* refused: no identity or right for this process */
    SOCKID_EPEERGONE = -3,      /* the agent saw this process exit or change identity */
    SOCKID_EUNAVAILABLE = -4,   /* the agent is shutting down or overloaded */
    SOCKID_EINTERNAL = -5,      /* the agent hit an internal error */
    SOCKID_EUNIMPLEMENTED = -6, /* the agent does not know this request */
    SOCKID_ELIMIT = -7,         /* a per-client limit of the agent was reached */
    SOCKID_EEXIST = -8,         /* admin: an entry with that SPIFFE ID and selectors exists */
    SOCKID_ENOTFOUND = -9,      /* admin: no entry has that id */
    SOCKID_EUNREACHABLE = -20,  /* no agent answers on the socket */
    SOCKID_ETIMEDOUT = -21,     /* the agent did not answer in time */
    SOCKID_EPROTO = -22,        /* the agent's answer was malformed or closed early */
    SOCKID_ENOMEM = -23,
    SOCKID_EUSAGE = -24, /* bad arguments to a libsockid call */
};

struct sockid_client;

/* Connects to path, or to $SOCKID_AGENT_SOCKET, or to the default socket when
 * path is NULL. timeout_ms bounds each call (connect, and later each
 * request); -1 waits forever. */
SOCKID_API SOCKID_WUR int sockid_client_open(const char *path, int timeout_ms,
                                             struct sockid_client **ret);

/* As sockid_client_open(), and when it fails, writes a sentence naming the
 * socket and saying what to do into errbuf (at most errbuf_size bytes, always
 * NUL-terminated; errbuf may be NULL), e.g. "no agent at
 * /run/sockid/agent.sock: start sockid-agent, or set SOCKID_AGENT_SOCKET to
 * the socket it listens on". */
#define SOCKID_ERRBUF_SIZE 256
SOCKID_API SOCKID_WUR int sockid_client_open_errbuf(const char *path, int timeout_ms,
                                                    struct sockid_client **ret, char *errbuf,
                                                    size_t errbuf_size);

/* Wraps a stream socket already connected to the agent (an inherited fd, or
 * one end of a socketpair() in tests). Takes ownership of fd on success only:
 * sockid_client_close() closes it. */
SOCKID_API SOCKID_WUR int sockid_client_open_fd(int fd, int timeout_ms, struct sockid_client **ret);

SOCKID_API struct sockid_client *sockid_client_close(struct sockid_client *c);

/* The agent's explanation of the last refusal, or a description of the last
 * local error; never NULL. Valid until the next call on c. */
SOCKID_API const char *sockid_client_message(const struct sockid_client *c);

/* A fixed description of an error code. */
SOCKID_API const char *sockid_strerror(int code);

struct sockid_whoami {
    pid_t pid;
    uid_t uid;
    gid_t gid;
    size_t n_selectors;
    char **selectors; /* "type:key:value", sorted */
    size_t n_spiffe_ids;
    char **spiffe_ids;
};

SOCKID_API SOCKID_WUR int sockid_whoami(struct sockid_client *c, struct sockid_whoami **ret);
SOCKID_API struct sockid_whoami *sockid_whoami_free(struct sockid_whoami *w);

struct sockid_health {
    char *version;
    int peer_pidfd;     /* 1 when the agent uses SO_PEERPIDFD */
    int pidfd_get_info; /* 1 when the agent uses PIDFD_GET_INFO */
    uint64_t uptime_ms;
    unsigned attestors;
};

SOCKID_API SOCKID_WUR int sockid_health(struct sockid_client *c, struct sockid_health **ret);
SOCKID_API struct sockid_health *sockid_health_free(struct sockid_health *h);

/* Identity tokens: JWTs signed by the agent (Ed25519, "alg":"EdDSA"), whose
 * "sub" is a SPIFFE ID of the agent's trust domain.
 *
 *     const char *aud[] = {"db"};
 *     struct sockid_token_list *l;
 *     r = sockid_fetch_token(c, aud, 1, NULL, &l);
 *     if (r == SOCKID_EPERM) ...  // no entry matches this process
 *     use(l->tokens[0].token);
 *     l = sockid_token_list_free(l);
 */
struct sockid_token {
    char *spiffe_id;
    char *token;        /* compact serialization */
    int64_t expires_at; /* unix seconds */
};

struct sockid_token_list {
    size_t n_tokens; /* at least 1 */
    struct sockid_token *tokens;
};

/* Tokens for the n audiences (at least one, each non-empty). spiffe_id
 * picks one of the caller's identities (the answer then holds exactly its
 * token); NULL asks for one token per identity of the caller, in the
 * agent's stable order. The agent refuses a process that no entry matches
 * (SOCKID_EPERM) and malformed audiences (SOCKID_EINVAL), with a message
 * saying why. */
SOCKID_API SOCKID_WUR int sockid_fetch_token(struct sockid_client *c, const char *const *audiences,
                                             size_t n, const char *spiffe_id,
                                             struct sockid_token_list **ret);
SOCKID_API struct sockid_token_list *sockid_token_list_free(struct sockid_token_list *l);

/* The keys that verify the agent's tokens, as a JSON Web Key Set, exactly as
 * the agent sent it (one JSON object). */
struct sockid_bundle {
    char *jwks;
};

SOCKID_API SOCKID_WUR int sockid_fetch_bundle(struct sockid_client *c, struct sockid_bundle **ret);
SOCKID_API struct sockid_bundle *sockid_bundle_free(struct sockid_bundle *b);

/* What a valid token says. */
struct sockid_validation {
    char *spiffe_id;   /* the token's "sub" */
    char *claims_json; /* the token's whole payload, one JSON object */
};

/* Asks the agent whether token is valid for audience (signature, key, alg,
 * expiry, audience, subject). A token the agent rejects comes back as
 * SOCKID_EINVAL (malformed) or SOCKID_EPERM (well-formed but not valid),
 * with the agent's reason in sockid_client_message(). */
SOCKID_API SOCKID_WUR int sockid_validate(struct sockid_client *c, const char *token,
                                          const char *audience, struct sockid_validation **ret);
SOCKID_API struct sockid_validation *sockid_validation_free(struct sockid_validation *v);

/* The admin API: registration entries, on the agent's admin socket.
 *
 *     struct sockid_admin *a;
 *     int r = sockid_admin_open(NULL, 5000, &a);  // $SOCKID_ADMIN_SOCKET or the default
 *     const char *selectors[] = {"unix:uid:1000", "unix:path:/usr/bin/web"};
 *     struct sockid_entry_spec spec = {
 *         .spiffe_id = "spiffe://example.org/web",
 *         .selectors = selectors, .n_selectors = 2,
 *     };
 *     struct sockid_entry *e;
 *     r = sockid_admin_create_entry(a, &spec, &e);
 *     if (r == SOCKID_EEXIST) ...  // sockid_admin_message(a) names the existing entry
 *     e = sockid_entry_free(e);
 *     a = sockid_admin_close(a);
 *
 * An admin connection is a type of its own, so that a workload call cannot
 * be sent to the admin socket or the other way round. The agent authorizes
 * every call by the caller's uid and gids (admin_uids, admin_gids):
 * SOCKID_EPERM otherwise. Errors and results follow the rules above. */
#define SOCKID_DEFAULT_ADMIN_SOCKET "/run/sockid/admin.sock"
#define SOCKID_ADMIN_SOCKET_ENV     "SOCKID_ADMIN_SOCKET"

struct sockid_admin;

/* As sockid_client_open(), sockid_client_open_errbuf() and
 * sockid_client_open_fd(), for the admin socket: path, or
 * $SOCKID_ADMIN_SOCKET (ignored in set-user-ID programs), or the default. */
SOCKID_API SOCKID_WUR int sockid_admin_open(const char *path, int timeout_ms,
                                            struct sockid_admin **ret);
SOCKID_API SOCKID_WUR int sockid_admin_open_errbuf(const char *path, int timeout_ms,
                                                   struct sockid_admin **ret, char *errbuf,
                                                   size_t errbuf_size);
SOCKID_API SOCKID_WUR int sockid_admin_open_fd(int fd, int timeout_ms, struct sockid_admin **ret);
SOCKID_API struct sockid_admin *sockid_admin_close(struct sockid_admin *a);

/* As sockid_client_message(). */
SOCKID_API const char *sockid_admin_message(const struct sockid_admin *a);

/* What to register. Strings are borrowed for the call only. Every string
 * must be non-empty (SOCKID_EUSAGE otherwise); the agent checks the rest
 * (SOCKID_EINVAL, with a message naming the problem). */
struct sockid_entry_spec {
    const char *spiffe_id;        /* in the agent's trust domain */
    const char *const *selectors; /* "type:key:value", 1 to 32 */
    size_t n_selectors;
    uint32_t ttl_seconds;         /* token lifetime; 0: the agent's default */
    const char *const *audiences; /* allowed audiences; none: any */
    size_t n_audiences;
    const char *hint; /* free text for operators; NULL: none */
};

struct sockid_entry {
    char *id; /* 32 lowercase hex digits */
    char *spiffe_id;
    size_t n_selectors;
    char **selectors; /* sorted */
    uint32_t ttl_seconds;
    size_t n_audiences;
    char **audiences;   /* none: any audience */
    char *hint;         /* "" when none */
    int64_t created_at; /* unix seconds */
    uint64_t revision;
};

SOCKID_API struct sockid_entry *sockid_entry_free(struct sockid_entry *e);

/* Registers spec and returns the new entry as stored (id, created_at, the
 * TTL the agent chose). SOCKID_EEXIST when an entry with the same SPIFFE ID
 * and selector set exists; the message names its id. */
SOCKID_API SOCKID_WUR int sockid_admin_create_entry(struct sockid_admin *a,
                                                    const struct sockid_entry_spec *spec,
                                                    struct sockid_entry **ret);

/* SOCKID_ENOTFOUND when no entry has that id. */
SOCKID_API SOCKID_WUR int sockid_admin_delete_entry(struct sockid_admin *a, const char *id);
SOCKID_API SOCKID_WUR int sockid_admin_get_entry(struct sockid_admin *a, const char *id,
                                                 struct sockid_entry **ret);

/* Which entries to list; NULL fields (or a NULL filter) match every entry. */
struct sockid_entry_filter {
    const char *spiffe_id; /* only entries with exactly this SPIFFE ID */
    const char *selector;  /* only entries that hold this selector */
};

/* Entries in the agent's stable order (oldest first). The page token is
 * opaque bytes: pass it back as it is to get the next page. */
struct sockid_entry_list {
    size_t n_entries;
    struct sockid_entry **entries;
    uint8_t *next_page_token; /* NULL on the last page */
    size_t next_page_token_len;
};

SOCKID_API struct sockid_entry_list *sockid_entry_list_free(struct sockid_entry_list *l);

/* One page of at most page_size entries (0: the agent's default), from the
 * start when page_token is NULL, else from where the page that returned it
 * ended. */
SOCKID_API SOCKID_WUR int sockid_admin_list_entries(struct sockid_admin *a,
                                                    const struct sockid_entry_filter *filter,
                                                    uint32_t page_size, const uint8_t *page_token,
                                                    size_t page_token_len,
                                                    struct sockid_entry_list **ret);

/* Every matching entry, walking all pages over the one connection; the
 * result's next_page_token is NULL. Entries created or deleted during the
 * walk may or may not appear. */
SOCKID_API SOCKID_WUR int sockid_admin_list_all_entries(struct sockid_admin *a,
                                                        const struct sockid_entry_filter *filter,
                                                        struct sockid_entry_list **ret);

struct sockid_admin_health {
    char *version;
    uint64_t uptime_ms;
    uint64_t entries; /* registered entries */
};

SOCKID_API SOCKID_WUR int sockid_admin_health(struct sockid_admin *a,
                                              struct sockid_admin_health **ret);
SOCKID_API struct sockid_admin_health *sockid_admin_health_free(struct sockid_admin_health *h);

/* Replaces the active signing key now. The key it replaces is retired: it
 * stays in the bundle until every token it signed has expired. */
struct sockid_key_rotation {
    char *active_kid;  /* the new signing key's kid (RFC 7638 thumbprint) */
    char *retired_kid; /* the key it replaced; "" when there was none */
};

SOCKID_API SOCKID_WUR int sockid_admin_rotate_key(struct sockid_admin *a,
                                                  struct sockid_key_rotation **ret);
SOCKID_API struct sockid_key_rotation *sockid_key_rotation_free(struct sockid_key_rotation *k);

/* What the agent is doing, as 'sockid status' shows it. Counters count
 * since the agent started.
 *
 *     struct sockid_status *st;
 *     r = sockid_admin_status(a, &st);
 *     for (size_t i = 0; r == 0 && i < st->n_refusals; i++)
 *         printf("%s %llu\n", st->refusals[i].name,
 *                (unsigned long long)st->refusals[i].value);
 *     st = sockid_status_free(st);
 */
struct sockid_counter {
    char *name; /* stable snake_case: a request kind ("fetch_token") or a
                   refusal reason ("no_identity") */
    uint64_t value;
};

/* A percentile above the agent's largest latency bucket (1 s). */
#define SOCKID_LATENCY_ABOVE_MAX UINT64_MAX

/* A latency histogram, summarized. Percentiles are the upper bound of the
 * histogram bucket they fall in, in microseconds: 0 when count is 0,
 * SOCKID_LATENCY_ABOVE_MAX above the largest bucket. */
struct sockid_latency {
    uint64_t count;
    uint64_t sum_us;
    uint64_t p50_us;
    uint64_t p90_us;
    uint64_t p99_us;
};

struct sockid_status {
    char *version;
    uint64_t uptime_ms;
    int so_peerpidfd;   /* 1 when the agent uses SO_PEERPIDFD */
    int pidfd_get_info; /* 1 when the agent uses PIDFD_GET_INFO */
    int so_peergroups;  /* 1 when the agent uses SO_PEERGROUPS */
    size_t n_plugins;
    char **plugins; /* attestor plugins loaded, by name */
    uint64_t entries;
    char *active_kid;              /* the signing key; "" when there is none */
    int64_t active_key_created_at; /* unix seconds */
    int64_t active_key_age_seconds;
    unsigned keys; /* in the bundle: the active key and retired ones */
    unsigned event_loops;
    uint64_t connections_open; /* workload and admin connections */
    uint64_t connections_accepted;
    uint64_t connections_rejected; /* over a connection limit */
    size_t n_requests;
    struct sockid_counter *requests; /* served, by kind */
    size_t n_refusals;
    struct sockid_counter *refusals; /* refused, by reason */
    uint64_t tokens_signed;
    uint64_t token_cache_hits;
    struct sockid_latency request_latency;     /* frame in to reply out */
    struct sockid_latency attestation_latency; /* the attestor plugins' run */
};

SOCKID_API SOCKID_WUR int sockid_admin_status(struct sockid_admin *a, struct sockid_status **ret);
SOCKID_API struct sockid_status *sockid_status_free(struct sockid_status *s);

/* The same numbers in the Prometheus text exposition format (0.0.4), as
 * the agent's optional metrics socket serves them. */
struct sockid_metrics {
    char *text; /* NUL-terminated; holds no other NUL */
    size_t len;
};

SOCKID_API SOCKID_WUR int sockid_admin_metrics(struct sockid_admin *a, struct sockid_metrics **ret);
SOCKID_API struct sockid_metrics *sockid_metrics_free(struct sockid_metrics *m);

#ifdef __cplusplus
}
#endif

#endif
