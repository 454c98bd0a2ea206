/* Attestor plugins: load, check, call (DESIGN §2 "Attestors and selectors").
 *
 * A plugin runs inside the agent with the agent's privileges, so the file
 * that provides it must be one only root (or the agent's own user) could
 * have written, and its descriptor must match the ABI this agent speaks. */
#define _GNU_SOURCE
#include "attest.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "text.h"

struct plugin {
    char *path;
    /* The file as opened and checked, loaded through /proc/self/fd/N. Kept
     * open while loaded: dlopen() matches names of loaded objects, so a
     * reused fd number would make the next plugin resolve to this one. */
    int fd;
    void *handle;
    const struct sockid_attestor *desc;
    void *state;
    bool initialized;
    bool required;
};

struct attest {
    size_t n;
    struct plugin plugins[ATTEST_MAX_PLUGINS];
};

/* Names proc_read accepts: one path component, as plugin names. */
#define ATTEST_PROC_NAME_MAX 32u
/* A file buffer's first size; most /proc files fit (a cgroup file on a v1
 * host is a few hundred bytes). */
#define ATTEST_PROC_BUF_INITIAL 4096u
/* Room for one byte past the bound, to tell a file at the bound from a
 * larger one, and a NUL. */
#define ATTEST_PROC_BUF_MAX (SOCKID_PROC_READ_MAX + 2u)

struct attest_file {
    char name[ATTEST_PROC_NAME_MAX + 1];
    char *buf; /* kept from request to request */
    size_t cap;
    size_t len;
};

struct attest_cache {
    int dirfd; /* the peer's /proc/<pid> in this request */
    size_t n;  /* files read in this request */
    struct attest_file files[SOCKID_PROC_READ_FILES];
};

/* The last tick's time: never ahead of CLOCK_MONOTONIC, behind it by at
 * most one tick, and about a fifth of its cost (no clock read). */
static uint64_t monotonic_coarse_ns(void)
{
    struct timespec ts;
    (void)clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t monotonic_ns(void)
{
    struct timespec ts;
    (void)clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int attest_new(struct attest **ret)
{
    struct attest *set = calloc(1, sizeof(*set));
    if (!set)
        return -ENOMEM;
    *ret = set;
    return 0;
}

static void plugin_unload(struct plugin *p)
{
    if (p->initialized && p->desc->fini)
        p->desc->fini(p->state);
    if (p->handle)
        (void)dlclose(p->handle);
    if (p->fd >= 0)
        (void)close(p->fd);
    free(p->path);
    *p = (struct plugin){.fd = -1};
}

struct attest *attest_free(struct attest *set)
{
    if (!set)
        return NULL;
    /* Unload in reverse order of loading. */
    while (set->n > 0)
        plugin_unload(&set->plugins[--set->n]);
    free(set);
    return NULL;
}

size_t attest_count(const struct attest *set)
{
    return set->n;
}

const char *attest_name(const struct attest *set, size_t i)
{
    return i < set->n ? set->plugins[i].desc->name : NULL;
}

/* Code that runs as the agent must come from a file only root or the agent's
 * own user could have written. */
static int check_owner_mode(const struct stat *st, const char *what, const char *path, char *err,
                            size_t err_len)
{
    if (st->st_uid != 0 && st->st_uid != geteuid()) {
        text_err(err, err_len,
                 "%s %s is owned by uid %lu, not by root or the agent's user: "
                 "chown root %s",
                 what, path, (unsigned long)st->st_uid, path);
        return -EPERM;
    }
    if (st->st_mode & (S_IWGRP | S_IWOTH)) {
        text_err(err, err_len,
                 "%s %s is writable by group or others (mode %04o), so anyone could replace the "
                 "code the agent runs: chmod go-w %s",
                 what, path, (unsigned)(st->st_mode & 07777), path);
        return -EPERM;
    }
    return 0;
}

/* 1 to 32 of [a-z0-9_-]: a plugin's name, and a file proc_read reads (so
 * never "..", never a '/'). */
static bool name_valid(const char *name)
{
    size_t n = 0;
    for (; name[n]; n++) {
        char c = name[n];
        if (n >= 32 || !((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
            return false;
    }
    return n > 0;
}

static int plugin_init(struct plugin *p, const struct config *cfg, char *err, size_t err_len)
{
    const struct config_attestor *section = config_attestor(cfg, p->desc->name);
    p->required = section && section->required;
    if (!p->desc->init) {
        if (section && section->n > 0) {
            text_err(err, err_len, "attestor %s takes no settings, but [attestor.%s] has '%s'",
                     p->desc->name, p->desc->name, section->keys[0]);
            return -EINVAL;
        }
        p->initialized = true;
        return 0;
    }
    struct sockid_attestor_config view = {
        .struct_size = sizeof(view),
        .n = section ? section->n : 0,
        .keys = section ? (const char *const *)section->keys : NULL,
        .values = section ? (const char *const *)section->values : NULL,
    };
    char why[256] = "";
    void *state = NULL;
    int r = p->desc->init(&view, &state, why, sizeof(why));
    if (r < 0 || r > 0) {
        why[sizeof(why) - 1] = '\0';
        text_err(err, err_len, "attestor %s (%s) failed to start: %s", p->desc->name, p->path,
                 why[0] ? why : strerror(r < 0 ? -r : EINVAL));
        return r < 0 ? r : -EINVAL;
    }
    p->state = state;
    p->initialized = true;
    return 0;
}

int attest_load_one(struct attest *set, const char *path, const struct config *cfg, char *err,
                    size_t err_len)
{
    if (set->n >= ATTEST_MAX_PLUGINS) {
        text_err(err, err_len, "too many attestor plugins: at most %u are loaded",
                 ATTEST_MAX_PLUGINS);
        return -E2BIG;
    }
    struct plugin p = {.fd = -1};
    int r;
    /* Check the file we then load, not a path that could change between the
     * check and dlopen(): open it once and load it through /proc/self/fd. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        r = -errno;
        if (r == -ELOOP)
            text_err(err, err_len,
                     "attestor plugin %s is a symbolic link; install the file itself (the agent "
                     "loads only files whose owner and mode it can check)",
                     path);
        else
            text_err(err, err_len, "cannot open attestor plugin %s: %s", path, strerror(errno));
        return r;
    }
    p.fd = fd;
    struct stat st;
    if (fstat(fd, &st) < 0) {
        r = -errno;
        text_err(err, err_len, "cannot stat attestor plugin %s: %s", path, strerror(errno));
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        r = -EINVAL;
        text_err(err, err_len, "attestor plugin %s is not a regular file", path);
        goto out;
    }
    r = check_owner_mode(&st, "attestor plugin", path, err, err_len);
    if (r < 0)
        goto out;

    p.path = strdup(path);
    if (!p.path) {
        r = -ENOMEM;
        goto out;
    }
    char fdpath[64];
    (void)snprintf(fdpath, sizeof(fdpath), "/proc/self/fd/%d", fd);
    p.handle = dlopen(fdpath, RTLD_NOW | RTLD_LOCAL);
    if (!p.handle) {
        const char *e = dlerror();
        r = -ENOEXEC;
        text_err(err, err_len, "cannot load attestor plugin %s: %s", path, e ? e : "dlopen failed");
        goto out;
    }
    sockid_attestor_entry_fn entry;
    *(void **)&entry = dlsym(p.handle, SOCKID_ATTESTOR_SYMBOL);
    if (!entry) {
        r = -ENOEXEC;
        text_err(err, err_len,
                 "attestor plugin %s does not export %s(): build it against <sockid/attestor.h> "
                 "and export the entry point with SOCKID_ATTESTOR_EXPORT",
                 path, SOCKID_ATTESTOR_SYMBOL);
        goto out;
    }
    p.desc = entry();
    if (!p.desc) {
        r = -ENOEXEC;
        text_err(err, err_len, "attestor plugin %s returned no descriptor from %s()", path,
                 SOCKID_ATTESTOR_SYMBOL);
        goto out;
    }
    /* abi_version and struct_size are the two fields every version of the
     * descriptor starts with; nothing else is read before they match. */
    if (p.desc->abi_version != SOCKID_ATTESTOR_ABI_VERSION) {
        r = -EPROTO;
        text_err(err, err_len,
                 "attestor plugin %s was built for attestor ABI version %u, but this agent "
                 "speaks version %u: rebuild it against this agent's <sockid/attestor.h>",
                 path, p.desc->abi_version, SOCKID_ATTESTOR_ABI_VERSION);
        goto out;
    }
    if (p.desc->struct_size < sizeof(struct sockid_attestor)) {
        r = -EPROTO;
        text_err(err, err_len,
                 "attestor plugin %s has a %u-byte descriptor, but ABI version %u needs at least "
                 "%zu bytes: rebuild it against this agent's <sockid/attestor.h>",
                 path, p.desc->struct_size, SOCKID_ATTESTOR_ABI_VERSION,
                 sizeof(struct sockid_attestor));
        goto out;
    }
    if (!p.desc->name || !name_valid(p.desc->name)) {
        r = -EINVAL;
        text_err(err, err_len,
                 "attestor plugin %s has no valid name (1 to 32 of [a-z0-9_-] are allowed)", path);
        goto out;
    }
    if (!p.desc->attest) {
        r = -EINVAL;
        text_err(err, err_len, "attestor plugin %s (%s) has no attest function", path,
                 p.desc->name);
        goto out;
    }
    for (size_t i = 0; i < set->n; i++) {
        if (strcmp(set->plugins[i].desc->name, p.desc->name) == 0) {
            r = -EEXIST;
            text_err(err, err_len, "attestor plugins %s and %s are both named '%s'; remove one",
                     set->plugins[i].path, path, p.desc->name);
            goto out;
        }
    }
    r = plugin_init(&p, cfg, err, err_len);
    if (r < 0)
        goto out;
    set->plugins[set->n++] = p;
    p = (struct plugin){.fd = -1};
out:
    plugin_unload(&p);
    return r;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool has_so_suffix(const char *name)
{
    size_t n = strlen(name);
    return n > 3 && strcmp(name + n - 3, ".so") == 0;
}

int attest_load(const struct config *cfg, const char *dir, struct attest **ret, char *err,
                size_t err_len)
{
    struct attest *set = NULL;
    DIR *d = NULL;
    char *names[ATTEST_MAX_PLUGINS];
    size_t n_names = 0;
    int r;

    struct stat st;
    if (stat(dir, &st) < 0) {
        r = -errno;
        text_err(err, err_len, "cannot use plugin directory %s: %s; set plugin_dir in the config",
                 dir, strerror(errno));
        return r;
    }
    if (!S_ISDIR(st.st_mode)) {
        text_err(err, err_len, "plugin directory %s is not a directory", dir);
        return -ENOTDIR;
    }
    r = check_owner_mode(&st, "plugin directory", dir, err, err_len);
    if (r < 0)
        return r;

    r = attest_new(&set);
    if (r < 0)
        return r;
    d = opendir(dir);
    if (!d) {
        r = -errno;
        text_err(err, err_len, "cannot read plugin directory %s: %s", dir, strerror(errno));
        goto out;
    }
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.' || !has_so_suffix(de->d_name))
            continue;
        if (n_names >= ATTEST_MAX_PLUGINS) {
            r = -E2BIG;
            text_err(err, err_len, "plugin directory %s holds more than %u plugins", dir,
                     ATTEST_MAX_PLUGINS);
            goto out;
        }
        if (asprintf(&names[n_names], "%s/%s", dir, de->d_name) < 0) {
            r = -ENOMEM;
            goto out;
        }
        n_names++;
    }
    /* A stable load order, so that selectors and errors do not depend on
     * the directory's layout on disk. */
    qsort(names, n_names, sizeof(names[0]), cmp_names);
    for (size_t i = 0; i < n_names; i++) {
        r = attest_load_one(set, names[i], cfg, err, err_len);
        if (r < 0)
            goto out;
    }
    for (size_t i = 0; i < cfg->n_attestors; i++) {
        const char *name = cfg->attestors[i].name;
        bool found = false;
        for (size_t j = 0; j < set->n && !found; j++)
            found = strcmp(set->plugins[j].desc->name, name) == 0;
        if (!found) {
            r = -ENOENT;
            text_err(err, err_len,
                     "the config has a section [attestor.%s], but no plugin named '%s' is in %s",
                     name, name, dir);
            goto out;
        }
    }
    *ret = set;
    set = NULL;
    r = 0;
out:
    for (size_t i = 0; i < n_names; i++)
        free(names[i]);
    if (d)
        (void)closedir(d);
    attest_free(set);
    return r;
}

struct emit_ctx {
    struct selector_set *out;
    uint64_t deadline_ns;
    unsigned count;
    bool late;
};

static int emit_selector(void *opaque, const char *type, const char *key, const char *value)
{
    struct emit_ctx *ctx = opaque;
    if (!type || !key || !value)
        return -EINVAL;
    /* Once per selector, so the cheap clock: it may let a selector through
     * up to a tick after the deadline, but attest_run_failed then finds the
     * attestor late on the precise clock and drops all it emitted. */
    if (monotonic_coarse_ns() > ctx->deadline_ns) {
        ctx->late = true;
        return -ETIMEDOUT;
    }
    if (ctx->count >= ATTEST_MAX_SELECTORS_PER_PLUGIN)
        return -E2BIG;
    int r = selector_set_add(ctx->out, type, key, value);
    if (r == 0)
        ctx->count++;
    return r;
}

/* ---- proc_read ---- */

_Static_assert(ATTEST_PROC_NAME_MAX == 32, "proc_read names are checked as plugin names");

int attest_cache_new(struct attest_cache **ret)
{
    struct attest_cache *cache = calloc(1, sizeof(*cache));
    if (!cache)
        return -ENOMEM;
    cache->dirfd = -1;
    *ret = cache;
    return 0;
}

struct attest_cache *attest_cache_free(struct attest_cache *cache)
{
    if (cache) {
        for (size_t i = 0; i < SOCKID_PROC_READ_FILES; i++)
            free(cache->files[i].buf);
        free(cache);
    }
    return NULL;
}

/* Reads the whole of name, relative to dirfd, into f's buffer (grown as
 * needed, up to ATTEST_PROC_BUF_MAX), NUL-terminated. */
static int attest_file_read(int dirfd, const char *name, struct attest_file *f)
{
    int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW);
    if (fd < 0)
        return -errno;
    size_t len = 0;
    int r = 0;
    for (;;) {
        if (len + 1 >= f->cap) {
            if (f->cap >= ATTEST_PROC_BUF_MAX) {
                r = -E2BIG; /* SOCKID_PROC_READ_MAX + 1 bytes and maybe more */
                break;
            }
            size_t cap = f->cap ? f->cap * 2 : ATTEST_PROC_BUF_INITIAL;
            if (cap > ATTEST_PROC_BUF_MAX)
                cap = ATTEST_PROC_BUF_MAX;
            char *buf = realloc(f->buf, cap);
            if (!buf) {
                r = -ENOMEM;
                break;
            }
            f->buf = buf;
            f->cap = cap;
        }
        ssize_t got = read(fd, f->buf + len, f->cap - 1 - len);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            r = -errno;
            break;
        }
        if (got == 0)
            break;
        len += (size_t)got;
    }
    (void)close(fd);
    if (r < 0)
        return r;
    f->buf[len] = '\0';
    f->len = len;
    return 0;
}

/* sockid_peer.proc_read: see <sockid/attestor.h>. Only files read whole are
 * kept, so a failure is tried again by the next caller. */
static int attest_proc_read(const struct sockid_peer *peer, const char *name, const char **ret_data,
                            size_t *ret_len)
{
    if (!peer || !name || !ret_data || !ret_len || !SOCKID_PEER_HAS(peer, proc_read_ctx) ||
        !peer->proc_read_ctx || !name_valid(name))
        return -EINVAL;
    struct attest_cache *cache = peer->proc_read_ctx;
    struct attest_file *f = NULL;
    for (size_t i = 0; i < cache->n && !f; i++)
        if (strcmp(cache->files[i].name, name) == 0)
            f = &cache->files[i];
    if (!f) {
        if (cache->n == SOCKID_PROC_READ_FILES)
            return -ENOBUFS;
        f = &cache->files[cache->n];
        /* Through the request's own dirfd, whatever a plugin's copy of the
         * view says. */
        int r = attest_file_read(cache->dirfd, name, f);
        if (r < 0)
            return r;
        memcpy(f->name, name, strlen(name) + 1); /* name_valid bounded it */
        cache->n++;
    }
    *ret_data = f->buf;
    *ret_len = f->len;
    return 0;
}

/* ---- running ---- */

int attest_run(const struct attest *set, struct sockid_peer *peer, uint32_t timeout_ms,
               struct selector_set *out, char *reason, size_t reason_len)
{
    uint32_t failed;
    return attest_run_failed(set, peer, NULL, timeout_ms, out, &failed, reason, reason_len);
}

int attest_run_failed(const struct attest *set, struct sockid_peer *peer,
                      struct attest_cache *cache, uint32_t timeout_ms, struct selector_set *out,
                      uint32_t *ret_failed, char *reason, size_t reason_len)
{
    _Static_assert(ATTEST_MAX_PLUGINS <= 32, "one bit per plugin in *ret_failed");
    *ret_failed = 0;
    if (SOCKID_PEER_HAS(peer, proc_read_ctx)) {
        /* A new request: nothing read for the last one may be seen. */
        if (cache) {
            cache->n = 0;
            cache->dirfd = peer->proc_dirfd;
        }
        peer->proc_read = cache ? attest_proc_read : NULL;
        peer->proc_read_ctx = cache;
    }
    uint64_t now = monotonic_ns();
    for (size_t i = 0; i < set->n; i++) {
        const struct plugin *p = &set->plugins[i];
        size_t mark = out->n;
        struct emit_ctx ctx = {
            .out = out,
            .deadline_ns = now + (uint64_t)timeout_ms * 1000000ull,
        };
        peer->deadline_ns = ctx.deadline_ns;
        int r = p->desc->attest(p->state, peer, emit_selector, &ctx);
        /* This attestor's end is the next one's start. */
        now = monotonic_ns();
        bool late = ctx.late || now > ctx.deadline_ns;
        if (r == 0 && !late)
            continue;
        /* A failed or late attestor contributes nothing, not even what it
         * emitted before failing. */
        selector_set_truncate(out, mark);
        *ret_failed |= 1u << i;
        if (p->required) {
            if (late)
                text_err(reason, reason_len, "required attestor %s did not finish within %u ms",
                         p->desc->name, timeout_ms);
            else
                text_err(reason, reason_len, "required attestor %s failed: %s", p->desc->name,
                         strerror(r < 0 ? -r : EIO));
            return -EPERM;
        }
    }
    return 0;
}
