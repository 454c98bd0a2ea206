/* The log: refusal lines are rate-limited per uid, and a dropped count is
 * reported on that uid's next line; JSON lines stay valid JSON. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "log.h"

/* Runs fn with stderr captured into a temporary file; returns its text. */
static char *capture(void (*fn)(void))
{
    char path[] = "/tmp/sockid-test-log-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    fflush(stderr);
    int saved = dup(2);
    assert_true(saved >= 0);
    assert_int_equal(dup2(fd, 2), 2);
    fn();
    fflush(stderr);
    assert_int_equal(dup2(saved, 2), 2);
    close(saved);
    off_t len = lseek(fd, 0, SEEK_END);
    char *buf = calloc(1, (size_t)len + 1);
    assert_non_null(buf);
    assert_int_equal(pread(fd, buf, (size_t)len, 0), len);
    close(fd);
    unlink(path);
    return buf;
}

static size_t count(const char *text, const char *needle)
{
    size_t n = 0;
    for (const char *p = strstr(text, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

static void flood(void)
{
    log_setup(LOG_FORMAT_TEXT, LOG_INFO);
    for (int i = 0; i < 200; i++)
        log_refusal(1000 + i, 4242, "whoami", "peer exited during attestation");
    /* Another uid is not held back by the first one's flood. */
    log_refusal(77, 4343, "whoami", "no identity");
}

static void test_flood_is_limited_per_uid(void **state)
{
    (void)state;
    char *out = capture(flood);
    size_t lines = count(out, "uid=4242");
    /* A burst of 20, plus whatever refilled during the loop (5 per second). */
    assert_true(lines >= 20);
    assert_true(lines <= 25);
    assert_int_equal(count(out, "uid=4343"), 1);
    free(out);
}

static void after_pause(void)
{
    log_setup(LOG_FORMAT_TEXT, LOG_INFO);
    for (int i = 0; i < 100; i++)
        log_refusal(2000 + i, 5151, "fetch_token", "no identity");
    usleep(400 * 1000); /* two tokens refill at 5 per second */
    log_refusal(9999, 5151, "fetch_token", "no identity");
}

static void test_dropped_lines_are_counted(void **state)
{
    (void)state;
    char *out = capture(after_pause);
    const char *last = strstr(out, "pid=9999");
    assert_non_null(last);
    assert_non_null(strstr(last, "earlier refusals of uid 5151 not logged"));
    free(out);
}

static void json_line(void)
{
    log_setup(LOG_FORMAT_JSON, LOG_INFO);
    log_refusal(5, 6161, "whoami", "a \"quoted\"\nreason\\");
}

static void test_json_escaping(void **state)
{
    (void)state;
    char *out = capture(json_line);
    assert_non_null(strstr(out, "\"reason\":\"a \\\"quoted\\\"\\u000areason\\\\\""));
    assert_non_null(strstr(out, "\"uid\":6161"));
    assert_int_equal(count(out, "\n"), 1);
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_flood_is_limited_per_uid),
        cmocka_unit_test(test_dropped_lines_are_counted),
        cmocka_unit_test(test_json_escaping),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
