/* A workload that asks the local sockid agent for an identity token with
 * libsockid and says when it expires.
 *
 *   make                     # pkg-config --cflags --libs sockid
 *   ./fetch https://db.example.org
 *   spiffe://example.org/web expires 2026-11-25T17:20:00Z (in 300 s)
 *
 * The agent decides who this process is from what the kernel reports about
 * it (uid, executable, cgroup, ...); an operator must first register an
 * entry whose selectors this process has ('sockid whoami' shows them):
 *
 *   sockid entry create --spiffe-id spiffe://example.org/web \
 *       --selector unix:uid:$(id -u) --selector unix:path:$PWD/fetch
 *
 * Usage: fetch [-s SOCKET] [-i SPIFFE_ID] [-t] AUDIENCE...
 *   -s SOCKET     the agent's socket (default: $SOCKID_AGENT_SOCKET, else
 *                 /run/sockid/agent.sock)
 *   -i SPIFFE_ID  which of this process's identities, when it has several
 *   -t            also print the token itself, on the last line
 *
 * Exit status as the sockid CLI's: 0 success, 1 refused (no entry matches),
 * 2 usage, 3 agent unreachable or unavailable. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include <sockid/client.h>

enum { EXIT_REFUSED = 1, EXIT_USAGE = 2, EXIT_UNREACHABLE = 3 };

static int exit_code(int r)
{
    switch (r) {
    case SOCKID_EUNREACHABLE:
    case SOCKID_ETIMEDOUT:
    case SOCKID_EUNAVAILABLE:
        return EXIT_UNREACHABLE; /* worth retrying later */
    case SOCKID_EUSAGE:
        return EXIT_USAGE;
    default:
        return EXIT_REFUSED;
    }
}

static void usage(FILE *f)
{
    fprintf(f, "usage: fetch [-s SOCKET] [-i SPIFFE_ID] [-t] AUDIENCE...\n");
}

int main(int argc, char **argv)
{
    const char *socket_path = NULL; /* NULL: $SOCKID_AGENT_SOCKET or the default */
    const char *spiffe_id = NULL;
    int print_token = 0, opt;

    while ((opt = getopt(argc, argv, "s:i:th")) != -1) {
        switch (opt) {
        case 's':
            socket_path = optarg;
            break;
        case 'i':
            spiffe_id = optarg;
            break;
        case 't':
            print_token = 1;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return EXIT_USAGE;
        }
    }
    if (optind >= argc) {
        usage(stderr);
        return EXIT_USAGE;
    }
    const char *const *audiences = (const char *const *)&argv[optind];
    size_t n_audiences = (size_t)(argc - optind);

    char err[SOCKID_ERRBUF_SIZE];
    struct sockid_client *client = NULL;
    int r = sockid_client_open_errbuf(socket_path, 5000, &client, err, sizeof(err));
    if (r < 0) {
        fprintf(stderr, "fetch: %s\n", err[0] ? err : sockid_strerror(r));
        return exit_code(r);
    }

    struct sockid_token_list *tokens = NULL;
    r = sockid_fetch_token(client, audiences, n_audiences, spiffe_id, &tokens);
    if (r < 0) {
        /* The agent's own sentence, e.g. that no entry matches this process. */
        fprintf(stderr, "fetch: %s\n", sockid_client_message(client));
        client = sockid_client_close(client);
        return exit_code(r);
    }

    /* Without -i, one token per identity, in the agent's stable order; the
     * first is the one 'sockid fetch' prints. */
    const struct sockid_token *t = &tokens->tokens[0];
    time_t expires = (time_t)t->expires_at;
    struct tm tm;
    char when[32] = "?";
    if (gmtime_r(&expires, &tm))
        (void)strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
    long long left = (long long)(t->expires_at - (int64_t)time(NULL));
    printf("%s expires %s (in %lld s)\n", t->spiffe_id, when, left);
    if (tokens->n_tokens > 1)
        fprintf(stderr, "fetch: this process has %zu identities; pick one with -i\n",
                tokens->n_tokens);
    if (print_token)
        printf("%s\n", t->token);

    /* A real workload would use the token now, and fetch again once half of
     * its lifetime has passed: the agent answers with the same token until
     * then. */
    tokens = sockid_token_list_free(tokens);
    client = sockid_client_close(client);
    return fflush(stdout) == 0 ? 0 : EXIT_REFUSED;
}
