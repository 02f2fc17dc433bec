// The official MCP TypeScript SDK client, with its OAuth support, driven
// as a host would drive it, for TestOAuthEndToEnd:
//   node client.mjs SERVER_URL CLIENT_ID CALLS_JSON
// It connects to SERVER_URL with no token: the SDK gets the 401, reads the
// resource metadata it names, discovers the authorization server, and
// starts an authorization code flow with PKCE and the resource indicator.
// redirectToAuthorization stands in for the browser: it follows the
// authorization URL (the server grants without a login page) and keeps the
// code, which the SDK then exchanges. Then every call of CALLS_JSON
// ([{"tool":..., "arguments":{...}}]) is made; a 403 insufficient_scope
// makes the SDK authorize again (step-up), once.
// Every HTTP exchange and every step is printed as one JSON line.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';

const [serverUrl, clientId, callsJSON] = process.argv.slice(2);
const calls = JSON.parse(callsJSON ?? '[]');
const emit = (o) => process.stdout.write(JSON.stringify(o) + '\n');

const logFetch = async (url, init) => {
  const res = await fetch(url, init);
  emit({
    event: 'http',
    method: init?.method ?? 'GET',
    url: String(url),
    status: res.status,
    www_authenticate: res.headers.get('www-authenticate') ?? '',
  });
  return res;
};

let pendingCode;
let tokens;
let verifier;
const redirectUrl = 'http://127.0.0.1:9/callback'; // never contacted
const provider = {
  get redirectUrl() {
    return redirectUrl;
  },
  get clientMetadata() {
    return {
      client_name: 'nexus-mcp OAuth e2e',
      redirect_uris: [redirectUrl],
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    };
  },
  clientInformation: () => ({ client_id: clientId }),
  tokens: () => tokens,
  saveTokens: (t) => {
    tokens = t;
    const claims = JSON.parse(Buffer.from(t.access_token.split('.')[1], 'base64url').toString());
    emit({ event: 'token', scope: claims.scope, aud: claims.aud, iss: claims.iss, tenant_id: claims.tenant_id });
  },
  saveCodeVerifier: (v) => {
    verifier = v;
  },
  codeVerifier: () => verifier,
  redirectToAuthorization: async (url) => {
    emit({
      event: 'authorize',
      scope: url.searchParams.get('scope'),
      resource: url.searchParams.get('resource'),
      code_challenge_method: url.searchParams.get('code_challenge_method'),
    });
    const res = await fetch(url, { redirect: 'manual' });
    const loc = new URL(res.headers.get('location'));
    pendingCode = loc.searchParams.get('code') ?? undefined;
    if (!pendingCode) emit({ event: 'authorize_refused', error: loc.searchParams.get('error') });
  },
};

// authorized runs fn; when the SDK asks for an authorization (401 or a
// 403 insufficient_scope), it completes it with the code and runs fn again.
async function authorized(transport, fn) {
  try {
    return await fn();
  } catch (e) {
    if (!(e instanceof UnauthorizedError) || !pendingCode) throw e;
    const code = pendingCode;
    pendingCode = undefined;
    await transport.finishAuth(code);
    emit({ event: 'authorized' });
    return await fn();
  }
}

let transport = new StreamableHTTPClientTransport(new URL(serverUrl), { authProvider: provider, fetch: logFetch });
const client = new Client({ name: 'nexus-oauth-e2e', version: '1.0.0' });
try {
  await client.connect(transport);
} catch (e) {
  if (!(e instanceof UnauthorizedError) || !pendingCode) throw e;
  const code = pendingCode;
  pendingCode = undefined;
  await transport.finishAuth(code);
  emit({ event: 'authorized' });
  transport = new StreamableHTTPClientTransport(new URL(serverUrl), { authProvider: provider, fetch: logFetch });
  await client.connect(transport);
}
emit({ event: 'connected', protocol: transport.protocolVersion ?? '' });

for (const c of calls) {
  try {
    const r = await authorized(transport, () => client.callTool({ name: c.tool, arguments: c.arguments ?? {} }));
    emit({ event: 'call', tool: c.tool, isError: !!r.isError, text: r.content?.[0]?.text ?? '' });
  } catch (e) {
    emit({ event: 'call', tool: c.tool, error: String(e?.message ?? e), code: e?.code ?? null });
  }
}
await client.close();
