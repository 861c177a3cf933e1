// A real OpenID Connect provider (panva/oidc-provider, certified) on loopback, standing in for
// Azure AD / Entra ID in the manager's tests. Test-only: ephemeral signing keys, a cookie key
// from the environment, and a control endpoint that says who signs in next (the login screen a
// person would see is replaced by that choice; everything after it — codes, PKCE, nonce, ID token
// signing, audiences — is the provider's own).
//
// Environment: PORT (0 = any), CLIENT_ID, CLIENT_SECRET, REDIRECT_URI, CODE_TTL (seconds).
// Prints one JSON line {"issuer": "..."} on stdout when it listens.
//
// POST /test/next-login  {"sub", "name", "preferred_username", "email", "groups": [...]}
//   sets the account the next authorization request signs in as.
// POST /test/clock  {"advance": seconds}
//   moves the provider's clock (may be negative); answers {"offset": total seconds}. Every
//   lifetime the provider checks (codes, sessions, its stores' expiry) follows it, so a test
//   expires a code by moving time rather than by waiting for it.

import http from 'node:http';
import crypto from 'node:crypto';
import Provider from 'oidc-provider';

const env = (k, d) => process.env[k] ?? d;
const clientId = env('CLIENT_ID', 'patch-manager');
const clientSecret = env('CLIENT_SECRET', 'test-secret');
const redirectUri = env('REDIRECT_URI', 'http://localhost:8080/api/v1/auth/oidc/callback');
const codeTtl = Number(env('CODE_TTL', '60'));

// The provider's clock: the system clock plus an offset that only POST /test/clock moves. The
// library and its in-memory stores read the time through Date.now.
let clockOffsetMs = 0;
const systemNow = Date.now.bind(Date);
Date.now = () => systemNow() + clockOffsetMs;

// Progress on stderr: the test shows it when the provider does not come up in time.
const progress = (what) => console.error(`lpm-oidc ${new Date().toISOString()}: ${what}`);
progress('modules loaded; generating the signing key');

// A fresh signing key per run (the library's built-in development key is public).
const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: crypto.randomUUID(), use: 'sig', alg: 'RS256' };

const accounts = new Map();
let nextSub = null;

progress('signing key ready; listening');
const server = http.createServer();
server.listen(Number(env('PORT', '0')), '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  progress(`listening on ${issuer}; setting up the provider`);
  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: clientId,
        client_secret: clientSecret,
        redirect_uris: [redirectUri],
        response_types: ['code'],
        grant_types: ['authorization_code'],
      },
      {
        // A second application of the same tenant: its tokens must not open the manager.
        client_id: 'other-app',
        client_secret: 'other-secret',
        redirect_uris: [redirectUri],
        response_types: ['code'],
        grant_types: ['authorization_code'],
      },
    ],
    jwks: { keys: [signingKey] },
    claims: {
      openid: ['sub'],
      profile: ['name', 'preferred_username', 'groups'],
      email: ['email'],
    },
    // Put the profile claims into the ID token, as Azure AD does with optional claims.
    conformIdTokenClaims: false,
    pkce: { required: () => true },
    ttl: { AuthorizationCode: codeTtl },
    cookies: { keys: [crypto.randomBytes(32).toString('hex')] },
    features: { devInteractions: { enabled: false } },
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    async findAccount(ctx, sub) {
      const a = accounts.get(sub);
      if (!a) return undefined;
      return { accountId: sub, async claims() { return { sub, ...a }; } };
    },
    // First-party application: no consent screen.
    async loadExistingGrant(ctx) {
      const grantId = ctx.oidc.result?.consent?.grantId
        || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
      if (grantId) return ctx.oidc.provider.Grant.find(grantId);
      const grant = new ctx.oidc.provider.Grant({
        clientId: ctx.oidc.client.clientId,
        accountId: ctx.oidc.session.accountId,
      });
      grant.addOIDCScope('openid profile email');
      await grant.save();
      return grant;
    },
  });
  provider.on('server_error', (ctx, err) => console.error('server_error', err));

  const callback = provider.callback();
  server.on('request', async (req, res) => {
    try {
      if (req.method === 'POST' && req.url === '/test/next-login') {
        let body = '';
        for await (const chunk of req) body += chunk;
        const a = JSON.parse(body);
        const { sub, ...claims } = a;
        accounts.set(sub, claims);
        nextSub = sub;
        res.writeHead(204).end();
        return;
      }
      if (req.method === 'POST' && req.url === '/test/clock') {
        let body = '';
        for await (const chunk of req) body += chunk;
        const { advance } = JSON.parse(body);
        if (!Number.isFinite(advance)) {
          res.writeHead(400, { 'content-type': 'text/plain' }).end('advance: seconds expected');
          return;
        }
        clockOffsetMs += advance * 1000;
        res.writeHead(200, { 'content-type': 'application/json' })
          .end(JSON.stringify({ offset: clockOffsetMs / 1000 }));
        return;
      }
      if (req.method === 'GET' && req.url.startsWith('/interaction/')) {
        const details = await provider.interactionDetails(req, res);
        if (details.prompt.name !== 'login' || !nextSub) {
          res.writeHead(400, { 'content-type': 'text/plain' }).end(`unexpected prompt ${details.prompt.name}`);
          return;
        }
        await provider.interactionFinished(req, res, { login: { accountId: nextSub } }, {
          mergeWithLastSubmission: false,
        });
        return;
      }
      callback(req, res);
    } catch (err) {
      console.error(err);
      if (!res.headersSent) res.writeHead(500).end(String(err));
    }
  });
  progress('ready');
  process.stdout.write(`${JSON.stringify({ issuer })}\n`);
});
