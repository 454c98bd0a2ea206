/* The agent's configuration: defaults, INI files, command-line flags.
 *
 * Files are parsed with Debian's inih r55 through ini_parse_stream and a
 * reader of our own (config_read_line), because the packaged library
 *   - calls the handler without a line number (built with INI_HANDLER_LINENO 0),
 *   - reads lines into a 200-byte buffer and silently splits a longer line in
 *     two, so the tail of a long value would be parsed as a line of its own,
 *   - reads an indented line as the continuation of the previous value,
 *   - tells the handler nothing about a section until a key appears in it.
 * The reader hands inih one whole line per call and counts them, so the
 * current line number is always the line inih is working on; it refuses a NUL
 * byte and a line that does not fit inih's buffer, drops the leading
 * whitespace (so no line is ever a continuation), and checks section headers
 * itself, so that a bad or repeated section is reported on its own line even
 * when no key follows it. inih still splits "key = value" (or "key: value"),
 * strips comments (';' or '#' starting a line, " ;" inside one) and reports
 * any other line as a syntax error. Library globals (ini_max_line, ...) are
 * read, never written: the buffer size is whatever inih passes the reader.
 *
 * A load is all or nothing: it works on a copy of the config, checks the rules
 * between keys at the end, and only then swaps the copy in. Within one file a
 * key or a section may appear once; a repeated [attestor.NAME] is an error
 * rather than a merge, because two halves of one plugin's settings far apart
 * in a file are more likely a mistake than a wish. A later file's
 * [attestor.NAME] replaces what an earlier file said about NAME. */
#define _GNU_SOURCE /* strerrordesc_np */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/un.h>
#include <unistd.h>

#include <ini.h>

#define CONFIG_FILE_MAX          (1024u * 1024u)
#define CONFIG_LINE_MAX          8192 /* cap, in case inih is given a larger buffer */
#define CONFIG_VALUE_MAX         4096
#define CONFIG_ATTESTORS_MAX     32
#define CONFIG_ATTESTOR_KEYS_MAX 64
#define CONFIG_ATTESTOR_NAME_MAX 32
#define CONFIG_PLUGIN_KEY_MAX    64
#define CONFIG_TRUST_DOMAIN_MAX  255
#define CONFIG_QUOTE_MAX         48 /* bytes of a value or key shown in a message */
#define CONFIG_SOCKET_PATH_MAX   (sizeof(((struct sockaddr_un *)0)->sun_path) - 1)
#define CONFIG_ATTESTOR_PREFIX   "attestor."

enum config_kind {
    CONFIG_KIND_PATH,
    CONFIG_KIND_SOCKET_PATH,
    CONFIG_KIND_TRUST_DOMAIN,
    CONFIG_KIND_MODE,
    CONFIG_KIND_LOG_FORMAT,
    CONFIG_KIND_U32,
    CONFIG_KIND_BOOL,
    CONFIG_KIND_ID_LIST,
    CONFIG_KIND_DURATION,
};

struct config_key {
    const char *name;
    enum config_kind kind;
    size_t offset;
    uint32_t min, max;
};

#define CONFIG_KEY(name, kind, field, min, max)                                                    \
    {                                                                                              \
        name, kind, offsetof(struct config, field), min, max                                       \
    }

/* The [agent] keys, in the order messages list them. */
static const struct config_key config_keys[] = {
    CONFIG_KEY("socket", CONFIG_KIND_SOCKET_PATH, socket_path, 0, 0),
    CONFIG_KEY("admin_socket", CONFIG_KIND_SOCKET_PATH, admin_socket_path, 0, 0),
    CONFIG_KEY("data_dir", CONFIG_KIND_PATH, data_dir, 0, 0),
    CONFIG_KEY("trust_domain", CONFIG_KIND_TRUST_DOMAIN, trust_domain, 0, 0),
    CONFIG_KEY("plugin_dir", CONFIG_KIND_PATH, plugin_dir, 0, 0),
    CONFIG_KEY("socket_mode", CONFIG_KIND_MODE, socket_mode, 0, 0777),
    CONFIG_KEY("admin_socket_mode", CONFIG_KIND_MODE, admin_socket_mode, 0, 0777),
    CONFIG_KEY("admin_uids", CONFIG_KIND_ID_LIST, admin_uids, 0, 0),
    CONFIG_KEY("admin_gids", CONFIG_KIND_ID_LIST, admin_gids, 0, 0),
    CONFIG_KEY("default_ttl", CONFIG_KIND_U32, default_ttl, 1, 31536000),
    CONFIG_KEY("max_ttl", CONFIG_KIND_U32, max_ttl, 1, 31536000),
    CONFIG_KEY("key_rotation", CONFIG_KIND_DURATION, key_rotation, 1, 31536000),
    CONFIG_KEY("log_format", CONFIG_KIND_LOG_FORMAT, log_format, 0, 0),
    CONFIG_KEY("max_frame", CONFIG_KIND_U32, max_frame, 512, 16777216),
    CONFIG_KEY("request_memory", CONFIG_KIND_U32, request_memory, 512, 268435456),
    CONFIG_KEY("max_connections", CONFIG_KIND_U32, max_connections, 1, 1048576),
    CONFIG_KEY("max_connections_per_uid", CONFIG_KIND_U32, max_connections_per_uid, 1, 1048576),
    CONFIG_KEY("frame_timeout_ms", CONFIG_KIND_U32, frame_timeout_ms, 1, 3600000),
    CONFIG_KEY("idle_timeout_ms", CONFIG_KIND_U32, idle_timeout_ms, 1, 86400000),
    CONFIG_KEY("attest_timeout_ms", CONFIG_KIND_U32, attest_timeout_ms, 1, 600000),
    CONFIG_KEY("workers", CONFIG_KIND_U32, workers, 0, 1024),
    CONFIG_KEY("require_peer_pidfd", CONFIG_KIND_BOOL, require_peer_pidfd, 0, 0),
};

#define CONFIG_N_KEYS (sizeof(config_keys) / sizeof(config_keys[0]))

/* Rules between keys: lo <= hi for numbers, lo != hi for paths. */
struct config_rule {
    const char *lo, *hi;
    bool differ;
};

static const struct config_rule config_rules[] = {
    {"max_frame", "request_memory", false},
    {"max_connections_per_uid", "max_connections", false},
    {"socket", "admin_socket", true},
    {"default_ttl", "max_ttl", false},
};

/* How a message names a key: as in the file, or as a flag. */
enum config_style {
    CONFIG_STYLE_FILE,
    CONFIG_STYLE_FLAG,
};

enum config_section {
    CONFIG_SECTION_NONE,
    CONFIG_SECTION_AGENT,
    CONFIG_SECTION_ATTESTOR,
};

/* The state of one load; inih hands it to both the reader and the handler. */
struct config_parse {
    struct config *cfg; /* the working copy */
    const char *name;   /* the file name in messages */
    const char *buf;
    size_t len, pos;
    unsigned lineno; /* the line last handed to inih */

    enum config_section section;
    char section_name[sizeof(CONFIG_ATTESTOR_PREFIX) + CONFIG_ATTESTOR_NAME_MAX];
    size_t attestor; /* index of the current [attestor.NAME] */
    unsigned agent_line;
    unsigned key_line[CONFIG_N_KEYS];
    unsigned attestor_line[CONFIG_ATTESTORS_MAX];
    unsigned required_line;
    unsigned plugin_key_line[CONFIG_ATTESTOR_KEYS_MAX];

    int error; /* the first error the reader or handler found */
    unsigned error_line;
    char *err;
    size_t err_len;
};

__attribute__((format(printf, 3, 4))) static void config_err(char *err, size_t err_len,
                                                             const char *fmt, ...)
{
    va_list ap;

    if (!err || err_len == 0)
        return;
    va_start(ap, fmt);
    (void)vsnprintf(err, err_len, fmt, ap);
    va_end(ap);
}

/* Writes at most CONFIG_QUOTE_MAX of the len bytes at s into out, escaping
 * quotes, backslashes and anything unprintable, so a message stays one line of
 * text; "..." marks a cut. */
static const char *config_quote_n(char *out, size_t out_len, const char *s, size_t len)
{
    size_t o = 0, i;

    for (i = 0; i < len && i < CONFIG_QUOTE_MAX; i++) {
        unsigned char c = (unsigned char)s[i];
        char tmp[5];
        size_t n;

        if (c == '"' || c == '\'' || c == '\\')
            n = (size_t)snprintf(tmp, sizeof(tmp), "\\%c", c);
        else if (c < 0x20 || c >= 0x7f)
            n = (size_t)snprintf(tmp, sizeof(tmp), "\\x%02x", c);
        else
            n = (size_t)snprintf(tmp, sizeof(tmp), "%c", c);
        if (o + n + 4 > out_len)
            break;
        memcpy(out + o, tmp, n);
        o += n;
    }
    if (i < len && o + 4 <= out_len) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o] = '\0';
    return out;
}

static const char *config_quote(char *out, size_t out_len, const char *s)
{
    return config_quote_n(out, out_len, s, strlen(s));
}

/* "max_frame" as a flag: "--max-frame". */
static const char *config_flag_name(char *out, size_t out_len, const char *key)
{
    size_t i;

    (void)snprintf(out, out_len, "--%s", key);
    for (i = 2; out[i]; i++)
        if (out[i] == '_')
            out[i] = '-';
    return out;
}

static const char *config_key_label(char *out, size_t out_len, const char *key,
                                    enum config_style style)
{
    if (style == CONFIG_STYLE_FLAG)
        return config_flag_name(out, out_len, key);
    (void)snprintf(out, out_len, "%s", key);
    return out;
}

/* "socket, admin_socket, ..." or "--socket, --admin-socket, ...". */
static const char *config_key_list(char *out, size_t out_len, enum config_style style)
{
    size_t o = 0, i;

    out[0] = '\0';
    for (i = 0; i < CONFIG_N_KEYS && o < out_len; i++) {
        char label[64];
        int n = snprintf(out + o, out_len - o, "%s%s", i ? ", " : "",
                         config_key_label(label, sizeof(label), config_keys[i].name, style));
        if (n < 0)
            break;
        o += (size_t)n;
    }
    return out;
}

static const struct config_key *config_key_find(const char *name)
{
    size_t i;

    for (i = 0; i < CONFIG_N_KEYS; i++)
        if (strcmp(config_keys[i].name, name) == 0)
            return &config_keys[i];
    return NULL;
}

static bool config_has_control(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s == 0x7f)
            return true;
    return false;
}

/* Decimal digits only: no sign, no space, no 0x, checked against min..max. */
static bool config_parse_u32(const char *s, uint32_t min, uint32_t max, uint32_t *ret)
{
    uint64_t v = 0;

    if (!*s)
        return false;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return false;
        v = v * 10 + (uint64_t)(*s - '0');
        if (v > max)
            return false;
    }
    if (v < min)
        return false;
    *ret = (uint32_t)v;
    return true;
}

/* One to four octal digits, at most 0777. */
/* Seconds, plain or with one unit suffix: s, m, h, d. */
static bool config_parse_duration(const char *s, uint32_t min, uint32_t max, uint32_t *ret)
{
    char num[16];
    size_t n = strlen(s);
    uint64_t unit = 1;
    if (n > 1 && n < sizeof(num)) {
        switch (s[n - 1]) {
        case 's':
            unit = 1;
            n--;
            break;
        case 'm':
            unit = 60;
            n--;
            break;
        case 'h':
            unit = 3600;
            n--;
            break;
        case 'd':
            unit = 86400;
            n--;
            break;
        default:
            break;
        }
    }
    if (n == 0 || n >= sizeof(num))
        return false;
    memcpy(num, s, n);
    num[n] = '\0';
    uint32_t v;
    if (!config_parse_u32(num, 0, UINT32_MAX, &v))
        return false;
    uint64_t total = (uint64_t)v * unit;
    if (total < min || total > max)
        return false;
    *ret = (uint32_t)total;
    return true;
}

/* "0, 1000 2000": numbers separated by commas and/or blanks; an empty
 * value is an empty list. */
static bool config_parse_id_list(const char *s, struct config_id_list *ret)
{
    struct config_id_list list = {0};
    char num[16];

    while (*s) {
        size_t n = 0;
        while (*s == ' ' || *s == '\t' || *s == ',')
            s++;
        if (!*s)
            break;
        while (*s && *s != ' ' && *s != '\t' && *s != ',') {
            if (n + 1 >= sizeof(num))
                return false;
            num[n++] = *s++;
        }
        num[n] = '\0';
        /* uid_t -1 means "no change" to the kernel: never an identity. */
        if (list.n >= CONFIG_ID_LIST_MAX || !config_parse_u32(num, 0, 4294967294u, &list.ids[list.n]))
            return false;
        list.n++;
    }
    *ret = list;
    return true;
}

static bool config_parse_mode(const char *s, uint32_t *ret)
{
    uint32_t v = 0;
    size_t n = strlen(s), i;

    if (n == 0 || n > 4)
        return false;
    for (i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '7')
            return false;
        v = v * 8 + (uint32_t)(s[i] - '0');
    }
    if (v > 0777)
        return false;
    *ret = v;
    return true;
}

static bool config_parse_bool(const char *s, bool *ret)
{
    static const char *const yes[] = {"true", "yes", "1"};
    static const char *const no[] = {"false", "no", "0"};
    size_t i;

    for (i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *ret = true;
            return true;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *ret = false;
            return true;
        }
    }
    return false;
}

static bool config_valid_trust_domain(const char *s)
{
    size_t n = strlen(s), i;

    if (n == 0 || n > CONFIG_TRUST_DOMAIN_MAX)
        return false;
    for (i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '.' ||
              s[i] == '-' || s[i] == '_'))
            return false;
    return true;
}

/* [a-z0-9_-]{1,32}, plus '.' for plugin keys; the name ends at len bytes. */
static bool config_valid_name(const char *s, size_t len, size_t max, bool dot)
{
    size_t i;

    if (len == 0 || len > max)
        return false;
    for (i = 0; i < len; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_' ||
              s[i] == '-' || (dot && s[i] == '.')))
            return false;
    return true;
}

static int config_replace_string(char **field, const char *value)
{
    char *copy = strdup(value);

    if (!copy)
        return -ENOMEM;
    free(*field);
    *field = copy;
    return 0;
}

/* Applies value to key k of cfg. On a bad value writes what is wrong and what
 * is allowed into why, and leaves cfg alone. */
static int config_key_apply(struct config *cfg, const struct config_key *k, const char *value,
                            char *why, size_t why_len)
{
    char *field = (char *)cfg + k->offset;
    size_t len = strlen(value);
    char q[CONFIG_QUOTE_MAX * 4 + 4];
    uint32_t u;
    bool b;

    if (len > CONFIG_VALUE_MAX) {
        config_err(why, why_len, "must be at most %d bytes long, got %zu bytes", CONFIG_VALUE_MAX,
                   len);
        return -EINVAL;
    }

    switch (k->kind) {
    case CONFIG_KIND_PATH:
    case CONFIG_KIND_SOCKET_PATH:
        if (value[0] != '/') {
            config_err(why, why_len, "must be an absolute path (starting with '/'), got \"%s\"",
                       config_quote(q, sizeof(q), value));
            return -EINVAL;
        }
        if (config_has_control(value)) {
            config_err(why, why_len, "must not contain control characters, got \"%s\"",
                       config_quote(q, sizeof(q), value));
            return -EINVAL;
        }
        if (k->kind == CONFIG_KIND_SOCKET_PATH && len > CONFIG_SOCKET_PATH_MAX) {
            config_err(why, why_len,
                       "must be at most %zu bytes long (the size of a Unix socket address), "
                       "got %zu bytes",
                       CONFIG_SOCKET_PATH_MAX, len);
            return -EINVAL;
        }
        if (len >= PATH_MAX) {
            config_err(why, why_len, "must be at most %d bytes long, got %zu bytes", PATH_MAX - 1,
                       len);
            return -EINVAL;
        }
        return config_replace_string((char **)(void *)field, value);
    case CONFIG_KIND_TRUST_DOMAIN:
        if (!config_valid_trust_domain(value)) {
            config_err(why, why_len,
                       "must be 1 to %d characters of a-z, 0-9, '.', '-' and '_', got \"%s\"",
                       CONFIG_TRUST_DOMAIN_MAX, config_quote(q, sizeof(q), value));
            return -EINVAL;
        }
        return config_replace_string((char **)(void *)field, value);
    case CONFIG_KIND_MODE:
        if (!config_parse_mode(value, &u)) {
            config_err(why, why_len, "must be an octal mode between 0000 and 0777, got \"%s\"",
                       config_quote(q, sizeof(q), value));
            return -EINVAL;
        }
        *(uint32_t *)(void *)field = u;
        return 0;
    case CONFIG_KIND_LOG_FORMAT:
        if (strcmp(value, "text") == 0) {
            *(enum log_format *)(void *)field = LOG_FORMAT_TEXT;
        } else if (strcmp(value, "json") == 0) {
            *(enum log_format *)(void *)field = LOG_FORMAT_JSON;
        } else {
            config_err(why, why_len, "must be text or json, got \"%s\"",
                       config_quote(q, sizeof(q), value));
            return -EINVAL;
        }
        return 0;
    case CONFIG_KIND_U32:
        if (!config_parse_u32(value, k->min, k->max, &u)) {
            config_err(why, why_len, "must be a number between %u and %u, got \"%s\"", k->min,
                       k->max, config_quote(q, sizeof(q), value));
            return -EINVAL;
        }
        *(uint32_t *)(void *)field = u;
        return 0;
    case CONFIG_KIND_DURATION:
        if (!config_parse_duration(value, k->min, k->max, &u)) {
            config_err(why, why_len,
                       "must be a duration between %u and %u seconds (a number of seconds, or "
                       "with s, m, h or d), got \"%s\"",
                       k->min, k->max, config_quote(q, sizeof(q), value));
            return -EINVAL;
        }
        *(uint32_t *)(void *)field = u;
        return 0;
    case CONFIG_KIND_ID_LIST:
        if (!config_parse_id_list(value, (struct config_id_list *)(void *)field)) {
            config_err(why, why_len,
                       "must be a list of at most %u numeric ids separated by commas or spaces, "
                       "got \"%s\"",
                       CONFIG_ID_LIST_MAX, config_quote(q, sizeof(q), value));
            return -EINVAL;
        }
        return 0;
    case CONFIG_KIND_BOOL:
        if (!config_parse_bool(value, &b)) {
            config_err(why, why_len, "must be true, false, yes, no, 1 or 0, got \"%s\"",
                       config_quote(q, sizeof(q), value));
            return -EINVAL;
        }
        *(bool *)(void *)field = b;
        return 0;
    }
    return -EINVAL;
}

static uint32_t config_u32(const struct config *cfg, const char *key)
{
    return *(const uint32_t *)(const void *)((const char *)cfg + config_key_find(key)->offset);
}

static const char *config_string(const struct config *cfg, const char *key)
{
    return *(char *const *)(const void *)((const char *)cfg + config_key_find(key)->offset);
}

/* The first rule cfg breaks, or NULL. */
static const struct config_rule *config_rule_broken(const struct config *cfg)
{
    size_t i;

    for (i = 0; i < sizeof(config_rules) / sizeof(config_rules[0]); i++) {
        const struct config_rule *r = &config_rules[i];
        if (r->differ ? strcmp(config_string(cfg, r->lo), config_string(cfg, r->hi)) == 0
                      : config_u32(cfg, r->lo) > config_u32(cfg, r->hi))
            return r;
    }
    return NULL;
}

/* Explains the broken rule r from the side of key blame (r->lo or r->hi). */
static void config_rule_why(const struct config *cfg, const struct config_rule *r,
                            const char *blame, enum config_style style, char *why, size_t why_len)
{
    bool is_lo = strcmp(blame, r->lo) == 0;
    const char *other = is_lo ? r->hi : r->lo;
    char label[64], q[CONFIG_QUOTE_MAX * 4 + 4];

    config_key_label(label, sizeof(label), other, style);
    if (r->differ)
        config_err(why, why_len, "must differ from %s, both are \"%s\"", label,
                   config_quote(q, sizeof(q), config_string(cfg, blame)));
    else
        config_err(why, why_len, "must be %s %s (%u), got %u", is_lo ? "at most" : "at least",
                   label, config_u32(cfg, other), config_u32(cfg, blame));
}

static void config_attestor_clear(struct config_attestor *a)
{
    size_t i;

    for (i = 0; i < a->n; i++) {
        free(a->keys[i]);
        free(a->values[i]);
    }
    free(a->keys);
    free(a->values);
    a->keys = NULL;
    a->values = NULL;
    a->n = 0;
    a->required = false;
}

static int config_attestor_add(struct config_attestor *a, const char *key, const char *value)
{
    char **keys, **values;
    char *k, *v;

    keys = realloc(a->keys, (a->n + 1) * sizeof(*keys));
    if (!keys)
        return -ENOMEM;
    a->keys = keys;
    values = realloc(a->values, (a->n + 1) * sizeof(*values));
    if (!values)
        return -ENOMEM;
    a->values = values;
    k = strdup(key);
    v = strdup(value);
    if (!k || !v) {
        free(k);
        free(v);
        return -ENOMEM;
    }
    a->keys[a->n] = k;
    a->values[a->n] = v;
    a->n++;
    return 0;
}

/* Appends an empty [attestor.NAME] (name is len bytes). */
static int config_attestor_append(struct config *cfg, const char *name, size_t len)
{
    struct config_attestor *list;
    char *copy = strndup(name, len);

    if (!copy)
        return -ENOMEM;
    list = realloc(cfg->attestors, (cfg->n_attestors + 1) * sizeof(*list));
    if (!list) {
        free(copy);
        return -ENOMEM;
    }
    cfg->attestors = list;
    list[cfg->n_attestors] = (struct config_attestor){.name = copy};
    cfg->n_attestors++;
    return 0;
}

int config_new(struct config **ret)
{
    struct config *cfg = calloc(1, sizeof(*cfg));

    if (!cfg)
        return -ENOMEM;
    cfg->socket_path = strdup("/run/sockid/agent.sock");
    cfg->admin_socket_path = strdup("/run/sockid/admin.sock");
    cfg->data_dir = strdup("/var/lib/sockid");
    cfg->trust_domain = strdup("example.org");
    if (!cfg->socket_path || !cfg->admin_socket_path || !cfg->data_dir || !cfg->trust_domain) {
        config_free(cfg);
        return -ENOMEM;
    }
    cfg->socket_mode = 0666;
    cfg->admin_socket_mode = 0600;
    cfg->default_ttl = 300;
    cfg->max_ttl = 86400;
    cfg->key_rotation = 86400;
    cfg->log_format = LOG_FORMAT_TEXT;
    cfg->max_frame = 65536;
    cfg->request_memory = 262144;
    cfg->max_connections = 4096;
    cfg->max_connections_per_uid = 256;
    cfg->frame_timeout_ms = 5000;
    cfg->idle_timeout_ms = 60000;
    cfg->attest_timeout_ms = 1000;
    cfg->workers = 1;
    cfg->require_peer_pidfd = false;
    *ret = cfg;
    return 0;
}

struct config *config_free(struct config *cfg)
{
    size_t i;

    if (!cfg)
        return NULL;
    free(cfg->socket_path);
    free(cfg->admin_socket_path);
    free(cfg->data_dir);
    free(cfg->trust_domain);
    free(cfg->plugin_dir);
    for (i = 0; i < cfg->n_attestors; i++) {
        config_attestor_clear(&cfg->attestors[i]);
        free(cfg->attestors[i].name);
    }
    free(cfg->attestors);
    free(cfg);
    return NULL;
}

static int config_dup_string(char **ret, const char *s)
{
    if (!s)
        return 0;
    *ret = strdup(s);
    return *ret ? 0 : -ENOMEM;
}

/* A deep copy, which a load or a flag changes before it is swapped in. */
static int config_dup(const struct config *cfg, struct config **ret)
{
    struct config *c = calloc(1, sizeof(*c));
    size_t i, j;

    if (!c)
        return -ENOMEM;
    *c = *cfg;
    c->socket_path = c->admin_socket_path = c->data_dir = c->trust_domain = c->plugin_dir = NULL;
    c->attestors = NULL;
    c->n_attestors = 0;
    if (config_dup_string(&c->socket_path, cfg->socket_path) < 0 ||
        config_dup_string(&c->admin_socket_path, cfg->admin_socket_path) < 0 ||
        config_dup_string(&c->data_dir, cfg->data_dir) < 0 ||
        config_dup_string(&c->trust_domain, cfg->trust_domain) < 0 ||
        config_dup_string(&c->plugin_dir, cfg->plugin_dir) < 0)
        goto fail;
    for (i = 0; i < cfg->n_attestors; i++) {
        const struct config_attestor *a = &cfg->attestors[i];
        if (config_attestor_append(c, a->name, strlen(a->name)) < 0)
            goto fail;
        c->attestors[i].required = a->required;
        for (j = 0; j < a->n; j++)
            if (config_attestor_add(&c->attestors[i], a->keys[j], a->values[j]) < 0)
                goto fail;
    }
    *ret = c;
    return 0;
fail:
    config_free(c);
    return -ENOMEM;
}

/* Moves work's contents into cfg and frees what cfg held before. */
static void config_commit(struct config *cfg, struct config *work)
{
    struct config old = *cfg;

    *cfg = *work;
    *work = old;
    config_free(work);
}

__attribute__((format(printf, 2, 3))) static void config_fail(struct config_parse *p,
                                                              const char *fmt, ...)
{
    char msg[CONFIG_ERR_MAX];
    va_list ap;

    if (p->error)
        return;
    va_start(ap, fmt);
    (void)vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    p->error = -EINVAL;
    p->error_line = p->lineno;
    config_err(p->err, p->err_len, "%s:%u: %s", p->name, p->lineno, msg);
}

static void config_fail_nomem(struct config_parse *p)
{
    if (p->error)
        return;
    p->error = -ENOMEM;
    p->error_line = p->lineno;
    config_err(p->err, p->err_len, "%s: out of memory", p->name);
}

/* A "[...]" line of len bytes, without surrounding whitespace. */
static int config_parse_section(struct config_parse *p, const char *line, size_t len)
{
    const char *close = memchr(line, ']', len);
    const char *rest, *name = line + 1;
    size_t name_len, rest_len, i;
    char shown[CONFIG_QUOTE_MAX * 4 + 4];

    if (!close) {
        config_fail(p, "section header has no closing ']'");
        return -EINVAL;
    }
    name_len = (size_t)(close - name);
    config_quote_n(shown, sizeof(shown), name, name_len);
    rest = close + 1;
    rest_len = len - (size_t)(rest - line);
    while (rest_len > 0 && isspace((unsigned char)*rest)) {
        rest++;
        rest_len--;
    }
    if (rest_len > 0 && *rest != ';' && *rest != '#') {
        config_fail(p, "unexpected text after section header [%s]", shown);
        return -EINVAL;
    }

    if (name_len == strlen("agent") && memcmp(name, "agent", name_len) == 0) {
        if (p->agent_line) {
            config_fail(p,
                        "section [agent] already appeared at line %u; each section may "
                        "appear once",
                        p->agent_line);
            return -EINVAL;
        }
        p->agent_line = p->lineno;
        p->section = CONFIG_SECTION_AGENT;
        (void)snprintf(p->section_name, sizeof(p->section_name), "agent");
        return 0;
    }

    if (name_len <= strlen(CONFIG_ATTESTOR_PREFIX) ||
        memcmp(name, CONFIG_ATTESTOR_PREFIX, strlen(CONFIG_ATTESTOR_PREFIX)) != 0) {
        config_fail(p, "unknown section [%s]; known sections are [agent] and [attestor.NAME]",
                    shown);
        return -EINVAL;
    }
    if (!config_valid_name(name + strlen(CONFIG_ATTESTOR_PREFIX),
                           name_len - strlen(CONFIG_ATTESTOR_PREFIX), CONFIG_ATTESTOR_NAME_MAX,
                           false)) {
        config_fail(p,
                    "section [%s]: an attestor name must be 1 to %d characters of a-z, 0-9, "
                    "'_' and '-'",
                    shown, CONFIG_ATTESTOR_NAME_MAX);
        return -EINVAL;
    }
    /* Valid, so short and printable: shown is the name itself from here on. */
    (void)snprintf(p->section_name, sizeof(p->section_name), "%.*s", (int)name_len, name);
    name += strlen(CONFIG_ATTESTOR_PREFIX);
    name_len -= strlen(CONFIG_ATTESTOR_PREFIX);

    for (i = 0; i < p->cfg->n_attestors; i++)
        if (strlen(p->cfg->attestors[i].name) == name_len &&
            memcmp(p->cfg->attestors[i].name, name, name_len) == 0)
            break;
    if (i >= CONFIG_ATTESTORS_MAX) {
        config_fail(p, "section [%s]: at most %d attestor sections are allowed", shown,
                    CONFIG_ATTESTORS_MAX);
        return -EINVAL;
    }
    if (i < p->cfg->n_attestors && p->attestor_line[i]) {
        config_fail(p, "section [%s] already appeared at line %u; each section may appear once",
                    shown, p->attestor_line[i]);
        return -EINVAL;
    }
    if (i < p->cfg->n_attestors) {
        /* An earlier file's section for this attestor: this one replaces it. */
        config_attestor_clear(&p->cfg->attestors[i]);
    } else if (config_attestor_append(p->cfg, name, name_len) < 0) {
        config_fail_nomem(p);
        return -ENOMEM;
    }
    p->attestor = i;
    p->attestor_line[i] = p->lineno;
    p->required_line = 0;
    p->section = CONFIG_SECTION_ATTESTOR;
    return 0;
}

/* inih's reader: copies the next line into str (num bytes), or returns NULL at
 * the end or after an error, which ends inih's loop. */
static char *config_read_line(char *str, int num, void *stream)
{
    struct config_parse *p = stream;
    const char *line, *nl;
    size_t n, max;

    if (p->error || p->pos >= p->len || num < 2)
        return NULL;
    line = p->buf + p->pos;
    nl = memchr(line, '\n', p->len - p->pos);
    n = nl ? (size_t)(nl - line) : p->len - p->pos;
    p->pos += n + (nl ? 1 : 0);
    p->lineno++;

    if (memchr(line, '\0', n)) {
        config_fail(p, "line contains a NUL byte; a config file must be text");
        return NULL;
    }
    if (p->lineno == 1 && n >= 3 && memcmp(line, "\xef\xbb\xbf", 3) == 0) {
        line += 3;
        n -= 3;
    }
    /* isspace, as inih's own lskip/rstrip use, so inih finds nothing to strip. */
    while (n > 0 && isspace((unsigned char)line[0])) {
        line++;
        n--;
    }
    while (n > 0 && isspace((unsigned char)line[n - 1]))
        n--;
    /* inih would skip another one and read what follows, unseen by us. */
    if (p->lineno == 1 && n >= 3 && memcmp(line, "\xef\xbb\xbf", 3) == 0) {
        config_fail(p, "stray byte order mark; a file may start with at most one");
        return NULL;
    }

    if (n > 0 && strchr(ini_start_comment_prefixes, line[0])) {
        n = 1; /* inih ignores the rest: a comment may be longer than its buffer */
    } else {
        max = (size_t)num - 1 < CONFIG_LINE_MAX ? (size_t)num - 1 : CONFIG_LINE_MAX;
        if (n > max) {
            config_fail(p, "line is %zu bytes long; at most %zu are allowed", n, max);
            return NULL;
        }
        if (n > 0 && line[0] == '[' && config_parse_section(p, line, n) < 0)
            return NULL;
    }
    memcpy(str, line, n);
    str[n] = '\0';
    return str;
}

static int config_on_agent_key(struct config_parse *p, const char *key, const char *value)
{
    const struct config_key *k = config_key_find(key);
    char why[CONFIG_ERR_MAX], list[CONFIG_ERR_MAX], q[CONFIG_QUOTE_MAX * 4 + 4];
    size_t idx;
    int r;

    if (!k) {
        config_fail(p, "unknown key '%s' in [agent]; known keys are: %s",
                    config_quote(q, sizeof(q), key),
                    config_key_list(list, sizeof(list), CONFIG_STYLE_FILE));
        return -EINVAL;
    }
    idx = (size_t)(k - config_keys);
    if (p->key_line[idx]) {
        config_fail(p, "key '%s': already set at line %u; each key may appear once", key,
                    p->key_line[idx]);
        return -EINVAL;
    }
    r = config_key_apply(p->cfg, k, value, why, sizeof(why));
    if (r == -ENOMEM) {
        config_fail_nomem(p);
        return r;
    }
    if (r < 0) {
        config_fail(p, "key '%s': %s", key, why);
        return r;
    }
    p->key_line[idx] = p->lineno;
    return 0;
}

static int config_on_attestor_key(struct config_parse *p, const char *key, const char *value)
{
    struct config_attestor *a = &p->cfg->attestors[p->attestor];
    char q[CONFIG_QUOTE_MAX * 4 + 4];
    size_t i;

    if (strcmp(key, "required") == 0) {
        if (p->required_line) {
            config_fail(p,
                        "key 'required': already set at line %u in [%s]; each key may "
                        "appear once",
                        p->required_line, p->section_name);
            return -EINVAL;
        }
        if (!config_parse_bool(value, &a->required)) {
            config_fail(p, "key 'required': must be true, false, yes, no, 1 or 0, got \"%s\"",
                        config_quote(q, sizeof(q), value));
            return -EINVAL;
        }
        p->required_line = p->lineno;
        return 0;
    }

    if (!config_valid_name(key, strlen(key), CONFIG_PLUGIN_KEY_MAX, true)) {
        config_fail(p,
                    "key '%s': a key in [%s] must be 1 to %d characters of a-z, 0-9, '_', '-' "
                    "and '.'",
                    config_quote(q, sizeof(q), key), p->section_name, CONFIG_PLUGIN_KEY_MAX);
        return -EINVAL;
    }
    for (i = 0; i < a->n; i++) {
        if (strcmp(a->keys[i], key) == 0) {
            config_fail(p, "key '%s': already set at line %u in [%s]; each key may appear once",
                        key, p->plugin_key_line[i], p->section_name);
            return -EINVAL;
        }
    }
    if (a->n >= CONFIG_ATTESTOR_KEYS_MAX) {
        config_fail(p, "key '%s': [%s] already has %d keys, the most a section may have", key,
                    p->section_name, CONFIG_ATTESTOR_KEYS_MAX);
        return -EINVAL;
    }
    if (strlen(value) > CONFIG_VALUE_MAX) {
        config_fail(p, "key '%s': must be at most %d bytes long, got %zu bytes", key,
                    CONFIG_VALUE_MAX, strlen(value));
        return -EINVAL;
    }
    if (config_has_control(value)) {
        config_fail(p, "key '%s': must not contain control characters, got \"%s\"", key,
                    config_quote(q, sizeof(q), value));
        return -EINVAL;
    }
    if (config_attestor_add(a, key, value) < 0) {
        config_fail_nomem(p);
        return -ENOMEM;
    }
    p->plugin_key_line[a->n - 1] = p->lineno;
    return 0;
}

/* inih's handler: 1 to go on, 0 for an error (already recorded in p). */
static int config_on_key(void *user, const char *section, const char *key, const char *value)
{
    struct config_parse *p = user;
    char q[CONFIG_QUOTE_MAX * 4 + 4];

    if (p->error)
        return 0;
    /* inih and the reader must agree on where we are; never guess if not. */
    if (strcmp(section, p->section_name) != 0) {
        config_fail(p, "internal error: the parser is in section [%s], expected [%s]",
                    config_quote(q, sizeof(q), section), p->section_name);
        return 0;
    }
    if (p->section == CONFIG_SECTION_NONE) {
        config_fail(p,
                    "key '%s' comes before any section; put it under [agent] or "
                    "[attestor.NAME]",
                    config_quote(q, sizeof(q), key));
        return 0;
    }
    if (p->section == CONFIG_SECTION_AGENT)
        return config_on_agent_key(p, key, value) == 0;
    return config_on_attestor_key(p, key, value) == 0;
}

/* A line inih refused: quote it, so the user sees which one. */
static void config_syntax_error(struct config_parse *p, unsigned lineno)
{
    const char *line = p->buf, *end = p->buf + p->len, *nl;
    char text[CONFIG_QUOTE_MAX + 1], q[CONFIG_QUOTE_MAX * 4 + 4];
    unsigned i;
    size_t n;

    for (i = 1; i < lineno && line < end; i++) {
        nl = memchr(line, '\n', (size_t)(end - line));
        line = nl ? nl + 1 : end;
    }
    nl = memchr(line, '\n', (size_t)(end - line));
    n = (size_t)((nl ? nl : end) - line);
    (void)snprintf(text, sizeof(text), "%.*s", (int)(n < CONFIG_QUOTE_MAX ? n : CONFIG_QUOTE_MAX),
                   line);
    config_err(p->err, p->err_len,
               "%s:%u: expected '[section]', 'key = value' or a comment, got \"%s\"", p->name,
               lineno, config_quote(q, sizeof(q), text));
}

/* The rules between keys, on the result of a whole file. The key to blame is
 * the one this file set last, since that is where the user will look. */
static int config_parse_check(struct config_parse *p)
{
    const struct config_rule *r = config_rule_broken(p->cfg);
    const struct config_key *lo, *hi;
    unsigned lo_line, hi_line;
    const char *blame;
    char why[CONFIG_ERR_MAX];

    if (!r)
        return 0;
    lo = config_key_find(r->lo);
    hi = config_key_find(r->hi);
    lo_line = p->key_line[lo - config_keys];
    hi_line = p->key_line[hi - config_keys];
    blame = lo_line > hi_line ? r->lo : r->hi;
    config_rule_why(p->cfg, r, blame, CONFIG_STYLE_FILE, why, sizeof(why));
    if (lo_line || hi_line)
        config_err(p->err, p->err_len, "%s:%u: key '%s': %s", p->name,
                   lo_line > hi_line ? lo_line : hi_line, blame, why);
    else
        config_err(p->err, p->err_len, "%s: key '%s': %s", p->name, blame, why);
    return -EINVAL;
}

int config_load_buffer(struct config *cfg, const char *name, const char *buf, size_t len, char *err,
                       size_t err_len)
{
    struct config_parse *p = NULL;
    struct config *work = NULL;
    int r, line;

    if (!name)
        name = "(config)";
    if (len > CONFIG_FILE_MAX) {
        config_err(err, err_len, "%s: is %zu bytes; at most %u are allowed", name, len,
                   CONFIG_FILE_MAX);
        return -EFBIG;
    }
    r = config_dup(cfg, &work);
    p = calloc(1, sizeof(*p));
    if (r < 0 || !p) {
        config_err(err, err_len, "%s: out of memory", name);
        r = -ENOMEM;
        goto out;
    }
    *p = (struct config_parse){
        .cfg = work, .name = name, .buf = buf, .len = len, .err = err, .err_len = err_len};

    line = ini_parse_stream(config_read_line, p, config_on_key, p);
    if (line < 0) {
        config_err(err, err_len, "%s: out of memory", name);
        r = -ENOMEM;
        goto out;
    }
    /* inih reports the first line it refused; ours may be a later one. */
    if (line > 0 && (!p->error || (unsigned)line < p->error_line)) {
        config_syntax_error(p, (unsigned)line);
        r = -EINVAL;
        goto out;
    }
    r = p->error;
    if (r == 0)
        r = config_parse_check(p);
    if (r == 0) {
        config_commit(cfg, work);
        work = NULL;
    }
out:
    free(p);
    config_free(work);
    return r;
}

/* Reads at most CONFIG_FILE_MAX bytes; a longer file is -EFBIG. */
static int config_read_file(const char *path, char **ret_buf, size_t *ret_len)
{
    size_t len = 0, cap = 4096;
    char *buf = NULL, *grown;
    ssize_t n;
    int fd, r;

    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return -errno;
    for (;;) {
        if (!buf || len == cap) {
            if (buf)
                cap *= 2;
            if (cap > CONFIG_FILE_MAX + 1)
                cap = CONFIG_FILE_MAX + 1;
            grown = realloc(buf, cap);
            if (!grown) {
                r = -ENOMEM;
                goto fail;
            }
            buf = grown;
        }
        n = read(fd, buf + len, cap - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            r = -errno;
            goto fail;
        }
        if (n == 0)
            break;
        len += (size_t)n;
        if (len > CONFIG_FILE_MAX) {
            r = -EFBIG;
            goto fail;
        }
    }
    (void)close(fd);
    *ret_buf = buf;
    *ret_len = len;
    return 0;
fail:
    (void)close(fd);
    free(buf);
    return r;
}

int config_load_file(struct config *cfg, const char *path, char *err, size_t err_len)
{
    char *buf = NULL;
    size_t len = 0;
    int r;

    r = config_read_file(path, &buf, &len);
    if (r == -EFBIG) {
        config_err(err, err_len, "%s: larger than %u bytes, the most a config file may be", path,
                   CONFIG_FILE_MAX);
        return r;
    }
    if (r < 0) {
        const char *why = strerrordesc_np(-r);
        config_err(err, err_len, "%s: cannot read: %s", path, why ? why : "unknown error");
        return r;
    }
    r = config_load_buffer(cfg, path, buf, len, err, err_len);
    free(buf);
    return r;
}

int config_set(struct config *cfg, const char *key, const char *value, char *err, size_t err_len)
{
    const struct config_key *k = NULL;
    const struct config_rule *rule;
    struct config *work = NULL;
    char name[64], flag[80], why[CONFIG_ERR_MAX], list[CONFIG_ERR_MAX];
    char q[CONFIG_QUOTE_MAX * 4 + 4];
    size_t i;
    int r;

    /* Accept the flag's spelling too ("max-frame"): main may pass either. */
    if (strlen(key) < sizeof(name)) {
        for (i = 0; key[i]; i++)
            name[i] = (char)(key[i] == '-' ? '_' : key[i]);
        name[i] = '\0';
        k = config_key_find(name);
    }
    if (!k) {
        config_err(err, err_len, "--%s: not a configuration option; known ones are: %s",
                   config_quote(q, sizeof(q), key),
                   config_key_list(list, sizeof(list), CONFIG_STYLE_FLAG));
        return -EINVAL;
    }
    config_flag_name(flag, sizeof(flag), k->name);

    r = config_dup(cfg, &work);
    if (r < 0) {
        config_err(err, err_len, "%s: out of memory", flag);
        return r;
    }
    r = config_key_apply(work, k, value, why, sizeof(why));
    if (r == -ENOMEM) {
        config_err(err, err_len, "%s: out of memory", flag);
        goto out;
    }
    if (r < 0) {
        config_err(err, err_len, "%s: %s", flag, why);
        goto out;
    }
    rule = config_rule_broken(work);
    if (rule) {
        /* Flags are applied one at a time, so the one being set is to blame. */
        const char *blame = strcmp(rule->lo, k->name) == 0 ? rule->lo : rule->hi;
        config_rule_why(work, rule, blame, CONFIG_STYLE_FLAG, why, sizeof(why));
        config_err(err, err_len, "%s: %s", flag, why);
        r = -EINVAL;
        goto out;
    }
    config_commit(cfg, work);
    work = NULL;
out:
    config_free(work);
    return r;
}

const struct config_attestor *config_attestor(const struct config *cfg, const char *name)
{
    size_t i;

    for (i = 0; i < cfg->n_attestors; i++)
        if (strcmp(cfg->attestors[i].name, name) == 0)
            return &cfg->attestors[i];
    return NULL;
}
