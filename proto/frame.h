/* Length-prefixed framing shared by the agent and libsockid.
 *
 * A frame is a 4-byte big-endian payload length followed by the payload (one
 * protobuf message). A zero length is invalid: every request and response has
 * at least its oneof tag. */
#ifndef SOCKID_FRAME_H
#define SOCKID_FRAME_H

#include <stddef.h>
#include <stdint.h>

#define FRAME_HEADER_SIZE 4u
/* Default and hard bounds of a frame's payload. */
#define FRAME_DEFAULT_MAX (64u * 1024u)
#define FRAME_HARD_MAX    (16u * 1024u * 1024u)

/* Looks at the bytes received so far on a stream. Returns 1 and stores the
 * payload length when a whole frame is there (header + payload), 0 when more
 * bytes are needed, -EMSGSIZE when the announced length exceeds max_payload
 * (known as soon as the header is in), -EBADMSG for a zero length. */
__attribute__((warn_unused_result)) int
frame_parse(const uint8_t *buf, size_t len, uint32_t max_payload, uint32_t *ret_payload_len);

void frame_put_header(uint8_t out[static FRAME_HEADER_SIZE], uint32_t payload_len);

/* Blocking helpers for clients: write a whole frame, read a whole frame, each
 * within timeout_ms in total (-1: no timeout). Reads into a buffer of cap
 * bytes. Return 0, or -ETIMEDOUT, -ECONNRESET (peer closed), -EMSGSIZE,
 * -EBADMSG, or another negative errno. */
__attribute__((warn_unused_result)) int frame_write(int fd, const uint8_t *payload, uint32_t len,
                                                    int timeout_ms);
__attribute__((warn_unused_result)) int frame_read(int fd, uint8_t *buf, size_t cap,
                                                   uint32_t max_payload, int timeout_ms,
                                                   uint32_t *ret_len);

#endif
