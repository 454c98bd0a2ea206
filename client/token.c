/* libsockid's token calls on the workload socket: fetch tokens, fetch the
 * bundle that verifies them, and ask the agent to validate one. What the
 * agent sends is checked before a caller sees it: no NUL inside a string,
 * and a token made only of the characters a compact JWT has, so that a
 * caller can put it in an HTTP header or a command line as it is. */
#include <sockid/client.h>

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "workload.pb-c.h"

/* base64url segments separated by exactly two dots (RFC 7515 §7.1). */
static bool token_compact_ok(const char *t)
{
    size_t dots = 0;
    for (const char *p = t; *p; p++) {
        char ch = *p;
        if (ch == '.')
            dots++;
        else if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
                   (ch >= '0' && ch <= '9') || ch == '-' || ch == '_'))
            return false;
    }
    return dots == 2;
}

struct sockid_token_list *sockid_token_list_free(struct sockid_token_list *l)
{
    if (!l)
        return NULL;
    for (size_t i = 0; l->tokens && i < l->n_tokens; i++) {
        free(l->tokens[i].spiffe_id);
        free(l->tokens[i].token);
    }
    free(l->tokens);
    free(l);
    return NULL;
}

static int token_copy(struct sockid_client *c, const Sockid__Workload__Token *in,
                      struct sockid_token *out)
{
    if (!in || in->spiffe_id.len == 0 || in->token.len == 0)
        return client_fail(c, SOCKID_EPROTO,
                           "the agent at %s sent a token without its SPIFFE ID or its text: check "
                           "that the agent and libsockid versions match",
                           c->path);
    int r = client_copy_bytes(c, &in->spiffe_id, "SPIFFE ID", &out->spiffe_id);
    if (r == 0)
        r = client_copy_bytes(c, &in->token, "token", &out->token);
    if (r < 0)
        return r;
    if (!token_compact_ok(out->token))
        return client_fail(c, SOCKID_EPROTO,
                           "the agent at %s sent a token that is not a compact JWT (three "
                           "base64url parts joined by dots): check the agent's version",
                           c->path);
    out->expires_at = in->expires_at;
    return 0;
}

int sockid_fetch_token(struct sockid_client *c, const char *const *audiences, size_t n,
                       const char *spiffe_id, struct sockid_token_list **ret)
{
    static const char call[] = "sockid_fetch_token";
    if (!c)
        return SOCKID_EUSAGE;
    c->message[0] = '\0';
    if (!ret)
        return client_fail(c, SOCKID_EUSAGE, "%s needs a result pointer", call);
    if (n == 0)
        return client_fail(c, SOCKID_EUSAGE, "%s needs at least one audience", call);

    Sockid__Workload__FetchTokenRequest body = SOCKID__WORKLOAD__FETCH_TOKEN_REQUEST__INIT;
    Sockid__Workload__Response *resp = NULL;
    struct sockid_token_list *l = NULL;
    int r;
    if (spiffe_id && (r = client_bytes(c, spiffe_id, call, "SPIFFE ID", &body.spiffe_id)) < 0)
        return r;
    r = client_bytes_list(c, audiences, n, call, "audience", &body.audiences);
    if (r < 0)
        return r;
    body.n_audiences = n;

    Sockid__Workload__Request req = SOCKID__WORKLOAD__REQUEST__INIT;
    req.kind_case = SOCKID__WORKLOAD__REQUEST__KIND_FETCH_TOKEN;
    req.fetch_token = &body;
    r = client_call(c, &req, SOCKID__WORKLOAD__RESPONSE__KIND_FETCH_TOKEN, &resp);
    if (r < 0)
        goto out;

    const Sockid__Workload__FetchTokenResponse *in = resp->fetch_token;
    if (in->n_tokens == 0) {
        r = client_fail(c, SOCKID_EPROTO,
                        "the agent at %s answered with no token and no reason: check that the "
                        "agent and libsockid versions match",
                        c->path);
        goto out;
    }
    if (spiffe_id && in->n_tokens != 1) {
        r = client_fail(c, SOCKID_EPROTO,
                        "the agent at %s sent %zu tokens for the one SPIFFE ID asked for: check "
                        "the agent's version",
                        c->path, in->n_tokens);
        goto out;
    }
    l = calloc(1, sizeof(*l));
    if (!l || !(l->tokens = calloc(in->n_tokens, sizeof(*l->tokens)))) {
        r = client_fail(c, SOCKID_ENOMEM, "out of memory");
        goto out;
    }
    for (; l->n_tokens < in->n_tokens; l->n_tokens++) {
        /* Counted before the copy, so that the free releases a half copy. */
        r = token_copy(c, in->tokens[l->n_tokens], &l->tokens[l->n_tokens]);
        if (r < 0) {
            l->n_tokens++;
            goto out;
        }
    }
    if (spiffe_id && strcmp(l->tokens[0].spiffe_id, spiffe_id) != 0) {
        r = client_fail(c, SOCKID_EPROTO,
                        "the agent at %s sent a token for another SPIFFE ID than the one asked "
                        "for: check the agent's version",
                        c->path);
        goto out;
    }
    *ret = l;
    l = NULL;
    r = 0;
out:
    l = sockid_token_list_free(l);
    if (resp)
        sockid__workload__response__free_unpacked(resp, NULL);
    free(body.audiences);
    return r;
}

struct sockid_bundle *sockid_bundle_free(struct sockid_bundle *b)
{
    if (!b)
        return NULL;
    free(b->jwks);
    free(b);
    return NULL;
}

int sockid_fetch_bundle(struct sockid_client *c, struct sockid_bundle **ret)
{
    if (!c)
        return SOCKID_EUSAGE;
    c->message[0] = '\0';
    if (!ret)
        return client_fail(c, SOCKID_EUSAGE, "sockid_fetch_bundle needs a result pointer");

    Sockid__Workload__FetchBundleRequest body = SOCKID__WORKLOAD__FETCH_BUNDLE_REQUEST__INIT;
    Sockid__Workload__Request req = SOCKID__WORKLOAD__REQUEST__INIT;
    req.kind_case = SOCKID__WORKLOAD__REQUEST__KIND_FETCH_BUNDLE;
    req.fetch_bundle = &body;
    Sockid__Workload__Response *resp;
    int r = client_call(c, &req, SOCKID__WORKLOAD__RESPONSE__KIND_FETCH_BUNDLE, &resp);
    if (r < 0)
        return r;

    struct sockid_bundle *b = NULL;
    if (resp->fetch_bundle->jwks.len == 0) {
        r = client_fail(c, SOCKID_EPROTO,
                        "the agent at %s sent an empty bundle: check that the agent and "
                        "libsockid versions match",
                        c->path);
        goto out;
    }
    b = calloc(1, sizeof(*b));
    if (!b) {
        r = client_fail(c, SOCKID_ENOMEM, "out of memory");
        goto out;
    }
    r = client_copy_bytes(c, &resp->fetch_bundle->jwks, "bundle", &b->jwks);
    if (r < 0)
        goto out;
    *ret = b;
    b = NULL;
out:
    b = sockid_bundle_free(b);
    sockid__workload__response__free_unpacked(resp, NULL);
    return r;
}

struct sockid_validation *sockid_validation_free(struct sockid_validation *v)
{
    if (!v)
        return NULL;
    free(v->spiffe_id);
    free(v->claims_json);
    free(v);
    return NULL;
}

int sockid_validate(struct sockid_client *c, const char *token, const char *audience,
                    struct sockid_validation **ret)
{
    static const char call[] = "sockid_validate";
    if (!c)
        return SOCKID_EUSAGE;
    c->message[0] = '\0';
    if (!ret)
        return client_fail(c, SOCKID_EUSAGE, "%s needs a result pointer", call);

    Sockid__Workload__ValidateRequest body = SOCKID__WORKLOAD__VALIDATE_REQUEST__INIT;
    int r = client_bytes(c, token, call, "token", &body.token);
    if (r < 0)
        return r;
    r = client_bytes(c, audience, call, "audience", &body.audience);
    if (r < 0)
        return r;
    Sockid__Workload__Request req = SOCKID__WORKLOAD__REQUEST__INIT;
    req.kind_case = SOCKID__WORKLOAD__REQUEST__KIND_VALIDATE;
    req.validate = &body;
    Sockid__Workload__Response *resp;
    r = client_call(c, &req, SOCKID__WORKLOAD__RESPONSE__KIND_VALIDATE, &resp);
    if (r < 0)
        return r;

    const Sockid__Workload__ValidateResponse *in = resp->validate;
    struct sockid_validation *v = NULL;
    /* A yes without the subject is no answer a caller can act on. */
    if (in->spiffe_id.len == 0 || in->claims_json.len == 0) {
        r = client_fail(c, SOCKID_EPROTO,
                        "the agent at %s called the token valid but sent no SPIFFE ID or claims: "
                        "check that the agent and libsockid versions match",
                        c->path);
        goto out;
    }
    v = calloc(1, sizeof(*v));
    if (!v) {
        r = client_fail(c, SOCKID_ENOMEM, "out of memory");
        goto out;
    }
    r = client_copy_bytes(c, &in->spiffe_id, "SPIFFE ID", &v->spiffe_id);
    if (r == 0)
        r = client_copy_bytes(c, &in->claims_json, "claims", &v->claims_json);
    if (r < 0)
        goto out;
    *ret = v;
    v = NULL;
out:
    v = sockid_validation_free(v);
    sockid__workload__response__free_unpacked(resp, NULL);
    return r;
}
