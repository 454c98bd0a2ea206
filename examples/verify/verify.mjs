#!/usr/bin/env node
// Verify a sockid token with node's jose, the way a service receiving one
// would. The service needs only the agent's key set (the JWKS that
// `sockid bundle` prints), not the agent itself:
//
//   npm install                  # jose, from package.json beside this file
//   sockid bundle > jwks.json    # on the workload's host
//   node verify.mjs --jwks jwks.json --audience https://db.example.org "$TOKEN"
//   node verify.mjs --jwks jwks.json --audience https://db.example.org - < token
//
// Checks: an Ed25519 signature ("alg":"EdDSA", nothing else) by the key the
// token's "kid" names, "typ" JWT, no unknown "crit" header, "exp" in the
// future, "aud" containing the audience, and "sub" a SPIFFE ID (of
// --trust-domain when given, or exactly --spiffe-id). Refresh jwks.json after
// the agent rotates its key; a retired key stays in the bundle until its
// tokens have expired. (jose ignores keys whose "use" is not "sig": give it
// the default `sockid bundle`, not `--format spiffe`.)
//
// Exit status: 0 valid (prints the claims as one JSON line), 1 invalid (says
// why on stderr), 2 usage error or the verifier cannot run.
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

function die(msg) {
  console.error(`verify.mjs: ${msg}`);
  process.exit(2);
}

let jose;
try {
  jose = await import('jose');
} catch (e) {
  die(`cannot load jose (${e.message}): run 'npm install' next to verify.mjs, or 'npm install jose'`);
}

let args;
try {
  args = parseArgs({
    options: {
      jwks: { type: 'string' },
      audience: { type: 'string' },
      'trust-domain': { type: 'string' },
      'spiffe-id': { type: 'string' },
      leeway: { type: 'string', default: '0' },
    },
    allowPositionals: true,
  });
} catch (e) {
  die(e.message);
}
const { values, positionals } = args;
if (!values.jwks || !values.audience || positionals.length !== 1)
  die('usage: node verify.mjs --jwks FILE --audience AUD [--trust-domain DOMAIN] ' +
      '[--spiffe-id ID] [--leeway SECONDS] TOKEN|-');
const leeway = Number(values.leeway);
if (!Number.isInteger(leeway) || leeway < 0) die(`--leeway takes whole seconds, not '${values.leeway}'`);

let jwks;
try {
  jwks = JSON.parse(readFileSync(values.jwks, 'utf8'));
} catch (e) {
  die(`cannot read the JWKS ${values.jwks}: ${e.message}`);
}
const token = positionals[0] === '-' ? readFileSync(0, 'utf8').trim() : positionals[0];

let keys;
try {
  keys = jose.createLocalJWKSet(jwks);
} catch (e) {
  die(`cannot use the JWKS ${values.jwks}: ${e.message}`);
}

let payload;
try {
  ({ payload } = await jose.jwtVerify(token, keys, {
    algorithms: ['EdDSA'],
    audience: values.audience,
    typ: 'JWT',
    clockTolerance: leeway,
    requiredClaims: ['exp', 'sub', 'aud'],
  }));
} catch (e) {
  console.error(`verify.mjs: invalid: ${e.code || e.name}: ${e.message}`);
  process.exit(1);
}

const prefix = values['trust-domain'] ? `spiffe://${values['trust-domain']}/` : 'spiffe://';
if (typeof payload.sub !== 'string' || !payload.sub.startsWith(prefix)) {
  console.error(`verify.mjs: invalid: "sub" is ${JSON.stringify(payload.sub)}, not a SPIFFE ID under ${prefix}`);
  process.exit(1);
}
if (values['spiffe-id'] && payload.sub !== values['spiffe-id']) {
  console.error(`verify.mjs: invalid: "sub" is ${payload.sub}, not ${values['spiffe-id']}`);
  process.exit(1);
}
console.log(JSON.stringify(payload));
