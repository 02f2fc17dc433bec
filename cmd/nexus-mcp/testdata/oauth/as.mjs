// A real OAuth 2.0 authorization server on loopback for TestOAuthEndToEnd:
// oauth2-mock-server (authorization code with PKCE, client credentials,
// OpenID discovery, JWKS), with a grant policy added through its events:
//   - the access token's aud is the RFC 8707 resource the client asked for
//     (authorize and token requests), so audience binding is exercised;
//   - granted scopes = requested scopes ∩ the client's cap below (the
//     "nexus-readonly" client can never get nexus:write);
//   - tenant_id and sub come from the client; no refresh tokens, so a
//     client needing more scope must authorize again (step-up).
// Prints {"issuer": URL} on stdout once listening; stops when stdin closes.
import { OAuth2Server } from 'oauth2-mock-server';

const all = 'nexus:read nexus:write nexus:delegate nexus:admin';
const clients = {
  'nexus-full': { cap: all, tenant: 'acme', sub: 'alice' },
  'nexus-readonly': { cap: 'nexus:read', tenant: 'acme', sub: 'reader' },
};

const grant = (client, requested) => {
  const cap = new Set((clients[client]?.cap ?? '').split(' '));
  return (requested ?? '').split(' ').filter((s) => cap.has(s)).join(' ');
};

const server = new OAuth2Server();
await server.issuer.keys.generate('ES256');
const codes = new Map(); // authorization code -> { client, scope, resource }

server.service.on('beforeAuthorizeRedirect', (redirect, req) => {
  const code = redirect.url.searchParams.get('code');
  if (!clients[req.query.client_id]) {
    redirect.url.searchParams.delete('code');
    redirect.url.searchParams.set('error', 'unauthorized_client');
    return;
  }
  codes.set(code, { client: req.query.client_id, scope: req.query.scope, resource: req.query.resource });
});

server.service.on('beforeTokenSigning', (token, req) => {
  if (!Object.prototype.hasOwnProperty.call(token.payload, 'scope')) return; // the id_token
  const b = req.body;
  let client = b.client_id;
  let requested = b.scope;
  let resource = b.resource;
  if (b.grant_type === 'authorization_code') {
    const c = codes.get(b.code);
    if (!c) throw new Error('unknown authorization code');
    client = c.client;
    requested = c.scope;
    resource = b.resource ?? c.resource;
  }
  const p = token.payload;
  p.scope = grant(client, requested);
  p.sub = clients[client]?.sub ?? 'nobody';
  p.tenant_id = clients[client]?.tenant ?? 'nobody';
  if (resource) p.aud = resource;
  else delete p.aud;
  p.client_id = client;
});

server.service.on('beforeResponse', (res) => {
  delete res.body.refresh_token;
});

await server.start(0, "127.0.0.1");
server.issuer.url = `http://127.0.0.1:${server.address().port}`; // not "localhost": one address family
process.stdout.write(JSON.stringify({ issuer: server.issuer.url }) + '\n');
process.stdin.resume();
process.stdin.on('end', async () => {
  await server.stop();
  process.exit(0);
});
