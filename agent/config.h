/* The agent's configuration: defaults, the INI file, then command-line flags.
 *
 * File format (parsed with inih):
 *
 *   [agent]
 *   socket = /run/sockid/agent.sock
 *   trust_domain = example.org
 *   ...
 *   [attestor.unix]
 *   required = true
 *   sha256 = true
 *
 * Keys of [agent] are listed in config.c's table; an unknown section or key
 * is an error. Keys of [attestor.NAME] other than "required" are handed to the
 * plugin NAME, which rejects the ones it does not know. */
#ifndef SOCKID_CONFIG_H
#define SOCKID_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CONFIG_DEFAULT_PATH "/etc/sockid/agent.conf"
#define CONFIG_ERR_MAX      512

enum log_format {
    LOG_FORMAT_TEXT,
    LOG_FORMAT_JSON,
};

/* A list of numeric uids or gids, "0, 1000 2000" in the file. */
#define CONFIG_ID_LIST_MAX 64u
struct config_id_list {
    size_t n;
    uint32_t ids[CONFIG_ID_LIST_MAX];
};

struct config_attestor {
    char *name;    /* from the section name [attestor.NAME] */
    bool required; /* a failure of this attestor refuses the request */
    size_t n;      /* plugin-specific keys, in file order */
    char **keys;
    char **values;
};

struct config {
    char *socket_path;                /* socket; default /run/sockid/agent.sock */
    char *admin_socket_path;          /* admin_socket; default /run/sockid/admin.sock */
    char *data_dir;                   /* data_dir; default /var/lib/sockid */
    char *trust_domain;               /* trust_domain; default "example.org" */
    char *plugin_dir;                 /* plugin_dir; NULL: next to the binary, see main.c */
    uint32_t socket_mode;             /* socket_mode, octal; default 0666 */
    uint32_t admin_socket_mode;       /* admin_socket_mode, octal; default 0600 */
    char *metrics_socket_path;        /* metrics_socket: Prometheus metrics over
                                         HTTP; NULL (unset or empty) = off */
    uint32_t metrics_socket_mode;     /* metrics_socket_mode, octal; default 0600 */
    struct config_id_list admin_uids; /* admin_uids: uids allowed on the admin
                                         socket besides root and the agent's
                                         own uid, which always are */
    struct config_id_list admin_gids; /* admin_gids: so are members (primary or
                                         supplementary) of these groups */
    uint32_t default_ttl;             /* default_ttl seconds of an entry's tokens; 300 */
    uint32_t max_ttl;                 /* max_ttl: no entry's ttl may exceed it; 86400 */
    uint32_t key_rotation;            /* key_rotation seconds ("30s", "10m", "24h", "7d"
                                         also read); the active signing key is replaced
                                         when older; default 86400 */
    enum log_format log_format;       /* log_format = text | json */

    uint32_t max_frame;               /* max_frame bytes; default 65536; 512..16 MiB */
    uint32_t request_memory;          /* request_memory bytes for unpacking one request;
                                         default 262144; >= max_frame */
    uint32_t max_connections;         /* default 4096; 1..1048576 */
    uint32_t max_connections_per_uid; /* default 256; 1..max_connections */
    uint32_t frame_timeout_ms;        /* a partial frame older than this is dropped;
                                         default 5000 */
    uint32_t idle_timeout_ms;         /* a connection with nothing pending is closed
                                         after this; default 60000 */
    uint32_t attest_timeout_ms;       /* deadline of one attestor call; default 1000 */
    uint32_t workers;                 /* event loops; 0 = online CPUs (default) */
    bool require_peer_pidfd;          /* refuse to start without SO_PEERPIDFD;
                                         default false */

    struct config_attestor *attestors; /* one per [attestor.NAME] section */
    size_t n_attestors;
};

/* A config holding the defaults above. Returns 0 or -ENOMEM. */
__attribute__((warn_unused_result)) int config_new(struct config **ret);

/* Frees everything; accepts NULL; returns NULL. */
struct config *config_free(struct config *cfg);

/* Applies a file over cfg. A missing file is -ENOENT (the caller decides
 * whether that matters: it does when --config was given). On any error writes
 * "PATH:LINE: key 'KEY': what is wrong and what is allowed" (or
 * "PATH: what is wrong" when no line applies) into err, leaves cfg in a valid
 * state, and returns a negative errno (-EINVAL for content errors). */
__attribute__((warn_unused_result)) int config_load_file(struct config *cfg, const char *path,
                                                         char *err, size_t err_len);

/* Same for a buffer of len bytes (need not be NUL-terminated); name stands for
 * the file name in messages. Used by the fuzzer and unit tests. */
__attribute__((warn_unused_result)) int config_load_buffer(struct config *cfg, const char *name,
                                                           const char *buf, size_t len, char *err,
                                                           size_t err_len);

/* Sets one [agent] key from a command-line flag (key as in the file, e.g.
 * "socket", "max_frame"), with the same validation. Message names the flag
 * as "--KEY" with '_' shown as '-'. */
__attribute__((warn_unused_result)) int config_set(struct config *cfg, const char *key,
                                                   const char *value, char *err, size_t err_len);

/* The attestor section for name, or NULL. */
const struct config_attestor *config_attestor(const struct config *cfg, const char *name);

#endif
