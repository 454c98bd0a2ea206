/* A client of the installed libsockid, built by test_install.sh with nothing
 * but what `pkg-config --cflags --libs sockid` gives, in strict C99 with
 * warnings as errors, so that the installed header stands on its own.
 *
 *   tiny_client SOCKET AUDIENCE
 *
 * Asks the agent for its health, whoami, a token for AUDIENCE, the bundle,
 * and whether the token is valid, and prints one "name value" line for
 * each. Exit status: 0 all answered, 1 a call failed (the agent's message
 * on stderr). */
#include <stdio.h>
#include <string.h>

#include <sockid/client.h>

static int fail(const char *what, struct sockid_client *c, int r)
{
    fprintf(stderr, "tiny_client: %s: %s (%s)\n", what, sockid_client_message(c),
            sockid_strerror(r));
    (void)sockid_client_close(c);
    return 1;
}

int main(int argc, char **argv)
{
    struct sockid_client *c = NULL;
    struct sockid_health *health = NULL;
    struct sockid_whoami *me = NULL;
    struct sockid_token_list *tokens = NULL;
    struct sockid_bundle *bundle = NULL;
    struct sockid_validation *valid = NULL;
    const char *audiences[1];
    char err[SOCKID_ERRBUF_SIZE];
    int r;

    if (argc != 3) {
        fprintf(stderr, "usage: tiny_client SOCKET AUDIENCE\n");
        return 2;
    }
    audiences[0] = argv[2];
    r = sockid_client_open_errbuf(argv[1], 10000, &c, err, sizeof(err));
    if (r < 0) {
        fprintf(stderr, "tiny_client: %s\n", err);
        return 1;
    }

    r = sockid_health(c, &health);
    if (r < 0)
        return fail("health", c, r);
    printf("version %s\n", health->version);
    health = sockid_health_free(health);

    r = sockid_whoami(c, &me);
    if (r < 0)
        return fail("whoami", c, r);
    printf("selectors %lu\n", (unsigned long)me->n_selectors);
    me = sockid_whoami_free(me);

    r = sockid_fetch_token(c, audiences, 1, NULL, &tokens);
    if (r < 0)
        return fail("fetch", c, r);
    printf("spiffe_id %s\n", tokens->tokens[0].spiffe_id);
    printf("expires_at %lld\n", (long long)tokens->tokens[0].expires_at);

    r = sockid_fetch_bundle(c, &bundle);
    if (r < 0) {
        tokens = sockid_token_list_free(tokens);
        return fail("bundle", c, r);
    }
    printf("bundle %s\n", strstr(bundle->jwks, "\"keys\"") ? "has keys" : "has no keys");
    bundle = sockid_bundle_free(bundle);

    r = sockid_validate(c, tokens->tokens[0].token, argv[2], &valid);
    tokens = sockid_token_list_free(tokens);
    if (r < 0)
        return fail("validate", c, r);
    printf("validated %s\n", valid->spiffe_id);
    valid = sockid_validation_free(valid);

    c = sockid_client_close(c);
    return 0;
}
