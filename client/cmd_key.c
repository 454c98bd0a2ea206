/* sockid key: the agent's signing keys, on its admin socket. One verb per
 * function, dispatched from the table at the end. */
#include "cli.h"

#include <stdbool.h>
#include <string.h>

static const char rotate_usage[] =
    "Usage: sockid key rotate [--json]\n"
    "\n"
    "Replaces the agent's active signing key now, as when a leak is suspected.\n"
    "New tokens are signed with the new key; the old key is retired and stays in\n"
    "the bundle until every token it signed has expired, so those tokens still\n"
    "verify. Verifiers that keep a copy of the bundle must fetch it again\n"
    "('sockid bundle'). Prints the new key's id on a line 'active KID', then the\n"
    "retired key's on a line 'retired KID'.\n"
    "\n"
    "Options:\n"
    "  --json         print one JSON object: active_kid, retired_kid (null when\n"
    "                 no key was retired)\n";

static int print_json(const struct sockid_key_rotation *k)
{
    json_t *active = cli_json_string(k->active_kid, "key id");
    if (!active)
        return CLI_EXIT_REFUSED;
    json_t *retired = *k->retired_kid ? cli_json_string(k->retired_kid, "key id") : json_null();
    if (!retired) {
        json_decref(active);
        return CLI_EXIT_REFUSED;
    }
    /* "o" hands the values to the object, or releases them if packing fails. */
    json_t *obj = json_pack("{s:o, s:o}", "active_kid", active, "retired_kid", retired);
    if (!obj)
        return cli_error(CLI_EXIT_REFUSED, "out of memory");
    return cli_json_print(obj);
}

static int key_rotate(int argc, char **argv, struct cli_global *g)
{
    static const char command[] = "key rotate";
    bool json = false;
    int rc = cli_parse_plain(argc, argv, g, command, rotate_usage, true, &json);
    if (rc != CLI_GO_ON)
        return rc;

    struct sockid_admin *a;
    rc = cli_admin_open(g, &a);
    if (rc != CLI_EXIT_OK)
        return rc;
    struct sockid_key_rotation *k;
    int r = sockid_admin_rotate_key(a, &k);
    if (r < 0) {
        rc = cli_admin_fail(a, r);
        a = sockid_admin_close(a);
        return rc;
    }
    a = sockid_admin_close(a);

    if (json) {
        rc = print_json(k);
    } else {
        fputs("active ", stdout);
        cli_print_text(stdout, k->active_kid);
        putchar('\n');
        if (*k->retired_kid) {
            fputs("retired ", stdout);
            cli_print_text(stdout, k->retired_kid);
            putchar('\n');
        }
        rc = CLI_EXIT_OK;
    }
    k = sockid_key_rotation_free(k);
    return rc;
}

/* ---- dispatch ---- */

static const struct cli_command verbs[] = {
    {"rotate", key_rotate, "replace the active signing key now; prints the new key's id"},
};

int cmd_key(int argc, char **argv, struct cli_global *g)
{
    static const struct cli_group group = {
        .name = "key",
        .about = "Manages the agent's signing keys on its admin socket. Needs a user that the\n"
                 "agent's admin_uids or admin_gids allow.\n",
        .verbs = verbs,
        .n_verbs = sizeof(verbs) / sizeof(verbs[0]),
    };
    return cli_run_group(&group, argc, argv, g);
}
