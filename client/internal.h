/* libsockid's internals, shared by client.c (connections and the workload
 * API) and admin.c (the admin API). Not installed; nothing here is exported:
 * the library is built with hidden visibility and a version script. */
#ifndef SOCKID_CLIENT_INTERNAL_H
#define SOCKID_CLIENT_INTERNAL_H

#include <sockid/client.h>

#include <protobuf-c/protobuf-c.h>
#include <stdint.h>
#include <sys/un.h>

#include "common.pb-c.h"
#include "workload.pb-c.h"

#define CLIENT_MESSAGE_MAX 512

/* One connection to one of the agent's sockets. The admin API wraps it in a
 * struct sockid_admin of its own, so that the compiler keeps the two
 * sockets' calls apart. */
struct sockid_client {
    int fd; /* -1 once an error left the stream at an unknown position */
    int timeout_ms;
    uint8_t *response; /* CLIENT_RESPONSE_MAX bytes, allocated by the first call */
    char path[sizeof(((struct sockaddr_un *)0)->sun_path) + 16];
    char message[CLIENT_MESSAGE_MAX];
};

/* Which socket a connection is for, to find it and to say what to do when
 * it cannot be reached. */
struct client_socket {
    const char *env;          /* the environment variable that names it */
    const char *default_path; /* where it is otherwise */
    const char *denied_hint;  /* what to do when connect() is refused: EACCES */
};

void client_init(struct sockid_client *c, int timeout_ms);

/* Connects c to path, or to $env, or to the default path of s. On failure
 * writes a sentence saying what to do into errbuf (may be NULL). */
__attribute__((warn_unused_result)) int client_open_path(struct sockid_client *c,
                                                         const struct client_socket *s,
                                                         const char *path, char *errbuf,
                                                         size_t errbuf_size);

/* Makes c use fd, a connected stream socket; c owns it on success only. */
__attribute__((warn_unused_result)) int client_adopt_fd(struct sockid_client *c, int fd);

/* Closes c's connection and frees what it holds, not c itself. */
void client_release(struct sockid_client *c);

/* Records a local error for the message getters and returns code. */
__attribute__((format(printf, 3, 4))) int client_fail(struct sockid_client *c, int code,
                                                      const char *fmt, ...);

/* Sends req as one frame and reads one frame of answer into c->response.
 * Returns 0 and the answer's length, or an error recorded in c. */
__attribute__((warn_unused_result)) int
client_roundtrip(struct sockid_client *c, const ProtobufCMessage *req, uint32_t *ret_len);

/* The error code for the agent's refusal e, whose message is kept in c. */
int client_refusal(struct sockid_client *c, const Sockid__Error *e);

/* Sends a workload request and reads its answer, which must be of kind want
 * (or an error, returned as its code). On success the caller owns *ret and
 * frees it with sockid__workload__response__free_unpacked. */
__attribute__((warn_unused_result)) int client_call(struct sockid_client *c,
                                                    const Sockid__Workload__Request *req,
                                                    Sockid__Workload__Response__KindCase want,
                                                    Sockid__Workload__Response **ret);

/* A caller's string as a bytes field, borrowed for the call. NULL and "" are
 * refused (SOCKID_EUSAGE, naming call and what): the agent would read them
 * as "not given", which is never what a caller that passed a string meant. */
int client_bytes(struct sockid_client *c, const char *s, const char *call, const char *what,
                 ProtobufCBinaryData *ret);

/* The same for n strings: a malloc'd array (NULL when n is 0) whose data
 * points into items. */
__attribute__((warn_unused_result)) int client_bytes_list(struct sockid_client *c,
                                                          const char *const *items, size_t n,
                                                          const char *call, const char *what,
                                                          ProtobufCBinaryData **ret);

/* Records that the agent's answer did not parse, or was not of the kind
 * asked for, and returns SOCKID_EPROTO. */
int client_unparsable(struct sockid_client *c);
int client_wrong_kind(struct sockid_client *c);

/* Copies a bytes field into a C string, refusing a NUL inside it
 * (SOCKID_EPROTO): the C string would say less than the agent meant. what
 * names the field in the message. */
__attribute__((warn_unused_result)) int client_copy_bytes(struct sockid_client *c,
                                                          const ProtobufCBinaryData *b,
                                                          const char *what, char **ret);

/* The same for a repeated bytes field: an array of n strings (never NULL,
 * even when n is 0). */
__attribute__((warn_unused_result)) int client_copy_list(struct sockid_client *c,
                                                         const ProtobufCBinaryData *items, size_t n,
                                                         const char *what, char ***ret,
                                                         size_t *ret_n);

/* Frees an array of n strings; accepts NULL. */
void client_free_list(char **v, size_t n);

#endif
