/* sockid fetch: identity tokens for the caller, for the audiences asked. */
#include "cli.h"

#include <stdbool.h>
#include <stdlib.h>

static const char usage[] =
    "Usage: sockid fetch --audience AUD [--audience AUD ...] [--spiffe-id ID] [--json]\n"
    "\n"
    "Asks the agent for an identity token (a JWT signed with Ed25519) for this\n"
    "process, valid for the audiences given, and prints it on one line. When the\n"
    "process has several identities, it prints the token of the first in the\n"
    "agent's stable order (the oldest entry) and says so on stderr; --spiffe-id\n"
    "picks one, --json prints them all. The agent decides who the process is from\n"
    "what the kernel reports, never from these options, and refuses (exit status\n"
    "1) when no registration entry matches the process.\n"
    "\n"
    "Options:\n"
    "  --audience AUD\n"
    "                 who the token is for (the \"aud\" claim); repeatable\n"
    "  --spiffe-id ID\n"
    "                 the identity to fetch a token for, one of those\n"
    "                 'sockid whoami' lists (e.g. spiffe://example.org/web)\n"
    "  --json         print one JSON array of objects: spiffe_id, token,\n"
    "                 expires_at (unix seconds)\n";

enum {
    OPT_JSON = CLI_OPT_FIRST_FREE,
    OPT_AUDIENCE,
    OPT_SPIFFE_ID,
};

static int print_json(const struct sockid_token_list *l)
{
    json_t *arr = json_array();
    if (!arr)
        return cli_error(CLI_EXIT_REFUSED, "out of memory");
    for (size_t i = 0; i < l->n_tokens; i++) {
        const struct sockid_token *t = &l->tokens[i];
        json_t *id = cli_json_string(t->spiffe_id, "SPIFFE ID");
        if (!id) {
            json_decref(arr);
            return CLI_EXIT_REFUSED;
        }
        /* The library let through only base64url and dots: plain ASCII. */
        json_t *obj = json_pack("{s:o, s:s, s:I}", "spiffe_id", id, "token", t->token, "expires_at",
                                (json_int_t)t->expires_at);
        if (!obj || json_array_append_new(arr, obj) < 0) {
            json_decref(arr);
            return cli_error(CLI_EXIT_REFUSED, "out of memory");
        }
    }
    return cli_json_print(arr);
}

int cmd_fetch(int argc, char **argv, struct cli_global *g)
{
    static const char command[] = "fetch";
    static const struct option options[] = {
        {"audience", required_argument, NULL, OPT_AUDIENCE},
        {"spiffe-id", required_argument, NULL, OPT_SPIFFE_ID},
        {"json", no_argument, NULL, OPT_JSON},
        CLI_GLOBAL_OPTIONS,
        {0},
    };
    /* Each --audience takes at least its own argv slot, so argc bounds them. */
    const char **audiences = calloc((size_t)argc, sizeof(*audiences));
    size_t n_audiences = 0;
    const char *spiffe_id = NULL;
    struct sockid_client *c = NULL;
    struct sockid_token_list *l = NULL;
    bool json = false;
    int rc = CLI_EXIT_OK, opt;
    if (!audiences)
        return cli_error(CLI_EXIT_REFUSED, "out of memory");
    while (rc == CLI_EXIT_OK && (opt = cli_getopt(argc, argv, options)) != -1) {
        switch (opt) {
        case OPT_AUDIENCE:
            if (*optarg == '\0')
                rc = cli_usage_error(command, "--audience needs a value, not an empty string");
            else
                audiences[n_audiences++] = optarg;
            break;
        case OPT_SPIFFE_ID:
            if (spiffe_id)
                rc = cli_usage_error(command, "--spiffe-id is given twice, but a fetch is for "
                                              "one identity at a time");
            else if (*optarg == '\0')
                rc = cli_usage_error(command, "--spiffe-id needs a value, not an empty string");
            else
                spiffe_id = optarg;
            break;
        case OPT_JSON:
            json = true;
            break;
        case CLI_OPT_HELP:
            printf("%s%s", usage, cli_global_help);
            goto out;
        default:
            rc = cli_option(opt, argv, g, command);
        }
    }
    if (rc != CLI_EXIT_OK)
        goto out;
    if (optind < argc) {
        rc = cli_usage_error(command, "unexpected argument '%s'", argv[optind]);
        goto out;
    }
    if (n_audiences == 0) {
        rc = cli_usage_error(command, "a token needs at least one --audience");
        goto out;
    }

    if ((rc = cli_open(g, &c)) != CLI_EXIT_OK)
        goto out;
    int r = sockid_fetch_token(c, audiences, n_audiences, spiffe_id, &l);
    if (r < 0) {
        rc = cli_fail(c, r);
        goto out;
    }
    if (json) {
        rc = print_json(l);
    } else {
        /* One token, so that TOKEN=$(sockid fetch ...) works: the first
         * identity in the agent's stable order (oldest entry first). */
        printf("%s\n", l->tokens[0].token);
        if (l->n_tokens > 1)
            fprintf(stderr,
                    "sockid: this process has %zu identities; printed the token for %s (choose "
                    "with --spiffe-id, or see all with --json)\n",
                    l->n_tokens, l->tokens[0].spiffe_id);
    }
out:
    l = sockid_token_list_free(l);
    c = sockid_client_close(c);
    free(audiences);
    return rc;
}
