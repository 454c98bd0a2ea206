/* The agent's configuration (see config.h): the model. The [agent] key
 * table, value parsing and validation, the rules between keys, the storage
 * of [attestor.NAME] sections, config_new/config_free, command-line flags
 * (config_set) and config_attestor.
 *
 * Reading INI files is in config_ini.c: it drives inih, tracks lines and
 * sections, and reaches the key table only through the functions declared
 * in config_internal.h, so this file knows nothing of files or lines. A load
 * and config_set both change a copy (config_dup) and swap it in only when
 * every check passed (config_commit). */
#include "config.h"
#include "config_internal.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/un.h>

#define CONFIG_TRUST_DOMAIN_MAX 255
#define CONFIG_SOCKET_PATH_MAX  (sizeof(((struct sockaddr_un *)0)->sun_path) - 1)

enum config_kind {
    CONFIG_KIND_PATH,
    CONFIG_KIND_SOCKET_PATH,
    CONFIG_KIND_OPTIONAL_SOCKET_PATH, /* as above; empty means none (NULL) */
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
    CONFIG_KEY("metrics_socket", CONFIG_KIND_OPTIONAL_SOCKET_PATH, metrics_socket_path, 0, 0),
    CONFIG_KEY("metrics_socket_mode", CONFIG_KIND_MODE, metrics_socket_mode, 0, 0777),
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

_Static_assert(sizeof(config_keys) / sizeof(config_keys[0]) == CONFIG_N_KEYS,
               "CONFIG_N_KEYS in config_internal.h must count config_keys");

static const struct config_rule config_rules[] = {
    {"max_frame", "request_memory", false},   {"max_connections_per_uid", "max_connections", false},
    {"socket", "admin_socket", true},         {"socket", "metrics_socket", true},
    {"admin_socket", "metrics_socket", true}, {"default_ttl", "max_ttl", false},
};

/* Writes at most CONFIG_QUOTE_MAX of the len bytes at s into out, escaping
 * quotes, backslashes and anything unprintable, so a message stays one line of
 * text; "..." marks a cut. */
const char *config_quote_n(char *out, size_t out_len, const char *s, size_t len)
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

const char *config_quote(char *out, size_t out_len, const char *s)
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
const char *config_key_list(char *out, size_t out_len, enum config_style style)
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

const struct config_key *config_key_find(const char *name)
{
    size_t i;

    for (i = 0; i < CONFIG_N_KEYS; i++)
        if (strcmp(config_keys[i].name, name) == 0)
            return &config_keys[i];
    return NULL;
}

size_t config_key_index(const struct config_key *k)
{
    return (size_t)(k - config_keys);
}

bool config_has_control(const char *s)
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
        if (list.n >= CONFIG_ID_LIST_MAX ||
            !config_parse_u32(num, 0, 4294967294u, &list.ids[list.n]))
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

bool config_parse_bool(const char *s, bool *ret)
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
int config_key_apply(struct config *cfg, const struct config_key *k, const char *value, char *why,
                     size_t why_len)
{
    char *field = (char *)cfg + k->offset;
    size_t len = strlen(value);
    char q[CONFIG_QUOTE_MAX * 4 + 4];
    uint32_t u;
    bool b;

    if (len > CONFIG_VALUE_MAX) {
        text_err(why, why_len, "must be at most %d bytes long, got %zu bytes", CONFIG_VALUE_MAX,
                 len);
        return -EINVAL;
    }

    switch (k->kind) {
    case CONFIG_KIND_OPTIONAL_SOCKET_PATH:
        if (!*value) {
            free(*(char **)(void *)field);
            *(char **)(void *)field = NULL;
            return 0;
        }
        __attribute__((fallthrough));
    case CONFIG_KIND_PATH:
    case CONFIG_KIND_SOCKET_PATH:
        if (value[0] != '/') {
            text_err(why, why_len, "must be an absolute path (starting with '/')%s, got \"%s\"",
                     k->kind == CONFIG_KIND_OPTIONAL_SOCKET_PATH ? ", or empty for none" : "",
                     config_quote(q, sizeof(q), value));
            return -EINVAL;
        }
        if (config_has_control(value)) {
            text_err(why, why_len, "must not contain control characters, got \"%s\"",
                     config_quote(q, sizeof(q), value));
            return -EINVAL;
        }
        if (k->kind != CONFIG_KIND_PATH && len > CONFIG_SOCKET_PATH_MAX) {
            text_err(why, why_len,
                     "must be at most %zu bytes long (the size of a Unix socket address), "
                     "got %zu bytes",
                     CONFIG_SOCKET_PATH_MAX, len);
            return -EINVAL;
        }
        if (len >= PATH_MAX) {
            text_err(why, why_len, "must be at most %d bytes long, got %zu bytes", PATH_MAX - 1,
                     len);
            return -EINVAL;
        }
        return config_replace_string((char **)(void *)field, value);
    case CONFIG_KIND_TRUST_DOMAIN:
        if (!config_valid_trust_domain(value)) {
            text_err(why, why_len,
                     "must be 1 to %d characters of a-z, 0-9, '.', '-' and '_', got \"%s\"",
                     CONFIG_TRUST_DOMAIN_MAX, config_quote(q, sizeof(q), value));
            return -EINVAL;
        }
        return config_replace_string((char **)(void *)field, value);
    case CONFIG_KIND_MODE:
        if (!config_parse_mode(value, &u)) {
            text_err(why, why_len, "must be an octal mode between 0000 and 0777, got \"%s\"",
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
            text_err(why, why_len, "must be text or json, got \"%s\"",
                     config_quote(q, sizeof(q), value));
            return -EINVAL;
        }
        return 0;
    case CONFIG_KIND_U32:
        if (!config_parse_u32(value, k->min, k->max, &u)) {
            text_err(why, why_len, "must be a number between %u and %u, got \"%s\"", k->min, k->max,
                     config_quote(q, sizeof(q), value));
            return -EINVAL;
        }
        *(uint32_t *)(void *)field = u;
        return 0;
    case CONFIG_KIND_DURATION:
        if (!config_parse_duration(value, k->min, k->max, &u)) {
            text_err(why, why_len,
                     "must be a duration between %u and %u seconds (a number of seconds, or "
                     "with s, m, h or d), got \"%s\"",
                     k->min, k->max, config_quote(q, sizeof(q), value));
            return -EINVAL;
        }
        *(uint32_t *)(void *)field = u;
        return 0;
    case CONFIG_KIND_ID_LIST:
        if (!config_parse_id_list(value, (struct config_id_list *)(void *)field)) {
            text_err(why, why_len,
                     "must be a list of at most %u numeric ids separated by commas or spaces, "
                     "got \"%s\"",
                     CONFIG_ID_LIST_MAX, config_quote(q, sizeof(q), value));
            return -EINVAL;
        }
        return 0;
    case CONFIG_KIND_BOOL:
        if (!config_parse_bool(value, &b)) {
            text_err(why, why_len, "must be true, false, yes, no, 1 or 0, got \"%s\"",
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
const struct config_rule *config_rule_broken(const struct config *cfg)
{
    size_t i;

    for (i = 0; i < sizeof(config_rules) / sizeof(config_rules[0]); i++) {
        const struct config_rule *r = &config_rules[i];
        if (r->differ) {
            /* An optional path that is unset differs from everything. */
            const char *lo = config_string(cfg, r->lo), *hi = config_string(cfg, r->hi);
            if (lo && hi && strcmp(lo, hi) == 0)
                return r;
        } else if (config_u32(cfg, r->lo) > config_u32(cfg, r->hi)) {
            return r;
        }
    }
    return NULL;
}

/* Explains the broken rule r from the side of key blame (r->lo or r->hi). */
void config_rule_why(const struct config *cfg, const struct config_rule *r, const char *blame,
                     enum config_style style, char *why, size_t why_len)
{
    bool is_lo = strcmp(blame, r->lo) == 0;
    const char *other = is_lo ? r->hi : r->lo;
    char label[64], q[CONFIG_QUOTE_MAX * 4 + 4];

    config_key_label(label, sizeof(label), other, style);
    if (r->differ)
        text_err(why, why_len, "must differ from %s, both are \"%s\"", label,
                 config_quote(q, sizeof(q), config_string(cfg, blame)));
    else
        text_err(why, why_len, "must be %s %s (%u), got %u", is_lo ? "at most" : "at least", label,
                 config_u32(cfg, other), config_u32(cfg, blame));
}

void config_attestor_clear(struct config_attestor *a)
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

int config_attestor_add(struct config_attestor *a, const char *key, const char *value)
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
int config_attestor_append(struct config *cfg, const char *name, size_t len)
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
    cfg->metrics_socket_mode = 0600;
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
    cfg->workers = 0;
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
    free(cfg->metrics_socket_path);
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
int config_dup(const struct config *cfg, struct config **ret)
{
    struct config *c = calloc(1, sizeof(*c));
    size_t i, j;

    if (!c)
        return -ENOMEM;
    *c = *cfg;
    c->socket_path = c->admin_socket_path = c->metrics_socket_path = NULL;
    c->data_dir = c->trust_domain = c->plugin_dir = NULL;
    c->attestors = NULL;
    c->n_attestors = 0;
    if (config_dup_string(&c->socket_path, cfg->socket_path) < 0 ||
        config_dup_string(&c->admin_socket_path, cfg->admin_socket_path) < 0 ||
        config_dup_string(&c->metrics_socket_path, cfg->metrics_socket_path) < 0 ||
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
void config_commit(struct config *cfg, struct config *work)
{
    struct config old = *cfg;

    *cfg = *work;
    *work = old;
    config_free(work);
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
        text_err(err, err_len, "--%s: not a configuration option; known ones are: %s",
                 config_quote(q, sizeof(q), key),
                 config_key_list(list, sizeof(list), CONFIG_STYLE_FLAG));
        return -EINVAL;
    }
    config_flag_name(flag, sizeof(flag), k->name);

    r = config_dup(cfg, &work);
    if (r < 0) {
        text_err(err, err_len, "%s: out of memory", flag);
        return r;
    }
    r = config_key_apply(work, k, value, why, sizeof(why));
    if (r == -ENOMEM) {
        text_err(err, err_len, "%s: out of memory", flag);
        goto out;
    }
    if (r < 0) {
        text_err(err, err_len, "%s: %s", flag, why);
        goto out;
    }
    rule = config_rule_broken(work);
    if (rule) {
        /* Flags are applied one at a time, so the one being set is to blame. */
        const char *blame = strcmp(rule->lo, k->name) == 0 ? rule->lo : rule->hi;
        config_rule_why(work, rule, blame, CONFIG_STYLE_FLAG, why, sizeof(why));
        text_err(err, err_len, "%s: %s", flag, why);
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
