/* Length-prefixed framing: one implementation for both ends of the socket. */
#include "frame.h"

#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

int frame_parse(const uint8_t *buf, size_t len, uint32_t max_payload, uint32_t *ret_payload_len)
{
    if (len < FRAME_HEADER_SIZE)
        return 0;
    uint32_t n =
        (uint32_t)buf[0] << 24 | (uint32_t)buf[1] << 16 | (uint32_t)buf[2] << 8 | (uint32_t)buf[3];
    if (n == 0)
        return -EBADMSG;
    if (n > max_payload)
        return -EMSGSIZE;
    if (len - FRAME_HEADER_SIZE < n)
        return 0;
    *ret_payload_len = n;
    return 1;
}

void frame_put_header(uint8_t out[static FRAME_HEADER_SIZE], uint32_t payload_len)
{
    out[0] = (uint8_t)(payload_len >> 24);
    out[1] = (uint8_t)(payload_len >> 16);
    out[2] = (uint8_t)(payload_len >> 8);
    out[3] = (uint8_t)payload_len;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    (void)clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits until fd is ready for events or the deadline passes. */
static int wait_fd(int fd, short events, int64_t deadline)
{
    for (;;) {
        int timeout = -1;
        if (deadline >= 0) {
            int64_t left = deadline - now_ms();
            if (left <= 0)
                return -ETIMEDOUT;
            timeout = left > 1000000 ? 1000000 : (int)left;
        }
        struct pollfd p = {.fd = fd, .events = events};
        int r = poll(&p, 1, timeout);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -errno;
        if (r == 0)
            return -ETIMEDOUT;
        return 0;
    }
}

static int write_all(int fd, const uint8_t *p, size_t n, int64_t deadline)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                int r = wait_fd(fd, POLLOUT, deadline);
                if (r < 0)
                    return r;
                continue;
            }
            return errno == EPIPE ? -ECONNRESET : -errno;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int read_all(int fd, uint8_t *p, size_t n, int64_t deadline)
{
    while (n > 0) {
        ssize_t r = recv(fd, p, n, MSG_DONTWAIT);
        if (r == 0)
            return -ECONNRESET;
        if (r < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                int w = wait_fd(fd, POLLIN, deadline);
                if (w < 0)
                    return w;
                continue;
            }
            return -errno;
        }
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

int frame_write(int fd, const uint8_t *payload, uint32_t len, int timeout_ms)
{
    if (len == 0)
        return -EBADMSG;
    int64_t deadline = timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
    uint8_t hdr[FRAME_HEADER_SIZE];
    frame_put_header(hdr, len);
    int r = write_all(fd, hdr, sizeof(hdr), deadline);
    if (r < 0)
        return r;
    return write_all(fd, payload, len, deadline);
}

int frame_read(int fd, uint8_t *buf, size_t cap, uint32_t max_payload, int timeout_ms,
               uint32_t *ret_len)
{
    int64_t deadline = timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
    uint8_t hdr[FRAME_HEADER_SIZE];
    int r = read_all(fd, hdr, sizeof(hdr), deadline);
    if (r < 0)
        return r;
    uint32_t n;
    if (max_payload > cap)
        max_payload = (uint32_t)(cap > UINT32_MAX ? UINT32_MAX : cap);
    /* Reuse the stream parser so both ends agree on what a valid header is. */
    r = frame_parse(hdr, sizeof(hdr), max_payload, &n);
    if (r < 0)
        return r;
    n = (uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 | (uint32_t)hdr[2] << 8 | hdr[3];
    r = read_all(fd, buf, n, deadline);
    if (r < 0)
        return r;
    *ret_len = n;
    return 0;
}
