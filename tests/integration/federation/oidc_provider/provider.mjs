// A certified OpenID provider (oidc-provider) on loopback for the relying-party tests.
// Config: JSON in OIDC_PROVIDER_CONFIG: {port, issuer, clients, jwks, ttl, accountsFile,
// redirectPrefix, conformIdTokenClaims}. Accounts are read from accountsFile at every login,
// so a test can change a user's groups or amr between two sign-ins.
import { readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import Provider from 'oidc-provider';

const cfg = JSON.parse(process.env.OIDC_PROVIDER_CONFIG);
const accounts = () => JSON.parse(readFileSync(cfg.accountsFile, 'utf8'));
let jwksHits = 0;

const provider = new Provider(cfg.issuer, {
  clients: cfg.clients,
  jwks: cfg.jwks,
  ttl: cfg.ttl ?? {},
  cookies: { keys: [randomBytes(32).toString('hex')] },
  claims: { openid: ['sub', 'amr'], amr: null, email: ['email', 'email_verified'], profile: ['name', 'groups'] },
  conformIdTokenClaims: cfg.conformIdTokenClaims ?? true,
  features: { devInteractions: { enabled: false }, userinfo: { enabled: true } },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  async findAccount(ctx, id) {
    const account = accounts()[id];
    return account && { accountId: id, claims: async () => ({ sub: id, ...account.claims }) };
  },
});
// The RP's redirect URI carries the IdP id, known only once the test created the IdP.
provider.Client.prototype.redirectUriAllowed = (uri) => uri.startsWith(cfg.redirectPrefix);

// Plain forms: no script, no style, so they pass a strict CSP watch in the browser tests.
const page = ({ uid, prompt }) => {
  const login = prompt.name === 'login';
  const field = login
    ? '<label for="login">Username</label> <input id="login" name="login" autocomplete="username">'
    : '<p>Obsigen asks for your e-mail address, name and groups.</p>';
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><link rel="icon" href="data:,">
<title>Test IdP</title></head><body><h1>Test IdP: ${login ? 'sign in' : 'consent'}</h1>
<form method="post" action="/interaction/${encodeURIComponent(uid)}/${prompt.name}">${field}
<button type="submit">${login ? 'Sign in' : 'Allow'}</button></form></body></html>`;
};

const formBody = async (req) => {
  let raw = '';
  for await (const chunk of req) raw += chunk;
  return Object.fromEntries(new URLSearchParams(raw));
};

provider.use(async (ctx, next) => {
  if (ctx.path === '/jwks') jwksHits += 1;
  if (ctx.path === '/test/stats') { ctx.body = { jwks: jwksHits }; return; }
  const match = ctx.path.match(/^\/interaction\/([^/]+)(?:\/(login|consent))?$/);
  if (!match) return next();
  const details = await provider.interactionDetails(ctx.req, ctx.res);
  if (ctx.method === 'GET') {
    // A real browser (the UI tests) gets forms to fill in; httpx (Accept: */*) gets JSON.
    if (ctx.accepts('json', 'html') === 'html') { ctx.type = 'html'; ctx.body = page(details); return; }
    ctx.body = { uid: details.uid, prompt: details.prompt.name };
    return;
  }
  const body = await formBody(ctx.req);
  if (match[2] === 'login') {
    const account = accounts()[body.login];
    if (!account) { ctx.status = 400; ctx.body = { error: 'unknown account' }; return; }
    await provider.interactionFinished(ctx.req, ctx.res, {
      login: { accountId: body.login, amr: account.amr, acr: account.acr },
    }, { mergeWithLastSubmission: false });
  } else {
    const { prompt: { details: missing }, session, params } = details;
    const grant = new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
    if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
    if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
    const result = { consent: { grantId: await grant.save() } };
    await provider.interactionFinished(ctx.req, ctx.res, result, { mergeWithLastSubmission: true });
  }
  ctx.respond = false;
});

provider.listen(cfg.port, '127.0.0.1', () => console.log('ready'));
