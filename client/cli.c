/* What the sockid CLI's subcommands share: option handling, opening the
 * client, exit codes, and output that the agent's data cannot subvert. */
#include "cli.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "utf8.h"

#define CLI_TIMEOUT_MAX_MS (24 * 3600 * 1000)

#define CLI_HELP_SOCKET                                                                            \
    "  --socket PATH  the agent's workload socket (default: $" SOCKID_AGENT_SOCKET_ENV ",\n"       \
    "                 else " SOCKID_DEFAULT_AGENT_SOCKET ")\n"
#define CLI_HELP_ADMIN_SOCKET                                                                      \
    "  --admin-socket PATH\n"                                                                      \
    "                 the agent's admin socket (default: $" SOCKID_ADMIN_SOCKET_ENV ",\n"          \
    "                 else " SOCKID_DEFAULT_ADMIN_SOCKET ")\n"
#define CLI_HELP_COMMON                                                                            \
    "  --timeout MS   how long to wait for the agent, in milliseconds (default: 5000)\n"           \
    "  --help         print this help and exit\n"

const char cli_global_help[] = CLI_HELP_SOCKET CLI_HELP_COMMON;
const char cli_admin_help[] = CLI_HELP_ADMIN_SOCKET CLI_HELP_COMMON;
const char cli_admin_socket_help[] = CLI_HELP_ADMIN_SOCKET;

int cli_getopt(int argc, char **argv, const struct option *options)
{
    opterr = 0;
    /* ':' first: a missing argument is reported as ':' rather than '?'. */
    return getopt_long(argc, argv, ":h", options, NULL);
}

/* Prints "sockid: " and the message as one sentence: a final period is added
 * when the message has none. */
static void cli_vprint(const char *fmt, va_list ap)
{
    char buf[1024];
    (void)vsnprintf(buf, sizeof(buf), fmt, ap);
    size_t n = strlen(buf);
    bool ended = n > 0 && strchr(".!?", buf[n - 1]);
    fprintf(stderr, "sockid: %s%s\n", buf, ended ? "" : ".");
}

int cli_error(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    cli_vprint(fmt, ap);
    va_end(ap);
    return code;
}

int cli_usage_error(const char *command, const char *fmt, ...)
{
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    (void)vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    return cli_error(CLI_EXIT_USAGE, "%s; run 'sockid%s%s --help' for usage", what,
                     command ? " " : "", command ? command : "");
}

static int cli_parse_timeout(const char *arg, const char *command, int *ret)
{
    char *end;
    errno = 0;
    long v = strtol(arg, &end, 10);
    if (errno != 0 || end == arg || *end != '\0' || v < 1 || v > CLI_TIMEOUT_MAX_MS)
        return cli_usage_error(command, "--timeout takes milliseconds from 1 to %d, not '%s'",
                               CLI_TIMEOUT_MAX_MS, arg);
    *ret = (int)v;
    return CLI_EXIT_OK;
}

int cli_option(int opt, char **argv, struct cli_global *g, const char *command)
{
    const char *arg = argv[optind - 1];
    switch (opt) {
    case CLI_OPT_SOCKET:
        if (*optarg == '\0')
            return cli_usage_error(command, "--socket needs a path, not an empty string");
        g->socket = optarg;
        return CLI_EXIT_OK;
    case CLI_OPT_ADMIN_SOCKET:
        if (*optarg == '\0')
            return cli_usage_error(command, "--admin-socket needs a path, not an empty string");
        g->admin_socket = optarg;
        return CLI_EXIT_OK;
    case CLI_OPT_TIMEOUT:
        return cli_parse_timeout(optarg, command, &g->timeout_ms);
    case ':':
        return cli_usage_error(command, "option '%s' needs an argument", arg);
    default:
        /* getopt_long leaves optopt 0 for an unknown long option, the
         * option's value for a long option given an argument it does not
         * take, and the character for an unknown short one. Subcommand
         * options are long-only values from CLI_OPT_FIRST_FREE, so the
         * three cannot be confused. */
        if (optopt == 0)
            return cli_usage_error(command, "unknown option '%s'", arg);
        if (optopt == CLI_OPT_HELP || optopt >= CLI_OPT_SOCKET)
            return cli_usage_error(command, "option '%s' takes no argument", arg);
        return cli_usage_error(command, "unknown option '-%c'", optopt);
    }
}

int cli_parse_plain(int argc, char **argv, struct cli_global *g, const char *command,
                    const char *usage, bool admin, bool *json)
{
    enum { OPT_JSON = CLI_OPT_FIRST_FREE };
    static const struct option workload_options[] = {
        {"json", no_argument, NULL, OPT_JSON},
        CLI_GLOBAL_OPTIONS,
        {0},
    };
    static const struct option admin_options[] = {
        {"json", no_argument, NULL, OPT_JSON},
        CLI_ADMIN_OPTIONS,
        {0},
    };
    /* Without --json, the same tables from their second row. */
    const struct option *options = admin ? admin_options : workload_options;
    if (!json)
        options++;
    int opt;
    while ((opt = cli_getopt(argc, argv, options)) != -1) {
        if (opt == OPT_JSON) {
            *json = true;
            continue;
        }
        if (opt == CLI_OPT_HELP) {
            printf("%s%s", usage, admin ? cli_admin_help : cli_global_help);
            return CLI_EXIT_OK;
        }
        int r = cli_option(opt, argv, g, command);
        if (r != CLI_EXIT_OK)
            return r;
    }
    if (optind < argc)
        return cli_usage_error(command, "unexpected argument '%s'", argv[optind]);
    return CLI_GO_ON;
}

static void cli_group_usage(const struct cli_group *grp)
{
    printf("Usage: sockid %s [OPTIONS] COMMAND [ARGS]\n"
           "\n"
           "%s"
           "\n"
           "Commands:\n",
           grp->name, grp->about);
    for (size_t i = 0; i < grp->n_verbs; i++)
        printf("  %-8s %s\n", grp->verbs[i].name, grp->verbs[i].summary);
    printf("\n"
           "Options (also accepted after the command):\n"
           "%s"
           "\n"
           "Run 'sockid %s COMMAND --help' for the options of a command.\n",
           cli_admin_help, grp->name);
}

int cli_run_group(const struct cli_group *grp, int argc, char **argv, struct cli_global *g)
{
    static const struct option options[] = {
        CLI_ADMIN_OPTIONS,
        {0},
    };
    opterr = 0;
    int opt;
    /* '+': stop at the verb; what follows is the verb's. */
    while ((opt = getopt_long(argc, argv, "+:h", options, NULL)) != -1) {
        if (opt == CLI_OPT_HELP) {
            cli_group_usage(grp);
            return CLI_EXIT_OK;
        }
        int r = cli_option(opt, argv, g, grp->name);
        if (r != CLI_EXIT_OK)
            return r;
    }
    if (optind >= argc) {
        char names[256] = "";
        size_t len = 0;
        for (size_t i = 0; i < grp->n_verbs && len < sizeof(names); i++) {
            const char *sep = i == 0 ? "" : i + 1 == grp->n_verbs ? " or " : ", ";
            int n = snprintf(names + len, sizeof(names) - len, "%s%s", sep, grp->verbs[i].name);
            len += n > 0 ? (size_t)n : 0;
        }
        return cli_usage_error(grp->name, "no command given (%s)", names);
    }
    const char *name = argv[optind];
    for (size_t i = 0; i < grp->n_verbs; i++) {
        if (strcmp(grp->verbs[i].name, name) == 0) {
            argc -= optind;
            argv += optind;
            optind = 0; /* glibc: start afresh on the verb's argv */
            return grp->verbs[i].run(argc, argv, g);
        }
    }
    return cli_usage_error(grp->name, "unknown command '%s'", name);
}

int cli_exit_code(int sockid_code)
{
    switch (sockid_code) {
    case SOCKID_OK:
        return CLI_EXIT_OK;
    case SOCKID_EUNREACHABLE:
    case SOCKID_ETIMEDOUT:
    case SOCKID_EUNAVAILABLE: /* reachable, but not serving: retry later, like the above */
        return CLI_EXIT_UNREACHABLE;
    case SOCKID_EUSAGE:
        return CLI_EXIT_USAGE;
    default:
        return CLI_EXIT_REFUSED;
    }
}

int cli_open(const struct cli_global *g, struct sockid_client **ret)
{
    char err[SOCKID_ERRBUF_SIZE];
    int r = sockid_client_open_errbuf(g->socket, g->timeout_ms, ret, err, sizeof(err));
    if (r < 0)
        return cli_error(cli_exit_code(r), "%s", err[0] ? err : sockid_strerror(r));
    return CLI_EXIT_OK;
}

int cli_admin_open(const struct cli_global *g, struct sockid_admin **ret)
{
    char err[SOCKID_ERRBUF_SIZE];
    int r = sockid_admin_open_errbuf(g->admin_socket, g->timeout_ms, ret, err, sizeof(err));
    if (r < 0)
        return cli_error(cli_exit_code(r), "%s", err[0] ? err : sockid_strerror(r));
    return CLI_EXIT_OK;
}

int cli_fail(const struct sockid_client *c, int r)
{
    const char *msg = sockid_client_message(c);
    return cli_error(cli_exit_code(r), "%s", *msg ? msg : sockid_strerror(r));
}

int cli_admin_fail(const struct sockid_admin *a, int r)
{
    const char *msg = sockid_admin_message(a);
    return cli_error(cli_exit_code(r), "%s", *msg ? msg : sockid_strerror(r));
}

void cli_print_text(FILE *f, const char *s)
{
    const uint8_t *p = (const uint8_t *)s;
    size_t n = strlen(s);
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t l = utf8_decode(p + i, n - i, &cp);
        if (l == 0 || utf8_is_unsafe(cp)) {
            for (size_t j = 0; j < (l ? l : 1); j++)
                fprintf(f, "\\x%02x", p[i + j]);
            i += l ? l : 1;
            continue;
        }
        fwrite(p + i, 1, l, f);
        i += l;
    }
}

static bool cli_utf8_valid(const char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t l = utf8_decode((const uint8_t *)s + i, n - i, &cp);
        if (l == 0)
            return false;
        i += l;
    }
    return true;
}

json_t *cli_json_string(const char *s, const char *what)
{
    size_t n = strlen(s);
    if (!cli_utf8_valid(s, n)) {
        fprintf(stderr, "sockid: the %s '", what);
        cli_print_text(stderr, s);
        fprintf(stderr, "' is not valid UTF-8, so JSON cannot carry it exactly: run the command "
                        "without --json.\n");
        return NULL;
    }
    json_t *j = json_stringn(s, n);
    if (!j)
        (void)cli_error(CLI_EXIT_REFUSED, "out of memory");
    return j;
}

json_t *cli_json_strings(char *const *items, size_t n, const char *what)
{
    json_t *a = json_array();
    if (!a) {
        (void)cli_error(CLI_EXIT_REFUSED, "out of memory");
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *s = cli_json_string(items[i], what);
        if (!s || json_array_append_new(a, s) < 0) {
            json_decref(a);
            return NULL;
        }
    }
    return a;
}

int cli_json_print(json_t *obj)
{
    if (!obj)
        return CLI_EXIT_REFUSED;
    char *s = json_dumps(obj, JSON_COMPACT);
    json_decref(obj);
    if (!s)
        return cli_error(CLI_EXIT_REFUSED, "out of memory");
    puts(s);
    free(s);
    return CLI_EXIT_OK;
}
