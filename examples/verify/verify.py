#!/usr/bin/env python3
"""Verify a sockid token with PyJWT, the way a service receiving one would.

The service needs only the agent's key set (the JWKS that `sockid bundle`
prints), not the agent itself:

    sockid bundle > jwks.json                      # on the workload's host
    ./verify.py --jwks jwks.json --audience https://db.example.org "$TOKEN"
    ./verify.py --jwks jwks.json --audience https://db.example.org - < token

Checks: an Ed25519 signature ("alg":"EdDSA", nothing else) by the key the
token's "kid" names, "typ" JWT, no "crit" header, "exp" in the future,
"aud" containing the audience, and "sub" a SPIFFE ID (of --trust-domain when
given, or exactly --spiffe-id). Refresh jwks.json after the agent rotates
its key; a retired key stays in the bundle until its tokens have expired.

Needs PyJWT 2 with the cryptography package (Debian: python3-jwt,
python3-cryptography; elsewhere: pip install "pyjwt[crypto]").

Exit status: 0 valid (prints the claims as one JSON line), 1 invalid (says
why on stderr), 2 usage error or the verifier cannot run.
"""
import argparse
import json
import sys

try:
    import jwt
    from jwt.algorithms import has_crypto
except ImportError as e:
    print("verify.py: cannot import PyJWT (%s): install python3-jwt, or "
          "pip install 'pyjwt[crypto]'" % e, file=sys.stderr)
    sys.exit(2)
if not has_crypto:
    print("verify.py: PyJWT cannot use the cryptography package, so it has no EdDSA: "
          "install python3-cryptography", file=sys.stderr)
    sys.exit(2)


class Invalid(Exception):
    """The token is not valid; the message says why."""


def load_key(jwks, kid):
    """The key of the set whose "kid" is the token's."""
    if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list):
        raise ValueError('not a JWKS: no "keys" array')
    found = [k for k in jwks["keys"] if isinstance(k, dict) and k.get("kid") == kid]
    if len(found) != 1:
        raise Invalid("%d keys in the JWKS have the token's kid %r; fetch the bundle again "
                      "('sockid bundle') if the agent's key rotated" % (len(found), kid))
    try:
        return jwt.PyJWK(found[0], algorithm="EdDSA")
    except jwt.PyJWTError as e:
        raise ValueError("the key %r is not an Ed25519 key: %s" % (kid, e))


def verify(jwks, token, audience, trust_domain=None, spiffe_id=None, leeway=0):
    """The token's claims, or Invalid."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as e:
        raise Invalid("malformed token: %s" % e)
    if header.get("alg") != "EdDSA":
        raise Invalid('"alg" is %r; sockid tokens are EdDSA' % header.get("alg"))
    if header.get("typ", "JWT") not in ("JWT", "JOSE"):
        raise Invalid('"typ" is %r, not JWT' % header.get("typ"))
    if "crit" in header:
        raise Invalid('the token has a "crit" header this verifier does not understand')
    key = load_key(jwks, header.get("kid"))
    try:
        claims = jwt.decode(token, key.key, algorithms=["EdDSA"], audience=audience,
                            leeway=leeway, options={"require": ["exp", "sub", "aud"]})
    except jwt.PyJWTError as e:
        raise Invalid("%s: %s" % (type(e).__name__, e))
    sub = claims["sub"]
    prefix = "spiffe://%s/" % trust_domain if trust_domain else "spiffe://"
    if not isinstance(sub, str) or not sub.startswith(prefix):
        raise Invalid('"sub" is %r, not a SPIFFE ID under %s' % (sub, prefix))
    if spiffe_id and sub != spiffe_id:
        raise Invalid('"sub" is %s, not %s' % (sub, spiffe_id))
    return claims


def main():
    p = argparse.ArgumentParser(description="Verify a sockid token with PyJWT.")
    p.add_argument("--jwks", required=True, metavar="FILE",
                   help="the key set, as 'sockid bundle' prints it")
    p.add_argument("--audience", required=True, metavar="AUD",
                   help="this service's name: the token's aud must hold it")
    p.add_argument("--trust-domain", metavar="DOMAIN",
                   help="accept only SPIFFE IDs of this trust domain")
    p.add_argument("--spiffe-id", metavar="ID", help="accept only this SPIFFE ID")
    p.add_argument("--leeway", type=int, default=0, metavar="SECONDS",
                   help="clock skew to tolerate on exp (default 0)")
    p.add_argument("token", metavar="TOKEN", help="the token, or - to read it from stdin")
    a = p.parse_args()

    try:
        with open(a.jwks, encoding="utf-8") as f:
            jwks = json.load(f)
    except (OSError, ValueError) as e:
        print("verify.py: cannot read the JWKS %s: %s" % (a.jwks, e), file=sys.stderr)
        return 2
    token = sys.stdin.read().strip() if a.token == "-" else a.token
    try:
        claims = verify(jwks, token, a.audience, a.trust_domain, a.spiffe_id, a.leeway)
    except ValueError as e:
        print("verify.py: cannot use the JWKS %s: %s" % (a.jwks, e), file=sys.stderr)
        return 2
    except Invalid as e:
        print("verify.py: invalid: %s" % e, file=sys.stderr)
        return 1
    print(json.dumps(claims, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
