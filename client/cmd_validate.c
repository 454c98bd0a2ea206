/* sockid validate: is this token valid for this audience? The agent
 * decides, with the keys it signs with. */
#include "cli.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* The most read from standard input: the agent refuses longer tokens. */
#define VALIDATE_STDIN_MAX 16384

static const char usage[] =
    "Usage: sockid validate --audience AUD [--json] TOKEN\n"
    "\n"
    "Asks the agent whether TOKEN is valid for the audience AUD: signed by one of\n"
    "the agent's keys with EdDSA, not expired, for AUD, and for a SPIFFE ID of\n"
    "the agent's trust domain. Prints the token's SPIFFE ID and exits 0 when it\n"
    "is; prints the agent's reason to standard error and exits 1 when it is not.\n"
    "TOKEN '-' reads the token from standard input (at most 16384 bytes;\n"
    "surrounding blanks and line breaks are ignored).\n"
    "\n"
    "Options:\n"
    "  --audience AUD\n"
    "                 the audience the token must be for (once)\n"
    "  --json         print one JSON object: {\"valid\":true,\"spiffe_id\":...,\n"
    "                 \"claims\":{...}}, or {\"valid\":false,\"reason\":...} (exit\n"
    "                 status 1)\n";

enum {
    OPT_JSON = CLI_OPT_FIRST_FREE,
    OPT_AUDIENCE,
};

static bool is_blank(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r';
}

/* Reads the token from standard input into buf (VALIDATE_STDIN_MAX + 1
 * bytes), without the blanks around it. Returns CLI_EXIT_OK or an exit code
 * after printing why. */
static int read_token(char *buf, const char **ret)
{
    static const char command[] = "validate";
    size_t n = fread(buf, 1, VALIDATE_STDIN_MAX + 1, stdin);
    if (ferror(stdin))
        return cli_error(CLI_EXIT_USAGE, "cannot read the token from standard input: %s",
                         strerror(errno));
    if (n > VALIDATE_STDIN_MAX)
        return cli_usage_error(command,
                               "standard input holds more than %d bytes, more than a token may "
                               "be: give one token",
                               VALIDATE_STDIN_MAX);
    if (memchr(buf, '\0', n))
        return cli_usage_error(command, "standard input holds a NUL byte, which no token has");
    while (n > 0 && is_blank(buf[n - 1]))
        n--;
    buf[n] = '\0';
    const char *t = buf;
    while (is_blank(*t))
        t++;
    if (*t == '\0')
        return cli_usage_error(command, "standard input holds no token");
    *ret = t;
    return CLI_EXIT_OK;
}

static int print_valid_json(const struct sockid_validation *v)
{
    json_error_t err;
    json_t *claims = json_loads(v->claims_json, JSON_REJECT_DUPLICATES, &err);
    if (!json_is_object(claims)) {
        json_decref(claims);
        return cli_error(CLI_EXIT_REFUSED,
                         "the agent called the token valid but sent claims that are not a JSON "
                         "object: check that the agent and sockid versions match");
    }
    json_t *id = cli_json_string(v->spiffe_id, "SPIFFE ID");
    if (!id) {
        json_decref(claims);
        return CLI_EXIT_REFUSED;
    }
    /* "o" hands the values to the object, or releases them if packing fails. */
    json_t *obj = json_pack("{s:b, s:o, s:o}", "valid", 1, "spiffe_id", id, "claims", claims);
    if (!obj)
        return cli_error(CLI_EXIT_REFUSED, "out of memory");
    return cli_json_print(obj);
}

/* The agent said no: its reason on stderr, and in JSON on stdout. */
static int print_invalid(const char *reason, bool json)
{
    (void)cli_error(CLI_EXIT_REFUSED, "%s", reason);
    if (json) {
        json_t *r = cli_json_string(reason, "reason");
        json_t *obj = r ? json_pack("{s:b, s:o}", "valid", 0, "reason", r) : NULL;
        (void)cli_json_print(obj);
    }
    return CLI_EXIT_REFUSED;
}

int cmd_validate(int argc, char **argv, struct cli_global *g)
{
    static const char command[] = "validate";
    static const struct option options[] = {
        {"audience", required_argument, NULL, OPT_AUDIENCE},
        {"json", no_argument, NULL, OPT_JSON},
        CLI_GLOBAL_OPTIONS,
        {0},
    };
    const char *audience = NULL;
    bool json = false;
    int opt;
    while ((opt = cli_getopt(argc, argv, options)) != -1) {
        switch (opt) {
        case OPT_AUDIENCE:
            if (audience)
                return cli_usage_error(command, "--audience is given twice, but a token is "
                                                "validated for one audience at a time");
            if (*optarg == '\0')
                return cli_usage_error(command, "--audience needs a value, not an empty string");
            audience = optarg;
            break;
        case OPT_JSON:
            json = true;
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
    if (!audience)
        return cli_usage_error(command, "give the audience the token must be for with --audience");
    if (optind >= argc)
        return cli_usage_error(command, "no token given (give it, or '-' to read it from "
                                        "standard input)");
    if (optind + 1 < argc)
        return cli_usage_error(command, "unexpected argument '%s' after the token",
                               argv[optind + 1]);
    const char *token = argv[optind];
    if (*token == '\0')
        return cli_usage_error(command, "the token is empty");

    struct sockid_client *c = NULL;
    struct sockid_validation *v = NULL;
    char *buf = NULL;
    int rc;
    if (strcmp(token, "-") == 0) {
        buf = malloc(VALIDATE_STDIN_MAX + 1);
        if (!buf)
            return cli_error(CLI_EXIT_REFUSED, "out of memory");
        if ((rc = read_token(buf, &token)) != CLI_EXIT_OK)
            goto out;
    }

    if ((rc = cli_open(g, &c)) != CLI_EXIT_OK)
        goto out;
    int r = sockid_validate(c, token, audience, &v);
    if (r == SOCKID_EINVAL || r == SOCKID_EPERM) {
        rc = print_invalid(sockid_client_message(c), json);
        goto out;
    }
    if (r < 0) {
        rc = cli_fail(c, r);
        goto out;
    }
    c = sockid_client_close(c);
    if (json) {
        rc = print_valid_json(v);
    } else {
        cli_print_text(stdout, v->spiffe_id);
        putchar('\n');
        rc = CLI_EXIT_OK;
    }
out:
    v = sockid_validation_free(v);
    c = sockid_client_close(c);
    free(buf);
    return rc;
}
