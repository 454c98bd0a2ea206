/* libFuzzer harness for token validation: the input is what a client may
 * send in a Validate request.
 *
 * Two shapes, chosen by the first byte, so that the fuzzer reaches past the
 * signature check as well as the framing before it:
 *  - odd:  the rest is a compact token, validated as is;
 *  - even: the rest is "HEADER\nCLAIMS" (arbitrary bytes for each), which
 *          the harness base64url-encodes and signs with the test key, so the
 *          header and claims checks run on inputs with a valid signature.
 * Any accepted token must have a sub in the trust domain and an audience
 * "db": validation must never accept what it promises to refuse. */
#include <errno.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "keys.h"
#include "token.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NOW 1700000100

static struct key key;
static struct keyset *keyset;

static void setup(void)
{
    /* RFC 8037 A.1's seed: a fixed key, so crashes reproduce. */
    static const uint8_t seed[32] = {
        0x9d, 0x61, 0xb1, 0x9d, 0xef, 0xfd, 0x5a, 0x60, 0xba, 0x84, 0x4a,
        0xf4, 0x92, 0xec, 0x2c, 0xc4, 0x44, 0x49, 0xc5, 0x69, 0x7b, 0x32,
        0x69, 0x19, 0x70, 0x3b, 0xac, 0x03, 0x1c, 0xae, 0x7f, 0x60,
    };
    if (sodium_init() < 0 || key_from_seed(seed, 1700000000, &key) < 0)
        abort();
    const struct key *list[] = {&key};
    if (keyset_new(list, 1, &keyset) < 0)
        abort();
}

static void check(const char *tok, size_t len)
{
    struct token_claims *claims = NULL;
    char reason[1200];
    int r =
        token_validate(keyset, tok, len, "db", "example.org", NOW, &claims, reason, sizeof(reason));
    if (r == 0) {
        if (!claims || strncmp(claims->sub, "spiffe://example.org/", 21) != 0 || claims->exp <= NOW)
            abort();
        token_claims_free(claims);
    } else if (r != -EINVAL && r != -EPERM && r != -ENOMEM) {
        abort();
    }
}

/* Encodes header and claims, signs them with the test key. */
static void sign_and_check(const uint8_t *h, size_t hl, const uint8_t *c, size_t cl)
{
    size_t hb = sodium_base64_ENCODED_LEN(hl, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    size_t cb = sodium_base64_ENCODED_LEN(cl, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    size_t sb = sodium_base64_ENCODED_LEN(64, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    char *tok = malloc(hb + cb + sb + 3);
    if (!tok)
        return;
    sodium_bin2base64(tok, hb, h, hl, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    size_t pos = strlen(tok);
    tok[pos++] = '.';
    sodium_bin2base64(tok + pos, cb, c, cl, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    pos += strlen(tok + pos);
    uint8_t sig[64];
    if (keys_sign(&key, (const uint8_t *)tok, pos, sig) == 0) {
        tok[pos++] = '.';
        sodium_bin2base64(tok + pos, sb, sig, sizeof(sig),
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING);
        check(tok, strlen(tok));
    }
    free(tok);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!keyset)
        setup();
    if (size == 0 || size > TOKEN_MAX_LEN)
        return 0;
    if (data[0] & 1) {
        check((const char *)data + 1, size - 1);
        return 0;
    }
    const uint8_t *rest = data + 1;
    size_t n = size - 1;
    const uint8_t *nl = memchr(rest, '\n', n);
    if (!nl)
        return 0;
    size_t hl = (size_t)(nl - rest);
    sign_and_check(rest, hl, nl + 1, n - hl - 1);
    return 0;
}
