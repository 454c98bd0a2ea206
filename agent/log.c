#include "log.h"

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
        size_t pos = (size_t)snprintf(line, sizeof(line), "{\"ts\":\"%s\",\"level\":\"%s\",\"msg\":\"",
                                      ts, level_names[level]);
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

void log_refusal(pid_t pid, uid_t uid, const char *request, const char *reason)
{
    if (LOG_WARN > log_max)
        return;
    char json[1024], text[1024];
    size_t pos = (size_t)snprintf(json, sizeof(json), ",\"pid\":%ld,\"uid\":%lu,\"request\":\"",
                                  (long)pid, (unsigned long)uid);
    pos = json_escape(json, sizeof(json), pos, request);
    pos += (size_t)snprintf(json + pos, sizeof(json) - pos, "\",\"reason\":\"");
    pos = json_escape(json, sizeof(json), pos, reason);
    (void)snprintf(json + pos, sizeof(json) - pos, "\"");
    (void)snprintf(text, sizeof(text), " pid=%ld uid=%lu request=%s reason=\"%s\"", (long)pid,
                   (unsigned long)uid, request, reason);
    emit(LOG_WARN, "refused", json, text);
}
