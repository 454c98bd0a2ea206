/* The config parser (agent/config.c) on arbitrary bytes.
 *
 * Besides what the sanitizers catch, it checks what config.h promises: an
 * error leaves the config exactly as it was, a success leaves one that keeps
 * the rules between keys, loading a good file twice is the same as once, and
 * the message is always one terminated line. It also checks that config.c's
 * reader and inih never disagree about which section a key is in. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_valid(const struct config *cfg)
{
    size_t i, j;

    if (cfg->request_memory < cfg->max_frame ||
        cfg->max_connections_per_uid > cfg->max_connections || cfg->socket_mode > 0777 ||
        cfg->n_attestors > 32 || cfg->socket_path[0] != '/' || cfg->admin_socket_path[0] != '/' ||
        cfg->data_dir[0] != '/' || (cfg->plugin_dir && cfg->plugin_dir[0] != '/') ||
        strcmp(cfg->socket_path, cfg->admin_socket_path) == 0 || !cfg->trust_domain[0])
        abort();
    for (i = 0; i < cfg->n_attestors; i++) {
        const struct config_attestor *a = &cfg->attestors[i];
        if (a->n > 64 || config_attestor(cfg, a->name) != a)
            abort();
        for (j = 0; j < a->n; j++)
            if (!a->keys[j][0] || strlen(a->values[j]) > 4096)
                abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct config *cfg = NULL;
    char err[CONFIG_ERR_MAX];
    uint32_t max_frame;
    char *buf;
    int r;

    if (config_new(&cfg) < 0)
        return 0;
    max_frame = cfg->max_frame;
    memset(err, 'x', sizeof(err));
    /* An exact-size copy with no NUL after it: a read past size is an ASan
     * report, not a lucky terminator. */
    buf = malloc(size ? size : 1);
    if (!buf)
        abort();
    memcpy(buf, data, size);
    r = config_load_buffer(cfg, "fuzz.conf", buf, size, err, sizeof(err));
    if (r < 0) {
        if (!memchr(err, '\0', sizeof(err)) || strchr(err, '\n') || cfg->max_frame != max_frame ||
            cfg->n_attestors != 0)
            abort();
        /* config_ini.c's reader and inih disagreed about a line: a gap in config.c's
         * model of inih, which could let a line through unchecked. */
        if (strncmp(err, "fuzz.conf:", 10) == 0) {
            const char *m = err + 10;
            while (*m >= '0' && *m <= '9')
                m++;
            if (strncmp(m, ": internal error:", 17) == 0)
                abort();
        }
    }
    check_valid(cfg);
    if (r == 0) {
        /* The same file again, as a second config file would be applied: its
         * sections replace their earlier selves, so it must succeed again
         * and change nothing. */
        size_t n_attestors = cfg->n_attestors;
        if (config_load_buffer(cfg, "fuzz.conf", buf, size, err, sizeof(err)) != 0 ||
            cfg->n_attestors != n_attestors)
            abort();
        check_valid(cfg);
    }
    free(buf);
    config_free(cfg);
    return 0;
}
