/* The agent's configuration (agent/config.c).
 *
 * What an operator sees of this module is its error messages, so most tests
 * compare the whole message: file, line, key, what is wrong, what is allowed.
 * Every refused load is also checked to have left the config as it was. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ini.h>

#include "config.h"

#define KNOWN_KEYS                                                                                 \
    "socket, admin_socket, data_dir, trust_domain, plugin_dir, socket_mode, admin_socket_mode, "   \
    "metrics_socket, metrics_socket_mode, admin_uids, admin_gids, default_ttl, max_ttl, "          \
    "key_rotation, log_format, "                                                                   \
    "max_frame, request_memory, max_connections, max_connections_per_uid, frame_timeout_ms, "      \
    "idle_timeout_ms, attest_timeout_ms, workers, require_peer_pidfd"

static struct config *new_config(void)
{
    struct config *cfg = NULL;

    assert_int_equal(config_new(&cfg), 0);
    assert_non_null(cfg);
    return cfg;
}

/* Loads text (without its NUL) as "t.conf" into cfg. */
static int load(struct config *cfg, const char *text, char *err)
{
    size_t len = strlen(text);
    char *copy = malloc(len ? len : 1); /* no terminator: ASan sees an over-read */
    int r;

    assert_non_null(copy);
    memcpy(copy, text, len);
    err[0] = '\0';
    r = config_load_buffer(cfg, "t.conf", copy, len, err, CONFIG_ERR_MAX);
    free(copy);
    return r;
}

/* Refused with exactly this message, and cfg still holds the defaults. */
static void expect_error(const char *text, const char *message)
{
    struct config *cfg = new_config();
    char err[CONFIG_ERR_MAX];

    assert_int_equal(load(cfg, text, err), -EINVAL);
    assert_string_equal(err, message);
    assert_string_equal(cfg->socket_path, "/run/sockid/agent.sock");
    assert_int_equal(cfg->max_frame, 65536);
    assert_int_equal(cfg->workers, 0);
    assert_int_equal(cfg->n_attestors, 0);
    assert_null(cfg->attestors);
    config_free(cfg);
}

static void expect_set_error(const char *key, const char *value, const char *message)
{
    struct config *cfg = new_config();
    char err[CONFIG_ERR_MAX] = "";

    assert_int_equal(config_set(cfg, key, value, err, sizeof(err)), -EINVAL);
    assert_string_equal(err, message);
    assert_int_equal(cfg->max_frame, 65536);
    assert_string_equal(cfg->trust_domain, "example.org");
    config_free(cfg);
}

static void test_defaults(void **state)
{
    struct config *cfg = new_config();

    (void)state;
    assert_string_equal(cfg->socket_path, "/run/sockid/agent.sock");
    assert_string_equal(cfg->admin_socket_path, "/run/sockid/admin.sock");
    assert_string_equal(cfg->data_dir, "/var/lib/sockid");
    assert_string_equal(cfg->trust_domain, "example.org");
    assert_null(cfg->plugin_dir);
    assert_int_equal(cfg->socket_mode, 0666);
    assert_int_equal(cfg->log_format, LOG_FORMAT_TEXT);
    assert_int_equal(cfg->max_frame, 65536);
    assert_int_equal(cfg->request_memory, 262144);
    assert_int_equal(cfg->max_connections, 4096);
    assert_int_equal(cfg->max_connections_per_uid, 256);
    assert_int_equal(cfg->frame_timeout_ms, 5000);
    assert_int_equal(cfg->idle_timeout_ms, 60000);
    assert_int_equal(cfg->attest_timeout_ms, 1000);
    assert_int_equal(cfg->workers, 0);
    assert_false(cfg->require_peer_pidfd);
    assert_int_equal(cfg->n_attestors, 0);
    assert_null(config_attestor(cfg, "unix"));
    assert_null(config_free(cfg));
    assert_null(config_free(NULL));
}

static const char full_file[] = "; sockid agent configuration\n"
                                "# both comment styles\n"
                                "[agent]\n"
                                "socket = /run/s/agent.sock\n"
                                "admin_socket=/run/s/admin.sock\n"
                                "data_dir = /srv/sockid\n"
                                "trust_domain = prod.example-1.org\n"
                                "plugin_dir = /opt/sockid/attestors\n"
                                "socket_mode = 0660\n"
                                "log_format = json\n"
                                "max_frame = 1048576\n"
                                "request_memory = 4194304\n"
                                "max_connections = 100\n"
                                "max_connections_per_uid = 100\n"
                                "frame_timeout_ms = 250\n"
                                "idle_timeout_ms = 30000\n"
                                "attest_timeout_ms = 2000\n"
                                "workers = 0 ; one per CPU\n"
                                "require_peer_pidfd = yes\n"
                                "\n"
                                "[attestor.unix]\n"
                                "required = true\n"
                                "sha256 = true\n"
                                "user_names = no\n"
                                "[attestor.cgroup]\n"
                                "[attestor.k8s-pods_2]\n"
                                "b = 2\n"
                                "a = x=y;z\n"
                                "required = no\n";

static void test_full_file(void **state)
{
    struct config *cfg = new_config();
    const struct config_attestor *a;
    char err[CONFIG_ERR_MAX];

    (void)state;
    assert_int_equal(load(cfg, full_file, err), 0);
    assert_string_equal(cfg->socket_path, "/run/s/agent.sock");
    assert_string_equal(cfg->admin_socket_path, "/run/s/admin.sock");
    assert_string_equal(cfg->data_dir, "/srv/sockid");
    assert_string_equal(cfg->trust_domain, "prod.example-1.org");
    assert_string_equal(cfg->plugin_dir, "/opt/sockid/attestors");
    assert_int_equal(cfg->socket_mode, 0660);
    assert_int_equal(cfg->log_format, LOG_FORMAT_JSON);
    assert_int_equal(cfg->max_frame, 1048576);
    assert_int_equal(cfg->request_memory, 4194304);
    assert_int_equal(cfg->max_connections, 100);
    assert_int_equal(cfg->max_connections_per_uid, 100);
    assert_int_equal(cfg->frame_timeout_ms, 250);
    assert_int_equal(cfg->idle_timeout_ms, 30000);
    assert_int_equal(cfg->attest_timeout_ms, 2000);
    assert_int_equal(cfg->workers, 0);
    assert_true(cfg->require_peer_pidfd);

    /* Sections in file order; "required" is the host's, the rest the plugin's. */
    assert_int_equal(cfg->n_attestors, 3);
    assert_string_equal(cfg->attestors[0].name, "unix");
    assert_string_equal(cfg->attestors[1].name, "cgroup");
    assert_string_equal(cfg->attestors[2].name, "k8s-pods_2");
    a = config_attestor(cfg, "unix");
    assert_ptr_equal(a, &cfg->attestors[0]);
    assert_true(a->required);
    assert_int_equal(a->n, 2);
    assert_string_equal(a->keys[0], "sha256");
    assert_string_equal(a->values[0], "true");
    assert_string_equal(a->keys[1], "user_names");
    assert_string_equal(a->values[1], "no");
    a = config_attestor(cfg, "cgroup");
    assert_non_null(a);
    assert_false(a->required);
    assert_int_equal(a->n, 0);
    a = config_attestor(cfg, "k8s-pods_2");
    assert_non_null(a);
    assert_false(a->required);
    assert_int_equal(a->n, 2);
    assert_string_equal(a->keys[0], "b");
    assert_string_equal(a->keys[1], "a");
    assert_string_equal(a->values[1], "x=y;z"); /* ';' without a space before it is data */
    assert_null(config_attestor(cfg, "container"));
    config_free(cfg);
}

static void test_empty_and_comment_only(void **state)
{
    struct config *cfg = new_config();
    char err[CONFIG_ERR_MAX];

    (void)state;
    assert_int_equal(load(cfg, "", err), 0);
    assert_int_equal(load(cfg, "\n\n; nothing\n   \n# here\n", err), 0);
    assert_int_equal(load(cfg, "[agent]", err), 0);
    assert_int_equal(cfg->max_frame, 65536);
    config_free(cfg);
}

/* A value for every key that the key refuses, and what the user is told. */
static void test_bad_values(void **state)
{
    static const struct {
        const char *key, *value, *why;
    } cases[] = {
        {"socket", "run/agent.sock",
         "must be an absolute path (starting with '/'), got "
         "\"run/agent.sock\""},
        {"socket",
         "/run/a\x01"
         "b",
         "must not contain control characters, got \"/run/a\\x01b\""},
        {"admin_socket", "", "must be an absolute path (starting with '/'), got \"\""},
        {"data_dir", "var/lib/sockid",
         "must be an absolute path (starting with '/'), got "
         "\"var/lib/sockid\""},
        {"plugin_dir", "./attestors",
         "must be an absolute path (starting with '/'), got "
         "\"./attestors\""},
        {"trust_domain", "Example.org",
         "must be 1 to 255 characters of a-z, 0-9, '.', '-' and "
         "'_', got \"Example.org\""},
        {"trust_domain", "a\"b",
         "must be 1 to 255 characters of a-z, 0-9, '.', '-' and '_', "
         "got \"a\\\"b\""},
        {"trust_domain", "spiffe://x",
         "must be 1 to 255 characters of a-z, 0-9, '.', '-' and "
         "'_', got \"spiffe://x\""},
        {"socket_mode", "0778", "must be an octal mode between 0000 and 0777, got \"0778\""},
        {"socket_mode", "01000", "must be an octal mode between 0000 and 0777, got \"01000\""},
        {"socket_mode", "rw-rw-rw-",
         "must be an octal mode between 0000 and 0777, got "
         "\"rw-rw-rw-\""},
        {"log_format", "xml", "must be text or json, got \"xml\""},
        {"log_format", "JSON", "must be text or json, got \"JSON\""},
        {"max_frame", "12x", "must be a number between 512 and 16777216, got \"12x\""},
        {"max_frame", "511", "must be a number between 512 and 16777216, got \"511\""},
        {"max_frame", "16777217", "must be a number between 512 and 16777216, got \"16777217\""},
        {"max_frame", "+1024", "must be a number between 512 and 16777216, got \"+1024\""},
        {"max_frame", "-1", "must be a number between 512 and 16777216, got \"-1\""},
        {"max_frame", "0x1000", "must be a number between 512 and 16777216, got \"0x1000\""},
        {"max_frame", "1 024", "must be a number between 512 and 16777216, got \"1 024\""},
        {"max_frame", "99999999999999999999999",
         "must be a number between 512 and 16777216, "
         "got \"99999999999999999999999\""},
        {"request_memory", "1k", "must be a number between 512 and 268435456, got \"1k\""},
        {"max_connections", "0", "must be a number between 1 and 1048576, got \"0\""},
        {"max_connections_per_uid", "", "must be a number between 1 and 1048576, got \"\""},
        {"frame_timeout_ms", "0", "must be a number between 1 and 3600000, got \"0\""},
        {"idle_timeout_ms", "86400001",
         "must be a number between 1 and 86400000, got "
         "\"86400001\""},
        {"attest_timeout_ms", "1.5", "must be a number between 1 and 600000, got \"1.5\""},
        {"workers", "1025", "must be a number between 0 and 1024, got \"1025\""},
        {"require_peer_pidfd", "maybe", "must be true, false, yes, no, 1 or 0, got \"maybe\""},
        {"require_peer_pidfd", "on", "must be true, false, yes, no, 1 or 0, got \"on\""},
    };
    char text[512], want[CONFIG_ERR_MAX];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        (void)snprintf(text, sizeof(text), "[agent]\n# line 2\n%s = %s\n", cases[i].key,
                       cases[i].value);
        (void)snprintf(want, sizeof(want), "t.conf:3: key '%s': %s", cases[i].key, cases[i].why);
        expect_error(text, want);
    }
}

/* The edges of each range are accepted, and the odd but valid spellings. */
static void test_good_edges(void **state)
{
    struct config *cfg = new_config();
    char err[CONFIG_ERR_MAX];

    (void)state;
    assert_int_equal(load(cfg,
                          "[agent]\nmax_frame = 512\nrequest_memory = 00512\nworkers = 1024\n"
                          "socket_mode = 600\nrequire_peer_pidfd = TRUE\nmax_connections = 1\n"
                          "max_connections_per_uid = 1\n",
                          err),
                     0);
    assert_int_equal(cfg->max_frame, 512);
    assert_int_equal(cfg->request_memory, 512);
    assert_int_equal(cfg->workers, 1024);
    assert_int_equal(cfg->socket_mode, 0600);
    assert_true(cfg->require_peer_pidfd);
    assert_int_equal(load(cfg,
                          "[agent]\nrequest_memory = 268435456\nmax_frame = 16777216\n"
                          "socket_mode = 0\nrequire_peer_pidfd = 0\n",
                          err),
                     0);
    assert_int_equal(cfg->max_frame, 16777216);
    assert_int_equal(cfg->socket_mode, 0);
    assert_false(cfg->require_peer_pidfd);
    config_free(cfg);
}

static void test_socket_path_length(void **state)
{
    struct config *cfg = new_config();
    char path[200], text[300], err[CONFIG_ERR_MAX];

    (void)state;
    memset(path, 'a', sizeof(path));
    path[0] = '/';
    path[107] = '\0'; /* 107 bytes: fits sun_path with its terminator */
    (void)snprintf(text, sizeof(text), "[agent]\nsocket = %s\n", path);
    assert_int_equal(load(cfg, text, err), 0);
    assert_string_equal(cfg->socket_path, path);
    config_free(cfg);

    path[107] = 'a';
    path[108] = '\0';
    (void)snprintf(text, sizeof(text), "[agent]\nadmin_socket = %s\n", path);
    expect_error(text, "t.conf:2: key 'admin_socket': must be at most 107 bytes long (the size "
                       "of a Unix socket address), got 108 bytes");
}

static void test_long_value_is_cut_in_message(void **state)
{
    char text[256];

    (void)state;
    (void)snprintf(text, sizeof(text), "[agent]\nlog_format = %s\n",
                   "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyz");
    expect_error(text, "t.conf:2: key 'log_format': must be text or json, got "
                       "\"abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuv...\"");
}

static void test_unknown_key(void **state)
{
    (void)state;
    expect_error("[agent]\nsocket = /run/a.sock\nfoo = 1\n",
                 "t.conf:3: unknown key 'foo' in [agent]; known keys are: " KNOWN_KEYS);
    expect_error("[agent]\nmax-frame = 1024\n",
                 "t.conf:2: unknown key 'max-frame' in [agent]; known keys are: " KNOWN_KEYS);
    expect_error("[agent]\n= 1\n",
                 "t.conf:2: unknown key '' in [agent]; known keys are: " KNOWN_KEYS);
}

static void test_unknown_section(void **state)
{
    (void)state;
    /* Reported on the header's own line, even with no key under it. */
    expect_error("[agent]\nworkers = 2\n\n[agnet]\n",
                 "t.conf:4: unknown section [agnet]; known sections are [agent] and "
                 "[attestor.NAME]");
    expect_error("[attestor]\nx = 1\n", "t.conf:1: unknown section [attestor]; known sections "
                                        "are [agent] and [attestor.NAME]");
    expect_error("[ agent ]\n", "t.conf:1: unknown section [ agent ]; known sections are [agent] "
                                "and [attestor.NAME]");
    expect_error("[agent\n", "t.conf:1: section header has no closing ']'");
    expect_error("[agent] x\n", "t.conf:1: unexpected text after section header [agent]");
    expect_error("[agent]\n[agent]\n",
                 "t.conf:2: section [agent] already appeared at line 1; each section may appear "
                 "once");
}

static void test_section_comment_allowed(void **state)
{
    struct config *cfg = new_config();
    char err[CONFIG_ERR_MAX];

    (void)state;
    assert_int_equal(load(cfg, "[agent] ; the daemon\nworkers = 3\n[attestor.unix] # x\n", err), 0);
    assert_int_equal(cfg->workers, 3);
    assert_non_null(config_attestor(cfg, "unix"));
    config_free(cfg);
}

static void test_key_before_section(void **state)
{
    (void)state;
    expect_error("# a comment\nsocket = /run/a.sock\n[agent]\n",
                 "t.conf:2: key 'socket' comes before any section; put it under [agent] or "
                 "[attestor.NAME]");
}

static void test_syntax_error(void **state)
{
    (void)state;
    expect_error("[agent]\nworkers = 2\nthis is not a key\n",
                 "t.conf:3: expected '[section]', 'key = value' or a comment, got "
                 "\"this is not a key\"");
    /* The first bad line wins, though inih reads on past it. */
    expect_error("[agent]\noops\nworkers = many\n",
                 "t.conf:2: expected '[section]', 'key = value' or a comment, got \"oops\"");
    expect_error("[agent]\nworkers = many\noops\n",
                 "t.conf:2: key 'workers': must be a number between 0 and 1024, got \"many\"");
    /* inih splits at the first ' ;' too, so this line has no '=' left. */
    expect_error("[agent]\nworkers ;= 2\n",
                 "t.conf:2: expected '[section]', 'key = value' or a comment, got "
                 "\"workers ;= 2\"");
}

/* An indented line is a key of its own, never the previous value's tail. */
static void test_indentation(void **state)
{
    struct config *cfg = new_config();
    char err[CONFIG_ERR_MAX];

    (void)state;
    assert_int_equal(load(cfg,
                          "[agent]\n  workers = 2\n\tmax_frame = 1024\n"
                          "   [attestor.unix]\n   sha256 = yes\n",
                          err),
                     0);
    assert_int_equal(cfg->workers, 2);
    assert_int_equal(cfg->max_frame, 1024);
    assert_int_equal(config_attestor(cfg, "unix")->n, 1);
    config_free(cfg);

    expect_error("[agent]\nworkers = 2\n   workers = 3\n",
                 "t.conf:3: key 'workers': already set at line 2; each key may appear once");
}

static void test_crlf_and_bom(void **state)
{
    struct config *cfg = new_config();
    char err[CONFIG_ERR_MAX];

    (void)state;
    assert_int_equal(
        load(cfg, "\xef\xbb\xbf[agent]\r\nworkers = 5\r\nlog_format = text\r\n\r\n", err), 0);
    assert_int_equal(cfg->workers, 5);
    assert_int_equal(cfg->log_format, LOG_FORMAT_TEXT);
    config_free(cfg);

    /* inih would skip a second mark and read a section header behind it. */
    expect_error("\xef\xbb\xbf\xef\xbb\xbf[bogus]\n",
                 "t.conf:1: stray byte order mark; a file may start with at most one");
    expect_error(" \xef\xbb\xbf[bogus]\n",
                 "t.conf:1: stray byte order mark; a file may start with at most one");
}

static void test_duplicate_agent_key(void **state)
{
    (void)state;
    expect_error("[agent]\nsocket = /a\ndata_dir = /d\nsocket = /b\n",
                 "t.conf:4: key 'socket': already set at line 2; each key may appear once");
}

static void test_attestor_required(void **state)
{
    (void)state;
    expect_error("[attestor.unix]\nrequired = sometimes\n",
                 "t.conf:2: key 'required': must be true, false, yes, no, 1 or 0, got "
                 "\"sometimes\"");
    expect_error("[attestor.unix]\nrequired = yes\nx = 1\nrequired = no\n",
                 "t.conf:4: key 'required': already set at line 2 in [attestor.unix]; each key "
                 "may appear once");
}

static void test_attestor_bad_name(void **state)
{
    (void)state;
    expect_error("[agent]\n[attestor.Unix]\n",
                 "t.conf:2: section [attestor.Unix]: an attestor name must be 1 to 32 "
                 "characters of a-z, 0-9, '_' and '-'");
    expect_error("[attestor.]\n", "t.conf:1: unknown section [attestor.]; known sections are "
                                  "[agent] and [attestor.NAME]");
    expect_error("[attestor.a.b]\n", "t.conf:1: section [attestor.a.b]: an attestor name must be "
                                     "1 to 32 characters of a-z, 0-9, '_' and '-'");
    expect_error("[attestor.abcdefghijklmnopqrstuvwxyz0123456]\n",
                 "t.conf:1: section [attestor.abcdefghijklmnopqrstuvwxyz0123456]: an attestor "
                 "name must be 1 to 32 characters of a-z, 0-9, '_' and '-'");
}

static void test_attestor_name_32(void **state)
{
    struct config *cfg = new_config();
    char err[CONFIG_ERR_MAX];

    (void)state;
    assert_int_equal(load(cfg, "[attestor.abcdefghijklmnopqrstuvwxyz012345]\n", err), 0);
    assert_non_null(config_attestor(cfg, "abcdefghijklmnopqrstuvwxyz012345"));
    config_free(cfg);
}

static void test_attestor_bad_key(void **state)
{
    (void)state;
    expect_error("[attestor.unix]\nSha256 = 1\n",
                 "t.conf:2: key 'Sha256': a key in [attestor.unix] must be 1 to 64 characters of "
                 "a-z, 0-9, '_', '-' and '.'");
    expect_error("[attestor.unix]\nnote = a\x7f"
                 "b\n",
                 "t.conf:2: key 'note': must not contain control characters, got \"a\\x7fb\"");
}

static void test_attestor_duplicate_key(void **state)
{
    (void)state;
    expect_error("[attestor.unix]\nsha256 = true\nuser = 1\nsha256 = false\n",
                 "t.conf:4: key 'sha256': already set at line 2 in [attestor.unix]; each key "
                 "may appear once");
}

static void test_attestor_duplicate_section(void **state)
{
    (void)state;
    expect_error("[attestor.unix]\nsha256 = true\n[agent]\n[attestor.unix]\n",
                 "t.conf:4: section [attestor.unix] already appeared at line 1; each section "
                 "may appear once");
}

static void test_attestor_limits(void **state)
{
    struct config *cfg = new_config();
    char *text = malloc(8192), err[CONFIG_ERR_MAX];
    size_t o = 0;
    int i;

    (void)state;
    assert_non_null(text);
    for (i = 0; i < 32; i++)
        o += (size_t)snprintf(text + o, 8192 - o, "[attestor.a%d]\n", i);
    assert_int_equal(load(cfg, text, err), 0);
    assert_int_equal(cfg->n_attestors, 32);
    config_free(cfg);
    (void)snprintf(text + o, 8192 - o, "[attestor.one-too-many]\n");
    expect_error(text, "t.conf:33: section [attestor.one-too-many]: at most 32 attestor sections "
                       "are allowed");

    cfg = new_config();
    o = (size_t)snprintf(text, 8192, "[attestor.unix]\nrequired = yes\n");
    for (i = 0; i < 64; i++)
        o += (size_t)snprintf(text + o, 8192 - o, "k%d = %d\n", i, i);
    assert_int_equal(load(cfg, text, err), 0);
    assert_int_equal(config_attestor(cfg, "unix")->n, 64);
    assert_string_equal(config_attestor(cfg, "unix")->keys[63], "k63");
    config_free(cfg);
    (void)snprintf(text + o, 8192 - o, "k64 = 64\n");
    expect_error(text, "t.conf:67: key 'k64': [attestor.unix] already has 64 keys, the most a "
                       "section may have");
    free(text);
}

static void test_embedded_nul(void **state)
{
    static const char text[] = "[agent]\nworkers = 2\nsocket = /run/a\0.sock\n";
    struct config *cfg = new_config();
    char err[CONFIG_ERR_MAX];

    (void)state;
    assert_int_equal(config_load_buffer(cfg, "t.conf", text, sizeof(text) - 1, err, sizeof(err)),
                     -EINVAL);
    assert_string_equal(err, "t.conf:3: line contains a NUL byte; a config file must be text");
    assert_int_equal(cfg->workers, 0);
    assert_string_equal(cfg->socket_path, "/run/sockid/agent.sock");
    /* Even in a comment. */
    assert_int_equal(config_load_buffer(cfg, "t.conf", "# a\0b\n", 6, err, sizeof(err)), -EINVAL);
    assert_string_equal(err, "t.conf:1: line contains a NUL byte; a config file must be text");
    config_free(cfg);
}

/* The buffer is len bytes, not a C string: what follows is not read. */
static void test_buffer_not_terminated(void **state)
{
    static const char text[] = "[agent]\nworkers = 7garbage";
    struct config *cfg = new_config();
    char err[CONFIG_ERR_MAX];

    (void)state;
    assert_int_equal(
        config_load_buffer(cfg, "t.conf", text, strlen("[agent]\nworkers = 7"), err, sizeof(err)),
        0);
    assert_int_equal(cfg->workers, 7);
    config_free(cfg);
}

static void test_missing_file(void **state)
{
    struct config *cfg = new_config();
    char err[CONFIG_ERR_MAX];

    (void)state;
    assert_int_equal(config_load_file(cfg, "/nonexistent/agent.conf", err, sizeof(err)), -ENOENT);
    assert_string_equal(err, "/nonexistent/agent.conf: cannot read: No such file or directory");
    assert_int_equal(config_load_file(cfg, "/", err, sizeof(err)), -EISDIR);
    assert_string_equal(err, "/: cannot read: Is a directory");
    assert_string_equal(cfg->socket_path, "/run/sockid/agent.sock");
    config_free(cfg);
}

static void write_file(const char *path, const char *text, size_t len)
{
    FILE *f = fopen(path, "wb");

    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

static void test_load_file(void **state)
{
    char dir[] = "/tmp/test_config.XXXXXX", path[64], err[CONFIG_ERR_MAX];
    struct config *cfg = new_config();
    char *big;

    (void)state;
    assert_non_null(mkdtemp(dir));
    (void)snprintf(path, sizeof(path), "%s/agent.conf", dir);
    write_file(path, full_file, strlen(full_file));
    assert_int_equal(config_load_file(cfg, path, err, sizeof(err)), 0);
    assert_int_equal(cfg->max_frame, 1048576);
    assert_int_equal(cfg->n_attestors, 3);

    write_file(path, "[agent]\nworkers = x\n", 20);
    assert_int_equal(config_load_file(cfg, path, err, sizeof(err)), -EINVAL);
    assert_true(strncmp(err, path, strlen(path)) == 0);
    assert_string_equal(err + strlen(path),
                        ":2: key 'workers': must be a number between 0 and 1024, got \"x\"");
    assert_int_equal(cfg->workers, 0); /* still the first file's */

    /* Over 1 MiB of comments: refused by size before anything is parsed. */
    big = malloc(1024 * 1024 + 2);
    assert_non_null(big);
    memset(big, '#', 1024 * 1024 + 1);
    write_file(path, big, 1024 * 1024 + 1);
    assert_int_equal(config_load_file(cfg, path, err, sizeof(err)), -EFBIG);
    assert_string_equal(err + strlen(path),
                        ": larger than 1048576 bytes, the most a config file may be");
    assert_int_equal(config_load_buffer(cfg, "big", big, 1024 * 1024 + 1, err, sizeof(err)),
                     -EFBIG);
    assert_string_equal(err, "big: is 1048577 bytes; at most 1048576 are allowed");
    free(big);

    assert_int_equal(unlink(path), 0);
    assert_int_equal(rmdir(dir), 0);
    config_free(cfg);
}

static void test_cross_field(void **state)
{
    (void)state;
    /* The key set last in the file is the one named. */
    expect_error("[agent]\nmax_frame = 1048576\n",
                 "t.conf:2: key 'max_frame': must be at most request_memory (262144), got "
                 "1048576");
    expect_error("[agent]\nmax_frame = 4096\nrequest_memory = 1024\n",
                 "t.conf:3: key 'request_memory': must be at least max_frame (4096), got 1024");
    expect_error("[agent]\nmax_connections = 10\n",
                 "t.conf:2: key 'max_connections': must be at least max_connections_per_uid "
                 "(256), got 10");
    expect_error("[agent]\nmax_connections = 10\nmax_connections_per_uid = 11\n",
                 "t.conf:3: key 'max_connections_per_uid': must be at most max_connections (10), "
                 "got 11");
    expect_error("[agent]\nsocket = /run/x.sock\nadmin_socket = /run/x.sock\n",
                 "t.conf:3: key 'admin_socket': must differ from socket, both are "
                 "\"/run/x.sock\"");
}

/* The order of keys inside a file does not matter: rules apply to the result. */
static void test_cross_field_order_free(void **state)
{
    struct config *cfg = new_config();
    char err[CONFIG_ERR_MAX];

    (void)state;
    assert_int_equal(load(cfg,
                          "[agent]\nmax_frame = 1048576\nrequest_memory = 2097152\n"
                          "max_connections_per_uid = 5000\nmax_connections = 6000\n",
                          err),
                     0);
    assert_int_equal(cfg->max_frame, 1048576);
    assert_int_equal(cfg->max_connections_per_uid, 5000);
    config_free(cfg);
}

static void test_error_leaves_config_alone(void **state)
{
    struct config *cfg = new_config();
    char err[CONFIG_ERR_MAX];

    (void)state;
    assert_int_equal(load(cfg, full_file, err), 0);
    assert_int_equal(load(cfg,
                          "[agent]\nworkers = 9\ndata_dir = /elsewhere\n[attestor.unix]\n"
                          "[attestor.new]\nk = v\n[agent2]\n",
                          err),
                     -EINVAL);
    assert_string_equal(err, "t.conf:7: unknown section [agent2]; known sections are [agent] and "
                             "[attestor.NAME]");
    assert_int_equal(cfg->workers, 0);
    assert_string_equal(cfg->data_dir, "/srv/sockid");
    assert_int_equal(cfg->n_attestors, 3);
    assert_true(config_attestor(cfg, "unix")->required);
    assert_int_equal(config_attestor(cfg, "unix")->n, 2);
    assert_null(config_attestor(cfg, "new"));
    config_free(cfg);
}

/* A second file's [attestor.NAME] replaces the first one's, whole. */
static void test_second_file_replaces_attestor(void **state)
{
    struct config *cfg = new_config();
    const struct config_attestor *a;
    char err[CONFIG_ERR_MAX];

    (void)state;
    assert_int_equal(load(cfg, full_file, err), 0);
    assert_int_equal(load(cfg, "[attestor.unix]\nuser_names = yes\n[attestor.systemd]\n", err), 0);
    assert_int_equal(cfg->n_attestors, 4);
    a = config_attestor(cfg, "unix");
    assert_false(a->required);
    assert_int_equal(a->n, 1);
    assert_string_equal(a->keys[0], "user_names");
    assert_string_equal(a->values[0], "yes");
    assert_int_equal(config_attestor(cfg, "k8s-pods_2")->n, 2);
    assert_string_equal(cfg->attestors[3].name, "systemd");
    assert_string_equal(cfg->trust_domain, "prod.example-1.org"); /* untouched keys stay */
    config_free(cfg);
}

static void test_huge_line(void **state)
{
    size_t limit = (size_t)ini_max_line - 1; /* what the packaged inih can hold */
    char *text = malloc(limit + 64), want[CONFIG_ERR_MAX];
    struct config *cfg = new_config();
    char err[CONFIG_ERR_MAX];
    size_t o;

    (void)state;
    assert_non_null(text);
    /* Exactly at the limit: accepted (the value is then bad, but parsed whole). */
    o = (size_t)snprintf(text, limit + 64, "[agent]\ndata_dir = /");
    memset(text + o, 'd', limit - strlen("data_dir = /"));
    text[o + limit - strlen("data_dir = /")] = '\0';
    assert_int_equal(load(cfg, text, err), 0);
    assert_int_equal(strlen(cfg->data_dir), limit - strlen("data_dir = "));

    /* One more: refused, never split into two lines as inih alone would. */
    strcat(text, "=x\n");
    (void)snprintf(want, sizeof(want), "t.conf:2: line is %zu bytes long; at most %zu are allowed",
                   limit + 2, limit);
    expect_error(text, want);

    /* A comment line may be as long as it likes. */
    memset(text, '#', limit + 40);
    text[limit + 40] = '\0';
    assert_int_equal(load(cfg, text, err), 0);
    free(text);
    config_free(cfg);
}

static void test_set(void **state)
{
    struct config *cfg = new_config();
    char err[CONFIG_ERR_MAX];

    (void)state;
    assert_int_equal(config_set(cfg, "socket", "/tmp/s.sock", err, sizeof(err)), 0);
    assert_string_equal(cfg->socket_path, "/tmp/s.sock");
    assert_int_equal(config_set(cfg, "max_frame", "1024", err, sizeof(err)), 0);
    assert_int_equal(cfg->max_frame, 1024);
    /* The flag's own spelling is accepted as well. */
    assert_int_equal(config_set(cfg, "trust-domain", "corp.internal", err, sizeof(err)), 0);
    assert_string_equal(cfg->trust_domain, "corp.internal");
    assert_int_equal(config_set(cfg, "log_format", "json", err, sizeof(err)), 0);
    assert_int_equal(cfg->log_format, LOG_FORMAT_JSON);
    assert_int_equal(config_set(cfg, "plugin_dir", "/p", err, sizeof(err)), 0);
    assert_string_equal(cfg->plugin_dir, "/p");
    config_free(cfg);
}

static void test_set_errors(void **state)
{
    char value[5000];

    (void)state;
    expect_set_error("max_frame", "12x",
                     "--max-frame: must be a number between 512 and 16777216, got \"12x\"");
    expect_set_error("max-frame", "12x",
                     "--max-frame: must be a number between 512 and 16777216, got \"12x\"");
    expect_set_error("trust_domain", "Example.org",
                     "--trust-domain: must be 1 to 255 characters of a-z, 0-9, '.', '-' and '_', "
                     "got \"Example.org\"");
    expect_set_error("require_peer_pidfd", "sure",
                     "--require-peer-pidfd: must be true, false, yes, no, 1 or 0, got \"sure\"");
    expect_set_error("data_dir", "/var/lib/\nsockid",
                     "--data-dir: must not contain control characters, got "
                     "\"/var/lib/\\x0asockid\"");
    expect_set_error("max_frame", "1048576",
                     "--max-frame: must be at most --request-memory (262144), got 1048576");
    expect_set_error("max_connections_per_uid", "5000",
                     "--max-connections-per-uid: must be at most --max-connections (4096), got "
                     "5000");
    expect_set_error("admin_socket", "/run/sockid/agent.sock",
                     "--admin-socket: must differ from --socket, both are "
                     "\"/run/sockid/agent.sock\"");
    expect_set_error("bogus", "1",
                     "--bogus: not a configuration option; known ones are: --socket, "
                     "--admin-socket, --data-dir, --trust-domain, --plugin-dir, --socket-mode, "
                     "--admin-socket-mode, --metrics-socket, --metrics-socket-mode, --admin-uids, "
                     "--admin-gids, --default-ttl, --max-ttl, "
                     "--key-rotation, "
                     "--log-format, --max-frame, --request-memory, --max-connections, "
                     "--max-connections-per-uid, --frame-timeout-ms, --idle-timeout-ms, "
                     "--attest-timeout-ms, --workers, --require-peer-pidfd");
    memset(value, 'a', sizeof(value));
    value[0] = '/';
    value[4097] = '\0';
    expect_set_error("data_dir", value,
                     "--data-dir: must be at most 4096 bytes long, got 4097 bytes");
    value[4096] = '\0';
    expect_set_error("data_dir", value,
                     "--data-dir: must be at most 4095 bytes long, got 4096 bytes");
}

/* The message fits any buffer: cut, still terminated; none at all for 0. */
static void test_small_err_buffer(void **state)
{
    struct config *cfg = new_config();
    char err[16];

    (void)state;
    memset(err, 'x', sizeof(err));
    assert_int_equal(config_load_buffer(cfg, "t.conf", "[agent]\nfoo=1\n", 14, err, sizeof(err)),
                     -EINVAL);
    assert_string_equal(err, "t.conf:2: unkno");
    memset(err, 'x', sizeof(err));
    assert_int_equal(config_load_buffer(cfg, "t.conf", "[agent]\nfoo=1\n", 14, err, 0), -EINVAL);
    assert_int_equal(err[0], 'x');
    assert_int_equal(config_load_buffer(cfg, "t.conf", "[agent]\nfoo=1\n", 14, NULL, 0), -EINVAL);
    config_free(cfg);
}

/* admin_uids and admin_gids take numeric lists; default_ttl may not exceed
 * max_ttl. */
static void test_admin_and_ttl_keys(void **state)
{
    (void)state;
    struct config *cfg = new_config();
    char err[CONFIG_ERR_MAX];
    assert_int_equal(cfg->admin_socket_mode, 0600);
    assert_int_equal(cfg->admin_uids.n, 0);
    assert_int_equal(cfg->default_ttl, 300);
    assert_int_equal(cfg->max_ttl, 86400);
    static const char good[] = "[agent]\nadmin_uids = 1000, 1001 2000\nadmin_gids =\n"
                               "admin_socket_mode = 0660\ndefault_ttl = 60\nmax_ttl = 3600\n";
    assert_int_equal(config_load_buffer(cfg, "t.conf", good, sizeof(good) - 1, err, sizeof(err)),
                     0);
    assert_int_equal(cfg->admin_uids.n, 3);
    assert_int_equal(cfg->admin_uids.ids[0], 1000);
    assert_int_equal(cfg->admin_uids.ids[2], 2000);
    assert_int_equal(cfg->admin_gids.n, 0);
    assert_int_equal(cfg->admin_socket_mode, 0660);

    static const char bad[] = "[agent]\nadmin_uids = 1000, alice\n";
    assert_int_equal(config_load_buffer(cfg, "t.conf", bad, sizeof(bad) - 1, err, sizeof(err)),
                     -EINVAL);
    assert_string_equal(err, "t.conf:2: key 'admin_uids': must be a list of at most 64 numeric ids "
                             "separated by commas or spaces, got \"1000, alice\"");
    assert_int_equal(cfg->admin_uids.n, 3); /* unchanged */

    static const char rot[] = "[agent]\nkey_rotation = 24h\n";
    assert_int_equal(config_load_buffer(cfg, "t.conf", rot, sizeof(rot) - 1, err, sizeof(err)), 0);
    assert_int_equal(cfg->key_rotation, 86400);
    static const char rot2[] = "[agent]\nkey_rotation = 90\n";
    assert_int_equal(config_load_buffer(cfg, "t.conf", rot2, sizeof(rot2) - 1, err, sizeof(err)),
                     0);
    assert_int_equal(cfg->key_rotation, 90);
    static const char rot3[] = "[agent]\nkey_rotation = 3w\n";
    assert_int_equal(config_load_buffer(cfg, "t.conf", rot3, sizeof(rot3) - 1, err, sizeof(err)),
                     -EINVAL);
    assert_string_equal(err, "t.conf:2: key 'key_rotation': must be a duration between 1 and "
                             "31536000 seconds (a number of seconds, or with s, m, h or d), got "
                             "\"3w\"");

    static const char ttl[] = "[agent]\nmax_ttl = 100\ndefault_ttl = 200\n";
    assert_int_equal(config_load_buffer(cfg, "t.conf", ttl, sizeof(ttl) - 1, err, sizeof(err)),
                     -EINVAL);
    assert_non_null(strstr(err, "t.conf:3: key 'default_ttl'"));
    assert_non_null(strstr(err, "max_ttl"));
    config_free(cfg);
}

/* metrics_socket is optional: unset or empty means none; otherwise an
 * absolute socket path that differs from the other two sockets. */
static void test_metrics_socket(void **state)
{
    (void)state;
    struct config *cfg = new_config();
    char err[CONFIG_ERR_MAX];
    assert_null(cfg->metrics_socket_path);
    assert_int_equal(cfg->metrics_socket_mode, 0600);

    static const char on[] = "[agent]\nmetrics_socket = /run/sockid/metrics.sock\n"
                             "metrics_socket_mode = 0660\n";
    assert_int_equal(config_load_buffer(cfg, "t.conf", on, sizeof(on) - 1, err, sizeof(err)), 0);
    assert_string_equal(cfg->metrics_socket_path, "/run/sockid/metrics.sock");
    assert_int_equal(cfg->metrics_socket_mode, 0660);

    static const char off[] = "[agent]\nmetrics_socket =\n";
    assert_int_equal(config_load_buffer(cfg, "t.conf", off, sizeof(off) - 1, err, sizeof(err)), 0);
    assert_null(cfg->metrics_socket_path);

    expect_error("[agent]\nmetrics_socket = metrics.sock\n",
                 "t.conf:2: key 'metrics_socket': must be an absolute path (starting with '/'), "
                 "or empty for none, got \"metrics.sock\"");
    expect_error("[agent]\nsocket = /run/x.sock\nmetrics_socket = /run/x.sock\n",
                 "t.conf:3: key 'metrics_socket': must differ from socket, both are "
                 "\"/run/x.sock\"");
    expect_error("[agent]\nmetrics_socket = /run/sockid/admin.sock\n",
                 "t.conf:2: key 'metrics_socket': must differ from admin_socket, both are "
                 "\"/run/sockid/admin.sock\"");

    /* As a flag, and the empty flag turns it off again. */
    assert_int_equal(config_set(cfg, "metrics-socket", "/tmp/m.sock", err, sizeof(err)), 0);
    assert_string_equal(cfg->metrics_socket_path, "/tmp/m.sock");
    assert_int_equal(config_set(cfg, "metrics_socket", "/run/sockid/agent.sock", err, sizeof(err)),
                     -EINVAL);
    assert_string_equal(err, "--metrics-socket: must differ from --socket, both are "
                             "\"/run/sockid/agent.sock\"");
    assert_string_equal(cfg->metrics_socket_path, "/tmp/m.sock"); /* unchanged */
    assert_int_equal(config_set(cfg, "metrics_socket", "", err, sizeof(err)), 0);
    assert_null(cfg->metrics_socket_path);
    config_free(cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_metrics_socket),
        cmocka_unit_test(test_admin_and_ttl_keys),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_full_file),
        cmocka_unit_test(test_empty_and_comment_only),
        cmocka_unit_test(test_bad_values),
        cmocka_unit_test(test_good_edges),
        cmocka_unit_test(test_socket_path_length),
        cmocka_unit_test(test_long_value_is_cut_in_message),
        cmocka_unit_test(test_unknown_key),
        cmocka_unit_test(test_unknown_section),
        cmocka_unit_test(test_section_comment_allowed),
        cmocka_unit_test(test_key_before_section),
        cmocka_unit_test(test_syntax_error),
        cmocka_unit_test(test_indentation),
        cmocka_unit_test(test_crlf_and_bom),
        cmocka_unit_test(test_duplicate_agent_key),
        cmocka_unit_test(test_attestor_required),
        cmocka_unit_test(test_attestor_bad_name),
        cmocka_unit_test(test_attestor_name_32),
        cmocka_unit_test(test_attestor_bad_key),
        cmocka_unit_test(test_attestor_duplicate_key),
        cmocka_unit_test(test_attestor_duplicate_section),
        cmocka_unit_test(test_attestor_limits),
        cmocka_unit_test(test_embedded_nul),
        cmocka_unit_test(test_buffer_not_terminated),
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_load_file),
        cmocka_unit_test(test_cross_field),
        cmocka_unit_test(test_cross_field_order_free),
        cmocka_unit_test(test_error_leaves_config_alone),
        cmocka_unit_test(test_second_file_replaces_attestor),
        cmocka_unit_test(test_huge_line),
        cmocka_unit_test(test_set),
        cmocka_unit_test(test_set_errors),
        cmocka_unit_test(test_small_err_buffer),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
