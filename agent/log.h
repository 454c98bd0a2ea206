/* The agent's log: one line per event on stderr, as text or JSON.
 *
 * Only the agent's top level (main, server, request dispatch) logs; the
 * modules below it return errors and reasons instead. */
#ifndef SOCKID_LOG_H
#define SOCKID_LOG_H

#include <sys/types.h>

#include "config.h"

enum log_level {
    LOG_ERROR,
    LOG_WARN,
    LOG_INFO,
    LOG_DEBUG,
};

void log_setup(enum log_format format, enum log_level max_level);

__attribute__((format(printf, 2, 3))) void log_msg(enum log_level level, const char *fmt, ...);

/* One line for a refused request: who (kernel-reported pid and uid), which
 * request kind, and why. Rate-limited per uid (a burst of 20, then 5 a
 * second); the next line says how many were dropped. */
void log_refusal(pid_t pid, uid_t uid, const char *request, const char *reason);

#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)

#endif
