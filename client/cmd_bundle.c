/* sockid bundle: the JWKS that verifies the agent's tokens. */
#include "cli.h"

#include <stdbool.h>
#include <string.h>

static const char usage[] =
    "Usage: sockid bundle [--format jwks|spiffe]\n"
    "\n"
    "Prints the JSON Web Key Set whose keys verify the agent's tokens: the active\n"
    "signing key and the retired ones whose tokens may still be valid. Standard\n"
    "JOSE libraries (node's jose, PyJWT, ...) verify sockid tokens with it as it\n"
    "is. Fetch it again after a key rotation.\n"
    "\n"
    "Options:\n"
    "  --format jwks  the key set exactly as the agent sends it (the default)\n"
    "  --format spiffe\n"
    "                 the same keys marked \"use\":\"jwt-svid\", for tools that read\n"
    "                 SPIFFE trust bundles. sockid tokens are EdDSA JWTs, which\n"
    "                 the JWT-SVID specification does not list, so SPIFFE\n"
    "                 verifiers may still refuse them; and node's jose ignores\n"
    "                 keys so marked: use the default format for JOSE libraries\n";

enum { OPT_FORMAT = CLI_OPT_FIRST_FREE };

enum bundle_format { FORMAT_JWKS, FORMAT_SPIFFE };

/* The agent's key set, parsed; NULL after printing why it is no key set. */
static json_t *parse_jwks(const char *text)
{
    json_error_t err;
    json_t *jwks = json_loads(text, JSON_REJECT_DUPLICATES, &err);
    if (!jwks) {
        (void)cli_error(CLI_EXIT_REFUSED,
                        "the agent sent a bundle that is not JSON (at line %d, column %d): check "
                        "that the agent and sockid versions match",
                        err.line, err.column);
        return NULL;
    }
    json_t *keys = json_object_get(jwks, "keys");
    size_t i;
    json_t *key;
    bool ok = json_is_array(keys);
    json_array_foreach(keys, i, key) ok = ok && json_is_object(key);
    if (!ok) {
        json_decref(jwks);
        (void)cli_error(CLI_EXIT_REFUSED,
                        "the agent sent a bundle without a \"keys\" array of objects: check that "
                        "the agent and sockid versions match");
        return NULL;
    }
    return jwks;
}

/* Every key marked for JWT-SVIDs, as SPIFFE bundles have it. */
static int print_spiffe(json_t *jwks)
{
    json_t *keys = json_object_get(jwks, "keys");
    size_t i;
    json_t *key;
    json_array_foreach(keys, i, key)
    {
        if (json_object_set_new(key, "use", json_string("jwt-svid")) < 0) {
            json_decref(jwks);
            return cli_error(CLI_EXIT_REFUSED, "out of memory");
        }
    }
    return cli_json_print(jwks);
}

int cmd_bundle(int argc, char **argv, struct cli_global *g)
{
    static const char command[] = "bundle";
    static const struct option options[] = {
        {"format", required_argument, NULL, OPT_FORMAT},
        CLI_GLOBAL_OPTIONS,
        {0},
    };
    enum bundle_format format = FORMAT_JWKS;
    int opt;
    while ((opt = cli_getopt(argc, argv, options)) != -1) {
        switch (opt) {
        case OPT_FORMAT:
            if (strcmp(optarg, "jwks") == 0)
                format = FORMAT_JWKS;
            else if (strcmp(optarg, "spiffe") == 0)
                format = FORMAT_SPIFFE;
            else
                return cli_usage_error(command, "--format takes jwks or spiffe, not '%s'", optarg);
            break;
        case CLI_OPT_HELP:
            printf("%s%s", usage, cli_global_help);
            return CLI_EXIT_OK;
        default: {
            int r = cli_option(opt, argv, g, command);
            if (r != CLI_EXIT_OK)
                return r;
        }
        }
    }
    if (optind < argc)
        return cli_usage_error(command, "unexpected argument '%s'", argv[optind]);

    struct sockid_client *c;
    int rc = cli_open(g, &c);
    if (rc != CLI_EXIT_OK)
        return rc;
    struct sockid_bundle *b;
    int r = sockid_fetch_bundle(c, &b);
    if (r < 0) {
        rc = cli_fail(c, r);
        c = sockid_client_close(c);
        return rc;
    }
    c = sockid_client_close(c);

    /* Parsed in both formats: what is printed is a key set, and JSON
     * carries no raw control character that could drive a terminal. */
    json_t *jwks = parse_jwks(b->jwks);
    if (!jwks) {
        rc = CLI_EXIT_REFUSED;
    } else if (format == FORMAT_SPIFFE) {
        rc = print_spiffe(jwks);
    } else {
        json_decref(jwks);
        size_t n = strlen(b->jwks);
        fputs(b->jwks, stdout);
        if (b->jwks[n - 1] != '\n')
            putchar('\n');
        rc = CLI_EXIT_OK;
    }
    b = sockid_bundle_free(b);
    return rc;
}
