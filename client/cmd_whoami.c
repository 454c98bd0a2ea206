/* sockid whoami: the selectors and identities the agent sees for the caller. */
#include "cli.h"

#include <stdbool.h>

static const char usage[] =
    "Usage: sockid whoami [--json]\n"
    "\n"
    "Shows what the agent sees for this process: its pid, its uid and gid when it\n"
    "connected, the selectors the attestors found, and the SPIFFE IDs of the\n"
    "entries those selectors match. Characters that could mislead a terminal are\n"
    "shown as \\xHH; --json gives the exact values.\n"
    "\n"
    "Options:\n"
    "  --json         print one JSON object: pid, uid, gid, selectors, spiffe_ids\n";

static void print_list(const char *title, char *const *items, size_t n)
{
    printf("%s:\n", title);
    if (n == 0)
        printf("  (none)\n");
    for (size_t i = 0; i < n; i++) {
        fputs("  ", stdout);
        cli_print_text(stdout, items[i]);
        putchar('\n');
    }
}

static int print_json(const struct sockid_whoami *w)
{
    json_t *selectors = cli_json_strings(w->selectors, w->n_selectors, "selector");
    if (!selectors)
        return CLI_EXIT_REFUSED;
    json_t *ids = cli_json_strings(w->spiffe_ids, w->n_spiffe_ids, "SPIFFE ID");
    if (!ids) {
        json_decref(selectors);
        return CLI_EXIT_REFUSED;
    }
    /* "o" hands the arrays to the object, or releases them if packing fails. */
    json_t *obj =
        json_pack("{s:I, s:I, s:I, s:o, s:o}", "pid", (json_int_t)w->pid, "uid", (json_int_t)w->uid,
                  "gid", (json_int_t)w->gid, "selectors", selectors, "spiffe_ids", ids);
    if (!obj)
        return cli_error(CLI_EXIT_REFUSED, "out of memory");
    return cli_json_print(obj);
}

int cmd_whoami(int argc, char **argv, struct cli_global *g)
{
    bool json = false;
    int rc = cli_parse_plain(argc, argv, g, "whoami", usage, false, &json);
    if (rc != CLI_GO_ON)
        return rc;

    struct sockid_client *c;
    rc = cli_open(g, &c);
    if (rc != CLI_EXIT_OK)
        return rc;
    struct sockid_whoami *w;
    int r = sockid_whoami(c, &w);
    if (r < 0) {
        rc = cli_fail(c, r);
        c = sockid_client_close(c);
        return rc;
    }
    c = sockid_client_close(c);

    if (json) {
        rc = print_json(w);
    } else {
        printf("pid %ld uid %lu gid %lu\n", (long)w->pid, (unsigned long)w->uid,
               (unsigned long)w->gid);
        print_list("selectors", w->selectors, w->n_selectors);
        print_list("identities", w->spiffe_ids, w->n_spiffe_ids);
    }
    w = sockid_whoami_free(w);
    return rc;
}
