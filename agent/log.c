#include "log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static enum log_format log_fmt = LOG_FORMAT_TEXT;
static enum log_level log_max = LOG_INFO;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void log_setup(enum log_format format, enum log_level max_level)
{
    log_fmt = format;
    log_max = max_level;
}

/* Appends s to out as the body of a JSON string. */
static size_t json_escape(char *out, size_t cap, size_t pos, const char *s)
{
    for (; *s && pos + 7 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            out[pos++] = '\\';
            out[pos++] = (char)c;
        } else if (c < 0x20 || c == 0x7f) {
            pos += (size_t)snprintf(out + pos, cap - pos, "\\u%04x", c);
        } else {
            out[pos++] = (char)c;
        }
    }
    out[pos] = '\0';
    return pos;
}

/* Text lines must stay one line whatever a message holds. */
static void text_sanitize(char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s == 0x7f)
            *s = '?';
}

static void timestamp(char *buf, size_t cap)
{
    struct timespec ts;
    struct tm tm;
    (void)clock_gettime(CLOCK_REALTIME, &ts);
    (void)gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(buf, cap, "%Y-%m-%dT%H:%M:%S", &tm);
    (void)snprintf(buf + n, cap - n, ".%03ldZ", ts.tv_nsec / 1000000);
}

static void emit(enum log_level level, const char *msg, const char *fields_json,
                 const char *fields_text)
{
    char ts[40];
    char line[4096];
    timestamp(ts, sizeof(ts));
    if (log_fmt == LOG_FORMAT_JSON) {
        size_t pos =
            (size_t)snprintf(line, sizeof(line), "{\"ts\":\"%s\",\"level\":\"%s\",\"msg\":\"", ts,
                             level_names[level]);
        pos = json_escape(line, sizeof(line), pos, msg);
        (void)snprintf(line + pos, sizeof(line) - pos, "\"%s}\n", fields_json ? fields_json : "");
    } else {
        (void)snprintf(line, sizeof(line), "%s sockid-agent %s: %s%s", ts, level_names[level], msg,
                       fields_text ? fields_text : "");
        text_sanitize(line);
        size_t n = strlen(line);
        if (n + 1 < sizeof(line)) {
            line[n] = '\n';
            line[n + 1] = '\0';
        }
    }
    (void)fputs(line, stderr);
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    if (level > log_max)
        return;
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    (void)vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    emit(level, msg, NULL, NULL);
}

/* Refusal lines are rate-limited per uid, so that one noisy user (any
 * number of its processes) cannot flood the log: a burst of
 * LOG_BURST lines, then LOG_RATE per second. What is dropped is counted and
 * reported on that uid's next line. Keyed by uid, not pid: a client can fork
 * new pids at will, not new uids. */
#define LOG_SLOTS 256u
#define LOG_BURST 20.0
#define LOG_RATE  5.0

struct log_bucket {
    uid_t uid;
    bool used;
    double tokens;
    double last;
    unsigned long dropped;
};

static struct log_bucket log_buckets[LOG_SLOTS];
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

static double log_now(void)
{
    struct timespec ts;
    (void)clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Whether uid may log a line now; *ret_dropped is how many of its lines
 * were dropped since its last one. */
static bool log_admit(uid_t uid, unsigned long *ret_dropped)
{
    double now = log_now();
    (void)pthread_mutex_lock(&log_lock);
    struct log_bucket *b = &log_buckets[(uid * 2654435761u) % LOG_SLOTS];
    if (!b->used || b->uid != uid) {
        /* A new uid takes the slot; a collision only resets a budget. */
        *b = (struct log_bucket){.uid = uid, .used = true, .tokens = LOG_BURST, .last = now};
    }
    b->tokens += (now - b->last) * LOG_RATE;
    if (b->tokens > LOG_BURST)
        b->tokens = LOG_BURST;
    b->last = now;
    bool ok = b->tokens >= 1.0;
    if (ok) {
        b->tokens -= 1.0;
        *ret_dropped = b->dropped;
        b->dropped = 0;
    } else {
        b->dropped++;
    }
    (void)pthread_mutex_unlock(&log_lock);
    return ok;
}

void log_refusal(pid_t pid, uid_t uid, const char *request, const char *reason)
{
    if (LOG_WARN > log_max)
        return;
    unsigned long dropped = 0;
    if (!log_admit(uid, &dropped))
        return;
    char json[1024], text[1024];
    size_t pos = (size_t)snprintf(json, sizeof(json), ",\"pid\":%ld,\"uid\":%lu,\"request\":\"",
                                  (long)pid, (unsigned long)uid);
    pos = json_escape(json, sizeof(json), pos, request);
    pos += (size_t)snprintf(json + pos, sizeof(json) - pos, "\",\"reason\":\"");
    pos = json_escape(json, sizeof(json), pos, reason);
    (void)snprintf(json + pos, sizeof(json) - pos, "\",\"suppressed\":%lu", dropped);
    int n = snprintf(text, sizeof(text), " pid=%ld uid=%lu request=%s reason=\"%s\"", (long)pid,
                     (unsigned long)uid, request, reason);
    if (dropped && n > 0 && (size_t)n < sizeof(text))
        (void)snprintf(text + n, sizeof(text) - (size_t)n,
                       " (%lu earlier refusals of uid %lu not logged)", dropped,
                       (unsigned long)uid);
    emit(LOG_WARN, "refused", json, text);
}
