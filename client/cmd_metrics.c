/* sockid metrics: the agent's counters as Prometheus text, on its admin
 * socket. */
#include "cli.h"

#include <string.h>

static const char usage[] =
    "Usage: sockid metrics\n"
    "\n"
    "Prints the agent's counters, gauges and latency histograms in the Prometheus\n"
    "text exposition format (version 0.0.4): the numbers 'sockid status' shows,\n"
    "with sockid_ names and seconds as the unit of time. The agent can also serve\n"
    "them to a scraper over HTTP on a socket of its own (metrics_socket in its\n"
    "config), e.g. curl --unix-socket PATH http://localhost/metrics. Needs a user\n"
    "that the agent's admin_uids or admin_gids allow.\n"
    "\n"
    "Options:\n";

/* Line by line, so that a line feed stays one while anything else that
 * could drive the terminal is escaped. */
static void print_lines(const char *text)
{
    const char *p = text;
    while (*p) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        char line[4096];
        if (n < sizeof(line)) {
            memcpy(line, p, n);
            line[n] = '\0';
            cli_print_text(stdout, line);
        } else {
            /* No family's line is this long; show it all the same. */
            for (size_t i = 0; i < n; i += sizeof(line) - 1) {
                size_t k = n - i < sizeof(line) - 1 ? n - i : sizeof(line) - 1;
                memcpy(line, p + i, k);
                line[k] = '\0';
                cli_print_text(stdout, line);
            }
        }
        putchar('\n');
        p += n + (nl ? 1 : 0);
    }
}

int cmd_metrics(int argc, char **argv, struct cli_global *g)
{
    int rc = cli_parse_plain(argc, argv, g, "metrics", usage, true, NULL);
    if (rc != CLI_GO_ON)
        return rc;

    struct sockid_admin *a;
    rc = cli_admin_open(g, &a);
    if (rc != CLI_EXIT_OK)
        return rc;
    struct sockid_metrics *m;
    int r = sockid_admin_metrics(a, &m);
    if (r < 0) {
        rc = cli_admin_fail(a, r);
        a = sockid_admin_close(a);
        return rc;
    }
    a = sockid_admin_close(a);
    print_lines(m->text);
    m = sockid_metrics_free(m);
    return CLI_EXIT_OK;
}
