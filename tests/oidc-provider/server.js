// A real, external OpenID Connect provider for idgate's integration tests.
//
// It is node-oidc-provider (an OpenID Certified server), configured with two
// clients, both receiving RS256-signed JWT access tokens (RFC 9068,
// `typ: at+jwt`) for the resource `urn:idgate`, with `aud: "idgate"`:
//   - `idgate-test`, confidential, client_credentials grant (a workload);
//   - `idgate-cli`, a public native client as `idgate login` uses it
//     (RFC 8252): authorization code with PKCE (required) on loopback
//     redirects of any port, the device grant (RFC 8628), refresh tokens
//     (`offline_access`) rotated on every use, revocation (RFC 7009). People
//     sign in and consent on oidc-provider's own development pages: any
//     login name and password are accepted, the login name becomes `sub` and
//     `email`; `[ Cancel ]` on those pages denies (`access_denied`).
//
// Usage: node server.js [PORT]      (PORT 0 or absent = ephemeral)
//   env OIDC_PROVIDER_PORT          port when no argument is given
//   env OIDC_TOKEN_TTL              access-token lifetime in seconds (default 600)
//   env OIDC_EXTRA_CLAIMS           JSON object merged into every access token
//   env OIDC_PROVIDER_IGNORE_STDIN  set to 1 to keep running when stdin closes
//   env OIDC_DEVICE_CODE_TTL        device-code lifetime in seconds (default 600)
//   env OIDC_DEVICE_SLOW_DOWN       set to 1 to answer the first pending poll of
//                                   each device code with `slow_down` (RFC 8628 §3.5)
//
// Test routes (not OIDC):
//   GET /test/counters   {"grants":{"refresh_token":N,...},"device_polls":[ms,...]}:
//                        token-endpoint requests per grant type, answered or
//                        refused, and when each device-code poll came
//
// Contract with the test harness (tests/support/oidc_provider.rs):
//   - stdout carries exactly one line: {"ready":true,"issuer":"http://127.0.0.1:PORT"}
//   - everything else (oidc-provider's notices, errors) goes to stderr
//   - the process exits when stdin closes (the parent died) and on SIGTERM/SIGINT.

import * as crypto from 'node:crypto';
import * as http from 'node:http';

// oidc-provider prints notices with console.info, which is stdout. Keep
// stdout for the ready line alone.
console.info = console.error;
console.log = console.error;

const { default: Provider, errors } = await import('oidc-provider');

const CLIENT_ID = 'idgate-test';
const CLIENT_SECRET = 'idgate-test-secret';
const NATIVE_CLIENT_ID = 'idgate-cli';
const DEVICE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code';
const RESOURCE = 'urn:idgate';
const AUDIENCE = 'idgate';

function parsePort() {
  const raw = process.argv[2] ?? process.env.OIDC_PROVIDER_PORT ?? '0';
  const port = Number.parseInt(raw, 10);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    console.error(`invalid port ${JSON.stringify(raw)}`);
    process.exit(2);
  }
  return port;
}

function parseExtraClaims() {
  const raw = process.env.OIDC_EXTRA_CLAIMS;
  if (!raw) return {};
  const parsed = JSON.parse(raw);
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new Error('OIDC_EXTRA_CLAIMS must be a JSON object');
  }
  return parsed;
}

function signingJwks() {
  // A fresh key per run: tests must fetch the JWKS, never pin a key.
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = privateKey.export({ format: 'jwk' });
  return { keys: [{ ...jwk, kid: crypto.randomUUID(), alg: 'RS256', use: 'sig' }] };
}

const port = parsePort();
const tokenTtl = Number.parseInt(process.env.OIDC_TOKEN_TTL ?? '600', 10);
if (!Number.isInteger(tokenTtl) || tokenTtl <= 0) {
  console.error(`invalid OIDC_TOKEN_TTL ${JSON.stringify(process.env.OIDC_TOKEN_TTL)}`);
  process.exit(2);
}
const extraClaims = parseExtraClaims();
const deviceCodeTtl = Number.parseInt(process.env.OIDC_DEVICE_CODE_TTL ?? '600', 10);
if (!Number.isInteger(deviceCodeTtl) || deviceCodeTtl <= 0) {
  console.error(`invalid OIDC_DEVICE_CODE_TTL ${JSON.stringify(process.env.OIDC_DEVICE_CODE_TTL)}`);
  process.exit(2);
}
const slowDown = process.env.OIDC_DEVICE_SLOW_DOWN === '1';

let handler = (_req, res) => {
  res.statusCode = 503;
  res.end('starting');
};
const server = http.createServer((req, res) => handler(req, res));

await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(port, '127.0.0.1', resolve);
});
const issuer = `http://127.0.0.1:${server.address().port}`;

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: CLIENT_ID,
      client_secret: CLIENT_SECRET,
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_basic',
    },
    {
      client_id: NATIVE_CLIENT_ID,
      application_type: 'native',
      token_endpoint_auth_method: 'none',
      grant_types: ['authorization_code', 'refresh_token', DEVICE_GRANT],
      response_types: ['code'],
      // A native client's loopback redirect matches with any port (RFC 8252 §7.3).
      redirect_uris: ['http://127.0.0.1/callback'],
    },
  ],
  // Public clients always need PKCE; say so for every client.
  pkce: { required: () => true },
  jwks: signingJwks(),
  cookies: { keys: [crypto.randomBytes(32).toString('hex')] },
  features: {
    devInteractions: { enabled: true },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    deviceFlow: { enabled: true },
    revocation: { enabled: true },
    resourceIndicators: {
      enabled: true,
      // A token request without `resource` still gets a JWT for idgate.
      defaultResource: async () => RESOURCE,
      // Codes, device codes and refresh tokens carry the resource granted at
      // authorization: their access tokens are JWTs for idgate as well.
      useGrantedResource: async () => true,
      getResourceServerInfo: async (_ctx, resourceIndicator) => {
        if (resourceIndicator !== RESOURCE) {
          throw new errors.InvalidTarget(`unknown resource ${resourceIndicator}`);
        }
        return {
          audience: AUDIENCE,
          scope: 'openid',
          accessTokenTTL: tokenTtl,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'RS256' } },
        };
      },
    },
  },
  scopes: ['openid', 'offline_access'],
  ttl: { ClientCredentials: tokenTtl, DeviceCode: deviceCodeTtl },
  extraTokenClaims: async (_ctx, token) => {
    if (token.clientId === CLIENT_ID) {
      return { email: 'analyst@example.com', groups: ['analysts'], ...extraClaims };
    }
    if (token.clientId === NATIVE_CLIENT_ID) {
      return { email: token.accountId, groups: ['analysts'], ...extraClaims };
    }
    return undefined;
  },
});
provider.on('server_error', (_ctx, err) => console.error('server_error', err));

// Token-endpoint requests per grant type, for tests that prove how often a
// client refreshed.
const grants = {};
const countGrant = (ctx) => {
  const type = ctx.oidc?.params?.grant_type ?? 'unknown';
  grants[type] = (grants[type] ?? 0) + 1;
};
provider.on('grant.success', countGrant);
provider.on('grant.error', countGrant);

// Device-code polls: when each came, and (OIDC_DEVICE_SLOW_DOWN) the first
// pending answer per device code turned into `slow_down`.
const devicePolls = [];
const slowedDown = new Set();
provider.use(async (ctx, next) => {
  await next();
  if (ctx.path !== '/token' || ctx.oidc?.params?.grant_type !== DEVICE_GRANT) return;
  devicePolls.push(Date.now());
  const code = ctx.oidc.params.device_code;
  if (slowDown && ctx.status === 400 && ctx.body?.error === 'authorization_pending' && !slowedDown.has(code)) {
    slowedDown.add(code);
    ctx.body = { error: 'slow_down', error_description: 'poll less often' };
  }
});

const oidc = provider.callback();
handler = (req, res) => {
  if (req.method === 'GET' && req.url === '/test/counters') {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ grants, device_polls: devicePolls }));
    return;
  }
  oidc(req, res);
};

function shutdown(code) {
  server.close();
  server.closeAllConnections?.();
  process.exit(code);
}
process.on('SIGTERM', () => shutdown(0));
process.on('SIGINT', () => shutdown(0));
if (process.env.OIDC_PROVIDER_IGNORE_STDIN !== '1') {
  process.stdin.on('end', () => shutdown(0));
  process.stdin.on('close', () => shutdown(0));
  process.stdin.on('error', () => shutdown(0));
  process.stdin.resume();
}

process.stdout.write(`${JSON.stringify({ ready: true, issuer })}\n`);
