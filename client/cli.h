/* The sockid CLI: the subcommand table's entry type and what every
 * subcommand shares (global options, opening the client, exit codes, output).
 *
 * Adding a subcommand: write cmd_NAME.c with cmd_NAME(), declare it below,
 * add one line to the table in sockid.c and the file to CMakeLists.txt. */
#ifndef SOCKID_CLI_H
#define SOCKID_CLI_H

#include <getopt.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include <sockid/client.h>

/* Exit codes (DESIGN §1). */
enum cli_exit {
    CLI_EXIT_OK = 0,
    CLI_EXIT_REFUSED = 1, /* refused or invalid */
    CLI_EXIT_USAGE = 2,
    CLI_EXIT_UNREACHABLE = 3, /* no agent, or it did not answer in time */
};

#define CLI_DEFAULT_TIMEOUT_MS 5000

/* Options that may come before the subcommand or among its own options. */
struct cli_global {
    const char *socket;       /* NULL: $SOCKID_AGENT_SOCKET, else the default */
    const char *admin_socket; /* NULL: $SOCKID_ADMIN_SOCKET, else the default */
    int timeout_ms;
};

struct cli_command {
    const char *name;
    int (*run)(int argc, char **argv, struct cli_global *g);
    const char *summary;
};

enum {
    CLI_OPT_HELP = 'h',
    CLI_OPT_SOCKET = 0x100,
    CLI_OPT_TIMEOUT,
    CLI_OPT_ADMIN_SOCKET,
    CLI_OPT_FIRST_FREE, /* a subcommand's own options: long-only, from here */
};

/* clang-format off */
#define CLI_GLOBAL_OPTIONS                                   \
    {"socket", required_argument, NULL, CLI_OPT_SOCKET},     \
    {"timeout", required_argument, NULL, CLI_OPT_TIMEOUT},   \
    {"help", no_argument, NULL, CLI_OPT_HELP}

/* The same for the commands that speak to the admin socket. */
#define CLI_ADMIN_OPTIONS                                           \
    {"admin-socket", required_argument, NULL, CLI_OPT_ADMIN_SOCKET}, \
    {"timeout", required_argument, NULL, CLI_OPT_TIMEOUT},           \
    {"help", no_argument, NULL, CLI_OPT_HELP}
/* clang-format on */

/* The help text's lines about the global options: those of the workload
 * commands, those of the admin commands, and the --admin-socket line alone. */
extern const char cli_global_help[];
extern const char cli_admin_help[];
extern const char cli_admin_socket_help[];

/* getopt_long over a subcommand's argv (argv[0] is its name), with GNU
 * argument permutation and no messages of getopt's own. */
int cli_getopt(int argc, char **argv, const struct option *options);

/* Handles what a subcommand's own switch does not: the global options,
 * unknown options and missing arguments. Returns CLI_EXIT_OK to go on
 * parsing, or an exit code after printing why. */
int cli_option(int opt, char **argv, struct cli_global *g, const char *command);

/* What cli_parse_plain returns when the command should go on. */
#define CLI_GO_ON (-1)

/* Parses the options of a command that takes no argument and no option of
 * its own but --json (when json is not NULL): whoami, health, status,
 * metrics, key rotate. admin: the admin socket's global options, else the
 * workload socket's. --help prints usage and the global options' help.
 * Returns CLI_GO_ON, or the exit code to return now (after --help, or
 * after printing an error). */
int cli_parse_plain(int argc, char **argv, struct cli_global *g, const char *command,
                    const char *usage, bool admin, bool *json);

/* A command made of verbs (sockid entry, sockid key): the admin socket's
 * global options, then a verb, which parses the rest. */
struct cli_group {
    const char *name;  /* "entry" */
    const char *about; /* the usage's paragraph, lines ending in '\n' */
    const struct cli_command *verbs;
    size_t n_verbs;
};

/* Runs the verb argv names, with the group's options before it applied. */
int cli_run_group(const struct cli_group *grp, int argc, char **argv, struct cli_global *g);

/* Prints "sockid: <what>; run 'sockid [command] --help' for usage." and
 * returns CLI_EXIT_USAGE. command may be NULL for the tool itself. */
__attribute__((format(printf, 2, 3))) int cli_usage_error(const char *command, const char *fmt,
                                                          ...);

/* Prints "sockid: <what>" to stderr and returns code. */
__attribute__((format(printf, 2, 3))) int cli_error(int code, const char *fmt, ...);

/* Opens the client, or prints why not and returns the exit code. */
int cli_open(const struct cli_global *g, struct sockid_client **ret);

/* The same for the admin socket. */
int cli_admin_open(const struct cli_global *g, struct sockid_admin **ret);

/* The exit code for a libsockid error code. */
int cli_exit_code(int sockid_code);

/* Prints the last error of c and returns the exit code for r. */
int cli_fail(const struct sockid_client *c, int r);
int cli_admin_fail(const struct sockid_admin *a, int r);

/* Writes s to f with control characters, bidirectional overrides and
 * malformed UTF-8 escaped as \xHH, so that what the agent sends cannot
 * forge lines or drive the terminal. */
void cli_print_text(FILE *f, const char *s);

/* A JSON string for s, or NULL after printing why (s is not valid UTF-8, so
 * JSON cannot carry it exactly; or out of memory). what names s. */
json_t *cli_json_string(const char *s, const char *what);

/* A JSON array of n strings, or NULL after printing why. */
json_t *cli_json_strings(char *const *items, size_t n, const char *what);

/* Prints obj on one line to stdout and releases it; NULL (a failed build)
 * prints nothing. Returns the exit code. */
int cli_json_print(json_t *obj);

/* Subcommands. */
int cmd_whoami(int argc, char **argv, struct cli_global *g);
int cmd_health(int argc, char **argv, struct cli_global *g);
int cmd_entry(int argc, char **argv, struct cli_global *g);
int cmd_fetch(int argc, char **argv, struct cli_global *g);
int cmd_bundle(int argc, char **argv, struct cli_global *g);
int cmd_validate(int argc, char **argv, struct cli_global *g);
int cmd_key(int argc, char **argv, struct cli_global *g);
int cmd_status(int argc, char **argv, struct cli_global *g);
int cmd_metrics(int argc, char **argv, struct cli_global *g);

#endif
