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
#define SOCKID_AGENT_SOCKET_ENV "SOCKID_AGENT_SOCKET"

/* Error codes. The first six mirror the agent's wire codes. */
enum sockid_error {
    SOCKID_OK = 0,
    SOCKID_EINVAL = -1,        /* the agent says the request is invalid */
    SOCKID_EPERM = -2,         /* refused: no identity or right for this process */
    SOCKID_EPEERGONE = -3,     /* the agent saw this process exit or change identity */
    SOCKID_EUNAVAILABLE = -4,  /* the agent is shutting down or overloaded */
    SOCKID_EINTERNAL = -5,     /* the agent hit an internal error */
    SOCKID_EUNIMPLEMENTED = -6, /* the agent does not know this request */
    SOCKID_ELIMIT = -7,        /* a per-client limit of the agent was reached */
    SOCKID_EUNREACHABLE = -20, /* no agent answers on the socket */
    SOCKID_ETIMEDOUT = -21,    /* the agent did not answer in time */
    SOCKID_EPROTO = -22,       /* the agent's answer was malformed or closed early */
    SOCKID_ENOMEM = -23,
    SOCKID_EUSAGE = -24,       /* bad arguments to a libsockid call */
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
    char **selectors;  /* "type:key:value", sorted */
    size_t n_spiffe_ids;
    char **spiffe_ids;
};

SOCKID_API SOCKID_WUR int sockid_whoami(struct sockid_client *c, struct sockid_whoami **ret);
SOCKID_API struct sockid_whoami *sockid_whoami_free(struct sockid_whoami *w);

struct sockid_health {
    char *version;
    int peer_pidfd;      /* 1 when the agent uses SO_PEERPIDFD */
    int pidfd_get_info;  /* 1 when the agent uses PIDFD_GET_INFO */
    uint64_t uptime_ms;
    unsigned attestors;
};

SOCKID_API SOCKID_WUR int sockid_health(struct sockid_client *c, struct sockid_health **ret);
SOCKID_API struct sockid_health *sockid_health_free(struct sockid_health *h);

#ifdef __cplusplus
}
#endif

#endif
