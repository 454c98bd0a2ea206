// Verifies a sockid token with node's jose, knowing nothing of sockid: a
// local JWKS, jwtVerify with the audience checked, EdDSA only.
//
//   node verify.mjs JWKS_FILE TOKEN AUDIENCE [SPIFFE_ID]
//   node verify.mjs --self-test
//
// jose is imported from $SOCKID_JOSE_DIR/node_modules when that is set (the
// directory tests/interop/setup.sh installs it into), else as usual.
//
// Exit status: 0 accepted (prints one JSON line: verifier, version, sub, kid);
// 1 rejected (prints why on stderr; "rejected (audience)" when the audience
// is what failed); 2 the verifier itself could not run.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

function die(msg) {
  console.error(`verify.mjs: ${msg}`);
  process.exit(2);
}

async function loadJose() {
  const dir = process.env.SOCKID_JOSE_DIR;
  try {
    if (!dir) {
      const jose = await import('jose');
      return { jose, version: 'unknown' };
    }
    const require = createRequire(resolve(dir, 'package.json'));
    const jose = await import(pathToFileURL(require.resolve('jose')).href);
    const pkg = JSON.parse(readFileSync(resolve(dir, 'node_modules', 'jose', 'package.json'), 'utf8'));
    return { jose, version: pkg.version };
  } catch (e) {
    die(`cannot load jose${dir ? ` from ${dir}` : ''}: ${e.message}; run tests/interop/setup.sh`);
  }
}

// Returns [accepted, text]: the payload summary, or why it was rejected.
async function verify(jose, version, jwks, token, audience, spiffeId) {
  let result;
  try {
    const keys = jose.createLocalJWKSet(jwks);
    result = await jose.jwtVerify(token, keys, { audience, algorithms: ['EdDSA'] });
  } catch (e) {
    const what = e.claim === 'aud' ? 'rejected (audience)' : 'rejected';
    return [false, `jose ${version} ${what}: ${e.code || e.name}: ${e.message}`];
  }
  const { payload, protectedHeader } = result;
  if (typeof payload.sub !== 'string' || !payload.sub.startsWith('spiffe://'))
    return [false, `jose ${version} rejected: "sub" is ${JSON.stringify(payload.sub)}, not a SPIFFE ID`];
  if (spiffeId && payload.sub !== spiffeId)
    return [false, `jose ${version} rejected: "sub" is ${payload.sub}, expected ${spiffeId}`];
  return [true, JSON.stringify({ verifier: 'jose', version, sub: payload.sub, kid: protectedHeader.kid })];
}

// Signs with a fresh Ed25519 key and verifies through the same path: proves
// that this node and this jose verify EdDSA tokens before sockid's are tried.
async function selfTest(jose, version) {
  const { publicKey, privateKey } = await jose.generateKeyPair('EdDSA', { crv: 'Ed25519' });
  const jwk = await jose.exportJWK(publicKey);
  jwk.kid = 'self-test';
  jwk.use = 'sig';
  const jwks = { keys: [jwk] };
  const sub = 'spiffe://example.org/self-test';
  const token = await new jose.SignJWT({ sub })
    .setProtectedHeader({ alg: 'EdDSA', kid: 'self-test', typ: 'JWT' })
    .setAudience('db')
    .setIssuedAt()
    .setExpirationTime('5m')
    .sign(privateKey);
  const [ok, text] = await verify(jose, version, jwks, token, 'db', sub);
  if (!ok) die(`self-test: a token just signed was not accepted: ${text}`);
  const [ok2, text2] = await verify(jose, version, jwks, token, 'other', sub);
  if (ok2 || !text2.includes('(audience)'))
    die(`self-test: a token for "db" was not rejected for "other": ${text2}`);
  console.log(`node ${process.version}, jose ${version}: EdDSA self-test passed`);
}

const args = process.argv.slice(2);
const { jose, version } = await loadJose();
if (args.length === 1 && args[0] === '--self-test') {
  await selfTest(jose, version);
  process.exit(0);
}
if (args.length < 3 || args.length > 4) die('usage: node verify.mjs JWKS_FILE TOKEN AUDIENCE [SPIFFE_ID]');
const [file, token, audience, spiffeId] = args;
let jwks;
try {
  jwks = JSON.parse(readFileSync(file, 'utf8'));
} catch (e) {
  die(`cannot read the JWKS ${file}: ${e.message}`);
}
const [ok, text] = await verify(jose, version, jwks, token, audience, spiffeId);
if (ok) {
  console.log(text);
  process.exit(0);
}
console.error(text);
process.exit(1);
