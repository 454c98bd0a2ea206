#!/usr/bin/python3
"""Verifies a sockid token with PyJWT, knowing nothing of sockid: the key from
a JWKS by the token's kid, jwt.decode with the audience checked, EdDSA only.

    /usr/bin/python3 verify.py JWKS_FILE TOKEN AUDIENCE [SPIFFE_ID]
    /usr/bin/python3 verify.py --self-test

Run it with Debian's /usr/bin/python3 (python3-jwt, python3-cryptography):
another python3 on PATH may not see those packages.

Exit status: 0 accepted (prints one JSON line: verifier, version, sub, kid);
1 rejected (prints why on stderr; "rejected (audience)" when the audience is
what failed); 2 the verifier itself could not run.
"""
import json
import sys


def die(msg):
    print("verify.py: %s" % msg, file=sys.stderr)
    sys.exit(2)


try:
    import jwt
    from jwt.algorithms import has_crypto
except ImportError as e:
    die("cannot import PyJWT in %s: %s; install Debian's python3-jwt" % (sys.executable, e))
if not has_crypto:
    die("PyJWT in %s cannot use cryptography, so it has no EdDSA; install Debian's "
        "python3-cryptography" % sys.executable)


def verify(jwks, token, audience, spiffe_id=None):
    """Returns (accepted, text): the payload summary, or why it was rejected."""
    v = jwt.__version__
    try:
        keyset = jwt.PyJWKSet.from_dict(jwks)
        kid = jwt.get_unverified_header(token).get("kid")
        keys = [k for k in keyset.keys if k.key_id == kid]
        if len(keys) != 1:
            return False, "PyJWT %s rejected: %d keys in the JWKS have the token's kid %r" % (
                v, len(keys), kid)
        claims = jwt.decode(token, keys[0].key, algorithms=["EdDSA"], audience=audience,
                            options={"require": ["exp", "sub", "aud"]})
    except jwt.InvalidAudienceError as e:
        return False, "PyJWT %s rejected (audience): %s: %s" % (v, type(e).__name__, e)
    except (jwt.PyJWTError, ValueError) as e:
        return False, "PyJWT %s rejected: %s: %s" % (v, type(e).__name__, e)
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub.startswith("spiffe://"):
        return False, "PyJWT %s rejected: \"sub\" is %r, not a SPIFFE ID" % (v, sub)
    if spiffe_id and sub != spiffe_id:
        return False, "PyJWT %s rejected: \"sub\" is %s, expected %s" % (v, sub, spiffe_id)
    return True, json.dumps({"verifier": "PyJWT", "version": v, "sub": sub, "kid": kid})


def self_test():
    """Signs with a fresh Ed25519 key and verifies through the same path: proves
    that this PyJWT verifies EdDSA tokens before sockid's are tried."""
    import time
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from jwt.algorithms import OKPAlgorithm

    key = Ed25519PrivateKey.generate()
    jwk = json.loads(OKPAlgorithm.to_jwk(key.public_key()))
    jwk.update(kid="self-test", use="sig")
    jwks = {"keys": [jwk]}
    sub = "spiffe://example.org/self-test"
    now = int(time.time())
    token = jwt.encode({"sub": sub, "aud": "db", "iat": now, "exp": now + 300}, key,
                       algorithm="EdDSA", headers={"kid": "self-test", "typ": "JWT"})
    ok, text = verify(jwks, token, "db", sub)
    if not ok:
        die("self-test: a token just signed was not accepted: %s" % text)
    ok, text = verify(jwks, token, "other", sub)
    if ok or "(audience)" not in text:
        die("self-test: a token for \"db\" was not rejected for \"other\": %s" % text)
    import cryptography
    print("%s, PyJWT %s, cryptography %s: EdDSA self-test passed" % (
        sys.executable, jwt.__version__, cryptography.__version__))


def main(argv):
    if argv == ["--self-test"]:
        self_test()
        return 0
    if not 3 <= len(argv) <= 4:
        die("usage: verify.py JWKS_FILE TOKEN AUDIENCE [SPIFFE_ID]")
    try:
        with open(argv[0], encoding="utf-8") as f:
            jwks = json.load(f)
    except (OSError, ValueError) as e:
        die("cannot read the JWKS %s: %s" % (argv[0], e))
    ok, text = verify(jwks, argv[1], argv[2], argv[3] if len(argv) > 3 else None)
    print(text, file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
