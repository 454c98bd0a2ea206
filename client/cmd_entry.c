/* sockid entry: register, list, show and delete registration entries, on the
 * agent's admin socket. One verb per function, dispatched from the table at
 * the end. */
#include "cli.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum {
    OPT_JSON = CLI_OPT_FIRST_FREE,
    OPT_SPIFFE_ID,
    OPT_SELECTOR,
    OPT_TTL,
    OPT_AUDIENCE,
    OPT_HINT,
};

/* ---- output ---- */

static void print_field(const char *name, const char *value)
{
    printf("  %-10s ", name);
    cli_print_text(stdout, value);
    putchar('\n');
}

static void print_values(const char *name, char *const *values, size_t n, const char *none)
{
    if (n == 0) {
        printf("  %-10s %s\n", name, none);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        printf("  %-10s ", i == 0 ? name : "");
        cli_print_text(stdout, values[i]);
        putchar('\n');
    }
}

/* ISO 8601 in UTC, or the raw number when it is no representable time. */
static void format_time(int64_t t, char *buf, size_t size)
{
    struct tm tm;
    time_t tt = (time_t)t;
    if ((int64_t)tt != t || !gmtime_r(&tt, &tm) ||
        strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        (void)snprintf(buf, size, "@%lld", (long long)t);
}

/* One block per entry: a header line with the id, then indented fields. */
static void print_entry(const struct sockid_entry *e)
{
    char created[64];
    format_time(e->created_at, created, sizeof(created));
    fputs("entry ", stdout);
    cli_print_text(stdout, e->id);
    putchar('\n');
    print_field("spiffe id", e->spiffe_id);
    print_values("selectors", e->selectors, e->n_selectors, "(none)");
    printf("  %-10s %lus\n", "ttl", (unsigned long)e->ttl_seconds);
    print_values("audiences", e->audiences, e->n_audiences, "(any)");
    if (*e->hint)
        print_field("hint", e->hint);
    printf("  %-10s %s, revision %llu\n", "created", created, (unsigned long long)e->revision);
}

static json_t *entry_json(const struct sockid_entry *e)
{
    json_t *id = cli_json_string(e->id, "entry id");
    json_t *spiffe_id = id ? cli_json_string(e->spiffe_id, "SPIFFE ID") : NULL;
    json_t *selectors =
        spiffe_id ? cli_json_strings(e->selectors, e->n_selectors, "selector") : NULL;
    json_t *audiences =
        selectors ? cli_json_strings(e->audiences, e->n_audiences, "audience") : NULL;
    json_t *hint = audiences ? cli_json_string(e->hint, "hint") : NULL;
    if (!hint) {
        json_decref(id);
        json_decref(spiffe_id);
        json_decref(selectors);
        json_decref(audiences);
        return NULL;
    }
    json_int_t revision = e->revision > (uint64_t)LLONG_MAX ? LLONG_MAX : (json_int_t)e->revision;
    /* "o" hands each value to the object, or releases it if packing fails. */
    json_t *obj = json_pack("{s:o, s:o, s:o, s:I, s:o, s:o, s:I, s:I}", "id", id, "spiffe_id",
                            spiffe_id, "selectors", selectors, "ttl_seconds",
                            (json_int_t)e->ttl_seconds, "audiences", audiences, "hint", hint,
                            "created_at", (json_int_t)e->created_at, "revision", revision);
    if (!obj)
        (void)cli_error(CLI_EXIT_REFUSED, "out of memory");
    return obj;
}

static int print_entry_json(const struct sockid_entry *e)
{
    json_t *obj = entry_json(e);
    return obj ? cli_json_print(obj) : CLI_EXIT_REFUSED;
}

/* ---- option parsing ---- */

/* Handles --help and what cli_option() handles. Returns -1 to go on
 * parsing, or an exit code. */
static int verb_option(int opt, char **argv, struct cli_global *g, const char *command,
                       const char *usage)
{
    if (opt == CLI_OPT_HELP) {
        printf("%s%s", usage, cli_admin_help);
        return CLI_EXIT_OK;
    }
    int r = cli_option(opt, argv, g, command);
    return r == CLI_EXIT_OK ? -1 : r;
}

static int nonempty(const char *command, const char *option, const char *arg)
{
    if (*arg == '\0')
        return cli_usage_error(command, "%s needs a value, not an empty string", option);
    return CLI_EXIT_OK;
}

/* Seconds, or a number with a unit: s, m, h or d. */
static int parse_ttl(const char *arg, uint32_t *ret)
{
    static const char command[] = "entry create";
    char *end;
    errno = 0;
    unsigned long long v = arg[0] >= '0' && arg[0] <= '9' ? strtoull(arg, &end, 10) : 0;
    if (arg[0] < '0' || arg[0] > '9' || errno != 0)
        goto bad;
    unsigned long long unit = 1;
    if (*end != '\0') {
        const char *units = "smhd";
        static const unsigned long long secs[] = {1, 60, 3600, 86400};
        const char *u = strchr(units, *end);
        if (!u || end[1] != '\0')
            goto bad;
        unit = secs[u - units];
    }
    if (v == 0)
        return cli_usage_error(command,
                               "--ttl must be at least 1 second (leave it out for the agent's "
                               "default)");
    if (v > UINT32_MAX / unit)
        goto bad;
    *ret = (uint32_t)(v * unit);
    return CLI_EXIT_OK;
bad:
    return cli_usage_error(command,
                           "--ttl takes a number of seconds, optionally with a unit (s, m, h or "
                           "d, e.g. 3600 or 1h), up to %lu seconds, not '%s'",
                           (unsigned long)UINT32_MAX, arg);
}

/* ---- verbs ---- */

static const char create_usage[] =
    "Usage: sockid entry create --spiffe-id ID --selector S [--selector S ...]\n"
    "                           [--ttl SECONDS] [--audience AUD ...] [--hint TEXT] [--json]\n"
    "\n"
    "Registers an entry: a workload whose selectors include every --selector may\n"
    "have the SPIFFE ID. Prints the new entry's id.\n"
    "\n"
    "Options:\n"
    "  --spiffe-id ID\n"
    "                 the identity, in the agent's trust domain\n"
    "                 (e.g. spiffe://example.org/web)\n"
    "  --selector S   a selector the workload must have, type:key:value\n"
    "                 (e.g. unix:uid:1000); 1 to 32 of them\n"
    "  --ttl SECONDS  the tokens' lifetime, in seconds or with a unit (s, m, h\n"
    "                 or d: 90s, 15m, 1h); default: the agent's default_ttl\n"
    "  --audience AUD\n"
    "                 an audience the identity's tokens may be for (repeatable);\n"
    "                 default: any\n"
    "  --hint TEXT    a note for operators\n"
    "  --json         print the whole entry as one JSON object\n";

static int entry_create(int argc, char **argv, struct cli_global *g)
{
    static const char command[] = "entry create";
    static const struct option options[] = {
        {"spiffe-id", required_argument, NULL, OPT_SPIFFE_ID},
        {"selector", required_argument, NULL, OPT_SELECTOR},
        {"ttl", required_argument, NULL, OPT_TTL},
        {"audience", required_argument, NULL, OPT_AUDIENCE},
        {"hint", required_argument, NULL, OPT_HINT},
        {"json", no_argument, NULL, OPT_JSON},
        CLI_ADMIN_OPTIONS,
        {0},
    };
    /* Each option takes at least its own argv slot, so argc bounds both. */
    const char **selectors = calloc((size_t)argc, sizeof(*selectors));
    const char **audiences = calloc((size_t)argc, sizeof(*audiences));
    struct sockid_entry_spec spec = {.selectors = selectors, .audiences = audiences};
    struct sockid_admin *a = NULL;
    struct sockid_entry *e = NULL;
    bool json = false;
    int rc = CLI_EXIT_OK, opt;
    if (!selectors || !audiences) {
        rc = cli_error(CLI_EXIT_REFUSED, "out of memory");
        goto out;
    }
    while (rc == CLI_EXIT_OK && (opt = cli_getopt(argc, argv, options)) != -1) {
        switch (opt) {
        case OPT_SPIFFE_ID:
            if (spec.spiffe_id)
                rc = cli_usage_error(command,
                                     "--spiffe-id is given twice, but an entry has one SPIFFE ID");
            else if ((rc = nonempty(command, "--spiffe-id", optarg)) == CLI_EXIT_OK)
                spec.spiffe_id = optarg;
            break;
        case OPT_SELECTOR:
            if ((rc = nonempty(command, "--selector", optarg)) == CLI_EXIT_OK)
                selectors[spec.n_selectors++] = optarg;
            break;
        case OPT_TTL:
            rc = parse_ttl(optarg, &spec.ttl_seconds);
            break;
        case OPT_AUDIENCE:
            if ((rc = nonempty(command, "--audience", optarg)) == CLI_EXIT_OK)
                audiences[spec.n_audiences++] = optarg;
            break;
        case OPT_HINT:
            spec.hint = optarg; /* empty: no hint */
            break;
        case OPT_JSON:
            json = true;
            break;
        default: {
            int r = verb_option(opt, argv, g, command, create_usage);
            if (r >= 0)
                rc = r;
            if (r == CLI_EXIT_OK)
                goto out;
        }
        }
    }
    if (rc != CLI_EXIT_OK)
        goto out;
    if (optind < argc) {
        rc = cli_usage_error(command, "unexpected argument '%s'", argv[optind]);
        goto out;
    }
    if (!spec.spiffe_id || spec.n_selectors == 0) {
        rc = cli_usage_error(command, "%s",
                             !spec.spiffe_id ? "an entry needs --spiffe-id"
                                             : "an entry needs at least one --selector");
        goto out;
    }

    if ((rc = cli_admin_open(g, &a)) != CLI_EXIT_OK)
        goto out;
    int r = sockid_admin_create_entry(a, &spec, &e);
    if (r < 0) {
        rc = cli_admin_fail(a, r);
        goto out;
    }
    if (json) {
        rc = print_entry_json(e);
    } else {
        cli_print_text(stdout, e->id);
        putchar('\n');
    }
out:
    e = sockid_entry_free(e);
    a = sockid_admin_close(a);
    free(selectors);
    free(audiences);
    return rc;
}

static const char list_usage[] =
    "Usage: sockid entry list [--spiffe-id ID] [--selector S] [--json]\n"
    "\n"
    "Lists the registered entries, oldest first: each entry's id, SPIFFE ID,\n"
    "selectors, token lifetime, allowed audiences, hint and creation time (UTC).\n"
    "Characters that could mislead a terminal are shown as \\xHH; --json gives the\n"
    "exact values.\n"
    "\n"
    "Options:\n"
    "  --spiffe-id ID\n"
    "                 only the entries with exactly this SPIFFE ID\n"
    "  --selector S   only the entries that hold this selector\n"
    "  --json         print one JSON array of entry objects: id, spiffe_id,\n"
    "                 selectors, ttl_seconds, audiences, hint, created_at (unix\n"
    "                 seconds), revision\n";

static int entry_list(int argc, char **argv, struct cli_global *g)
{
    static const char command[] = "entry list";
    static const struct option options[] = {
        {"spiffe-id", required_argument, NULL, OPT_SPIFFE_ID},
        {"selector", required_argument, NULL, OPT_SELECTOR},
        {"json", no_argument, NULL, OPT_JSON},
        CLI_ADMIN_OPTIONS,
        {0},
    };
    struct sockid_entry_filter filter = {0};
    bool json = false;
    int opt, rc;
    while ((opt = cli_getopt(argc, argv, options)) != -1) {
        switch (opt) {
        case OPT_SPIFFE_ID:
            if (filter.spiffe_id)
                return cli_usage_error(command,
                                       "--spiffe-id is given twice, but the list filters by one");
            if ((rc = nonempty(command, "--spiffe-id", optarg)) != CLI_EXIT_OK)
                return rc;
            filter.spiffe_id = optarg;
            break;
        case OPT_SELECTOR:
            if (filter.selector)
                return cli_usage_error(command,
                                       "--selector is given twice, but the list filters by one");
            if ((rc = nonempty(command, "--selector", optarg)) != CLI_EXIT_OK)
                return rc;
            filter.selector = optarg;
            break;
        case OPT_JSON:
            json = true;
            break;
        default:
            if ((rc = verb_option(opt, argv, g, command, list_usage)) >= 0)
                return rc;
        }
    }
    if (optind < argc)
        return cli_usage_error(command, "unexpected argument '%s'", argv[optind]);

    struct sockid_admin *a;
    if ((rc = cli_admin_open(g, &a)) != CLI_EXIT_OK)
        return rc;
    struct sockid_entry_list *l;
    int r = sockid_admin_list_all_entries(a, &filter, &l);
    if (r < 0) {
        rc = cli_admin_fail(a, r);
        a = sockid_admin_close(a);
        return rc;
    }
    a = sockid_admin_close(a);

    rc = CLI_EXIT_OK;
    if (json) {
        json_t *arr = json_array();
        if (!arr)
            rc = cli_error(CLI_EXIT_REFUSED, "out of memory");
        for (size_t i = 0; arr && i < l->n_entries; i++) {
            json_t *obj = entry_json(l->entries[i]);
            if (!obj || json_array_append_new(arr, obj) < 0) {
                json_decref(arr);
                arr = NULL;
                rc = CLI_EXIT_REFUSED;
            }
        }
        if (arr)
            rc = cli_json_print(arr);
    } else if (l->n_entries == 0) {
        printf("(no entries)\n");
    } else {
        for (size_t i = 0; i < l->n_entries; i++) {
            if (i > 0)
                putchar('\n');
            print_entry(l->entries[i]);
        }
    }
    l = sockid_entry_list_free(l);
    return rc;
}

/* Parses the options of a verb that takes one entry id, and the id. json
 * is NULL for a verb without --json: the option table then starts past it.
 * Returns -1 with *ret_id set to go on, or an exit code. */
static int parse_id_verb(int argc, char **argv, struct cli_global *g, const char *command,
                         const char *usage, bool *json, const char **ret_id)
{
    static const struct option with_json[] = {
        {"json", no_argument, NULL, OPT_JSON},
        CLI_ADMIN_OPTIONS,
        {0},
    };
    int opt, rc;
    while ((opt = cli_getopt(argc, argv, json ? with_json : with_json + 1)) != -1) {
        if (opt == OPT_JSON)
            *json = true;
        else if ((rc = verb_option(opt, argv, g, command, usage)) >= 0)
            return rc;
    }
    if (optind >= argc)
        return cli_usage_error(command, "no entry id given");
    if (optind + 1 < argc)
        return cli_usage_error(command, "unexpected argument '%s' after the entry id",
                               argv[optind + 1]);
    if (*argv[optind] == '\0')
        return cli_usage_error(command, "the entry id is empty");
    *ret_id = argv[optind];
    return -1;
}

static const char show_usage[] = "Usage: sockid entry show ID [--json]\n"
                                 "\n"
                                 "Shows one entry, as 'sockid entry list' does.\n"
                                 "\n"
                                 "Options:\n"
                                 "  --json         print the entry as one JSON object\n";

static int entry_show(int argc, char **argv, struct cli_global *g)
{
    bool json = false;
    const char *id;
    int rc = parse_id_verb(argc, argv, g, "entry show", show_usage, &json, &id);
    if (rc >= 0)
        return rc;

    struct sockid_admin *a;
    if ((rc = cli_admin_open(g, &a)) != CLI_EXIT_OK)
        return rc;
    struct sockid_entry *e;
    int r = sockid_admin_get_entry(a, id, &e);
    if (r < 0) {
        rc = cli_admin_fail(a, r);
        a = sockid_admin_close(a);
        return rc;
    }
    a = sockid_admin_close(a);
    if (json) {
        rc = print_entry_json(e);
    } else {
        print_entry(e);
        rc = CLI_EXIT_OK;
    }
    e = sockid_entry_free(e);
    return rc;
}

static const char delete_usage[] =
    "Usage: sockid entry delete ID\n"
    "\n"
    "Deletes one entry. Workloads stop receiving new tokens for it at once; tokens\n"
    "already issued stay valid until they expire. Prints nothing on success.\n"
    "\n"
    "Options:\n";

static int entry_delete(int argc, char **argv, struct cli_global *g)
{
    const char *id;
    int rc = parse_id_verb(argc, argv, g, "entry delete", delete_usage, NULL, &id);
    if (rc >= 0)
        return rc;

    struct sockid_admin *a;
    if ((rc = cli_admin_open(g, &a)) != CLI_EXIT_OK)
        return rc;
    int r = sockid_admin_delete_entry(a, id);
    rc = r < 0 ? cli_admin_fail(a, r) : CLI_EXIT_OK;
    a = sockid_admin_close(a);
    return rc;
}

/* ---- dispatch ---- */

static const struct cli_command verbs[] = {
    {"create", entry_create, "register an entry; prints its id"},
    {"list", entry_list, "list the entries, optionally by SPIFFE ID or selector"},
    {"show", entry_show, "show one entry"},
    {"delete", entry_delete, "delete one entry"},
};

int cmd_entry(int argc, char **argv, struct cli_global *g)
{
    static const struct cli_group group = {
        .name = "entry",
        .about = "Manages registration entries on the agent's admin socket. An entry gives a\n"
                 "SPIFFE ID to every workload whose selectors include all of the entry's\n"
                 "selectors. Needs a user that the agent's admin_uids or admin_gids allow.\n",
        .verbs = verbs,
        .n_verbs = sizeof(verbs) / sizeof(verbs[0]),
    };
    return cli_run_group(&group, argc, argv, g);
}
