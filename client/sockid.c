/* sockid: the command-line client of the sockid agent. Global options, then
 * a subcommand from the table below, which parses the rest. */
#include "cli.h"

#include <errno.h>
#include <string.h>

static const struct cli_command commands[] = {
    {"fetch", cmd_fetch, "fetch an identity token for this process, for given audiences"},
    {"bundle", cmd_bundle, "print the key set (JWKS) that verifies the agent's tokens"},
    {"validate", cmd_validate, "check a token for an audience: exit 0 valid, 1 invalid"},
    {"whoami", cmd_whoami, "show the selectors and identities the agent sees for this process"},
    {"health", cmd_health, "check that the agent answers, and show its version and features"},
    {"entry", cmd_entry, "register, list, show and delete entries (admin socket)"},
    {"key", cmd_key, "rotate the agent's signing key (admin socket)"},
    {"status", cmd_status, "show what the agent is doing: counters, latency, keys (admin socket)"},
    {"metrics", cmd_metrics, "print the agent's metrics as Prometheus text (admin socket)"},
};

enum { OPT_VERSION = CLI_OPT_FIRST_FREE };

static void usage(FILE *f)
{
    fprintf(f, "Usage: sockid [OPTIONS] COMMAND [ARGS]\n"
               "\n"
               "Asks the local sockid agent who the kernel says this process is, and for the\n"
               "identities that earns. Operators register which selectors earn which identity\n"
               "with 'sockid entry'.\n"
               "\n"
               "Commands:\n");
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        fprintf(f, "  %-8s %s\n", commands[i].name, commands[i].summary);
    fprintf(f,
            "\n"
            "Options (also accepted after the command):\n"
            "%s"
            "%s"
            "  --version      print the version and exit\n"
            "\n"
            "Run 'sockid COMMAND --help' for the options of a command.\n"
            "\n"
            "Exit status: 0 success; 1 refused or invalid; 2 usage error;\n"
            "3 agent unreachable, unavailable or timed out.\n",
            cli_admin_socket_help, cli_global_help);
}

int main(int argc, char **argv)
{
    static const struct option options[] = {
        {"version", no_argument, NULL, OPT_VERSION},
        {"admin-socket", required_argument, NULL, CLI_OPT_ADMIN_SOCKET},
        CLI_GLOBAL_OPTIONS,
        {0},
    };
    struct cli_global g = {
        .socket = NULL, .admin_socket = NULL, .timeout_ms = CLI_DEFAULT_TIMEOUT_MS};

    opterr = 0;
    int opt;
    /* '+': stop at the command's name; what follows is the command's. */
    while ((opt = getopt_long(argc, argv, "+:h", options, NULL)) != -1) {
        switch (opt) {
        case CLI_OPT_HELP:
            usage(stdout);
            return CLI_EXIT_OK;
        case OPT_VERSION:
            printf("sockid %s\n", SOCKID_VERSION);
            return CLI_EXIT_OK;
        default: {
            int r = cli_option(opt, argv, &g, NULL);
            if (r != CLI_EXIT_OK)
                return r;
        }
        }
    }
    if (optind >= argc)
        return cli_usage_error(NULL, "no command given");

    const char *name = argv[optind];
    const struct cli_command *cmd = NULL;
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (strcmp(commands[i].name, name) == 0)
            cmd = &commands[i];
    if (!cmd)
        return cli_usage_error(NULL, "unknown command '%s'", name);

    argc -= optind;
    argv += optind;
    optind = 0; /* glibc: start afresh on the command's argv */
    int rc = cmd->run(argc, argv, &g);

    /* Output that did not reach its destination is a failure, not a success. */
    if (fflush(stdout) != 0 || ferror(stdout)) {
        int e = errno;
        if (rc == CLI_EXIT_OK)
            rc = cli_error(CLI_EXIT_REFUSED, "cannot write the output: %s", strerror(e));
    }
    return rc;
}
