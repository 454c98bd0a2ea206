/* The agent's configuration files (see config.h): loading an INI file or
 * buffer through inih, the line reader, and section handling.
 *
 * Separate from config.c, the model (keys, values, rules), because this is
 * the part that reads untrusted bytes and works around inih; it applies
 * every value through config.c's functions (config_internal.h) and adds
 * only what a file has: lines, sections, repeats and positions in messages.
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
#include "config_internal.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ini.h>

#define CONFIG_FILE_MAX          (1024u * 1024u)
#define CONFIG_LINE_MAX          8192 /* cap, in case inih is given a larger buffer */
#define CONFIG_ATTESTORS_MAX     32
#define CONFIG_ATTESTOR_KEYS_MAX 64
#define CONFIG_ATTESTOR_NAME_MAX 32
#define CONFIG_PLUGIN_KEY_MAX    64
#define CONFIG_ATTESTOR_PREFIX   "attestor."

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
    text_err(p->err, p->err_len, "%s:%u: %s", p->name, p->lineno, msg);
}

static void config_fail_nomem(struct config_parse *p)
{
    if (p->error)
        return;
    p->error = -ENOMEM;
    p->error_line = p->lineno;
    text_err(p->err, p->err_len, "%s: out of memory", p->name);
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
    idx = config_key_index(k);
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
    text_err(p->err, p->err_len,
             "%s:%u: expected '[section]', 'key = value' or a comment, got \"%s\"", p->name, lineno,
             config_quote(q, sizeof(q), text));
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
    lo_line = p->key_line[config_key_index(lo)];
    hi_line = p->key_line[config_key_index(hi)];
    blame = lo_line > hi_line ? r->lo : r->hi;
    config_rule_why(p->cfg, r, blame, CONFIG_STYLE_FILE, why, sizeof(why));
    if (lo_line || hi_line)
        text_err(p->err, p->err_len, "%s:%u: key '%s': %s", p->name,
                 lo_line > hi_line ? lo_line : hi_line, blame, why);
    else
        text_err(p->err, p->err_len, "%s: key '%s': %s", p->name, blame, why);
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
        text_err(err, err_len, "%s: is %zu bytes; at most %u are allowed", name, len,
                 CONFIG_FILE_MAX);
        return -EFBIG;
    }
    r = config_dup(cfg, &work);
    p = calloc(1, sizeof(*p));
    if (r < 0 || !p) {
        text_err(err, err_len, "%s: out of memory", name);
        r = -ENOMEM;
        goto out;
    }
    *p = (struct config_parse){
        .cfg = work, .name = name, .buf = buf, .len = len, .err = err, .err_len = err_len};

    line = ini_parse_stream(config_read_line, p, config_on_key, p);
    if (line < 0) {
        text_err(err, err_len, "%s: out of memory", name);
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
        text_err(err, err_len, "%s: larger than %u bytes, the most a config file may be", path,
                 CONFIG_FILE_MAX);
        return r;
    }
    if (r < 0) {
        const char *why = strerrordesc_np(-r);
        text_err(err, err_len, "%s: cannot read: %s", path, why ? why : "unknown error");
        return r;
    }
    r = config_load_buffer(cfg, path, buf, len, err, err_len);
    free(buf);
    return r;
}
