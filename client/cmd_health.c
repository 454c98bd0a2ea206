/* sockid health: does the agent answer, and with what? */
#include "cli.h"

#include <limits.h>
#include <stdbool.h>

static const char usage[] =
    "Usage: sockid health [--json]\n"
    "\n"
    "Checks that the agent answers on its socket, and shows its version, uptime,\n"
    "attestor plugins and the kernel features it uses against PID reuse.\n"
    "\n"
    "Options:\n"
    "  --json         print one JSON object instead of a line of text\n";

static int print_json(const struct sockid_health *h)
{
    json_t *version = cli_json_string(h->version, "agent version");
    if (!version)
        return CLI_EXIT_REFUSED;
    json_int_t uptime = h->uptime_ms > (uint64_t)LLONG_MAX ? LLONG_MAX : (json_int_t)h->uptime_ms;
    json_t *obj = json_pack("{s:s, s:o, s:I, s:I, s:b, s:b}", "status", "ok", "version", version,
                            "uptime_ms", uptime, "attestors", (json_int_t)h->attestors,
                            "peer_pidfd", h->peer_pidfd, "pidfd_get_info", h->pidfd_get_info);
    if (!obj)
        return cli_error(CLI_EXIT_REFUSED, "out of memory");
    return cli_json_print(obj);
}

int cmd_health(int argc, char **argv, struct cli_global *g)
{
    bool json = false;
    int rc = cli_parse_plain(argc, argv, g, "health", usage, false, &json);
    if (rc != CLI_GO_ON)
        return rc;

    struct sockid_client *c;
    rc = cli_open(g, &c);
    if (rc != CLI_EXIT_OK)
        return rc;
    struct sockid_health *h;
    int r = sockid_health(c, &h);
    if (r < 0) {
        rc = cli_fail(c, r);
        c = sockid_client_close(c);
        return rc;
    }
    c = sockid_client_close(c);

    if (json) {
        rc = print_json(h);
    } else {
        fputs("ok: sockid-agent ", stdout);
        cli_print_text(stdout, h->version);
        printf(", up %llus, attestors %u, SO_PEERPIDFD %s, PIDFD_GET_INFO %s\n",
               (unsigned long long)(h->uptime_ms / 1000), h->attestors,
               h->peer_pidfd ? "yes" : "no", h->pidfd_get_info ? "yes" : "no");
    }
    h = sockid_health_free(h);
    return rc;
}
