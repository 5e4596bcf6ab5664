// The IdP protected from Portcullis's own traffic: bearer tokens that cannot be valid are refused
// without any call to the IdP, and the introspection calls that remain are bounded per provider.
// Against the real IdP (oidc-provider issuing JWT access tokens, as authentik does), counting the
// calls where they arrive: at the IdP.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { SignJWT, decodeJwt, decodeProtectedHeader, generateKeyPair } from 'jose';
import { startStack, freePort, type Stack } from '../support/stack.js';
import { httpGet, type HttpResult } from '../support/browserless.js';
import { accessTokenOf as accessTokenFor } from '../support/tokens.js';
import { checkLocally } from '../../src/plugins/auth/header-auth.js';

const ALICE = { username: 'alice', password: 'alice' };
const AUTO = 'auto.localtest';
const STRICT = 'strict.localtest';
const OTHER = 'other.localtest';
const RATE = 5;
const CONCURRENCY = 2;

let stack: Stack;
let metricsPort: number;
const tokens = new Map<string, string>();

before(async () => {
  metricsPort = await freePort();
  const bound = { introspection_rate: RATE, introspection_concurrency: CONCURRENCY };
  stack = await startStack({
    providers: [
      { name: 'auto', host: AUTO, extra: bound },
      { name: 'strict', host: STRICT, extra: { ...bound, access_token_format: 'jwt' } },
      { name: 'other', host: OTHER },
    ],
    idp: { jwtAccessTokens: true },
    outpost: { metrics: { listen: `127.0.0.1:${metricsPort}` } },
  });
  for (const name of ['auto', 'other']) tokens.set(name, await accessTokenFor(stack, name, ALICE));
});
after(async () => stack?.close());

const bearer = (token: string) => ({ authorization: `Bearer ${token}`, accept: 'application/json' });
const get = (host: string, token: string, path = '/api') => httpGet(stack.url(host, path), { headers: bearer(token) });

function upstreamSaw(res: HttpResult): Record<string, string> {
  assert.equal(res.status, 200, `expected the upstream's 200, got ${res.status}: ${res.body.slice(0, 300)}`);
  return (JSON.parse(res.body) as { headers: Record<string, string> }).headers;
}

function assertRefused(res: HttpResult, what: string): void {
  assert.equal(res.status, 401, `${what}: ${res.status} ${res.body.slice(0, 200)}`);
  assert.match(String(res.headers['www-authenticate']), /error="invalid_token"/);
}

/** portcullis_header_auth_total for one provider, by outcome. */
async function headerAuthMetrics(provider: string): Promise<Record<string, number>> {
  const text = (await httpGet(`http://127.0.0.1:${metricsPort}/metrics`)).body;
  const out: Record<string, number> = {};
  for (const m of text.matchAll(/^portcullis_header_auth_total\{provider="([^"]+)",outcome="([^"]+)"\} (\d+)$/gm)) {
    if (m[1] === provider) out[m[2]!] = Number(m[3]);
  }
  return out;
}

/** A JWT shaped exactly like the IdP's, signed with a key the IdP never had. */
async function forged(real: string, header: Record<string, unknown> = {}): Promise<string> {
  const { privateKey } = await generateKeyPair('RS256');
  return new SignJWT(decodeJwt(real)).setProtectedHeader({ ...decodeProtectedHeader(real), alg: 'RS256', ...header }).sign(privateKey);
}

const randomOpaque = () => randomBytes(32).toString('base64url');

describe('a JWT access token issued to this provider', () => {
  test('is verified locally, introspected once, and gives the upstream the identity and X-authentik-jwt', async () => {
    const token = tokens.get('auto')!;
    assert.equal(decodeProtectedHeader(token).typ, 'at+jwt', 'the IdP issues JWT access tokens');
    const before = stack.idp.introspections;
    const h = upstreamSaw(await get(AUTO, token));
    assert.equal(h['x-authentik-username'], 'alice');
    assert.equal(h['x-authentik-jwt'], token);
    assert.equal(h.authorization, undefined);
    assert.equal(stack.idp.introspections, before + 1);
  });
});

describe('tokens that cannot be valid are refused without calling the IdP', () => {
  test("another client's token, a tampered one, a forged one, an unknown key id", async () => {
    const real = tokens.get('auto')!;
    const [h, p, sig] = real.split('.') as [string, string, string];
    const flipped = sig.slice(0, 10) + (sig[10] === 'A' ? 'B' : 'A') + sig.slice(11);
    const cases: [string, string][] = [
      ["another client's token (CVE-2024-47077)", tokens.get('other')!],
      ['a tampered signature', `${h}.${p}.${flipped}`],
      ['a forged token with the real key id', await forged(real)],
      ['a forged token with an unknown key id', await forged(real, { kid: 'not-a-key-of-the-idp' })],
    ];
    const introspections = stack.idp.introspections;
    const jwks = stack.idp.jwksFetches;
    const metrics = await headerAuthMetrics('auto');
    for (const [what, token] of cases) assertRefused(await get(AUTO, token), what);
    assert.equal(stack.idp.introspections, introspections, 'no introspection call');
    assert.ok(stack.idp.jwksFetches - jwks <= 1, `one JWKS refetch at most for the unknown key id, got ${stack.idp.jwksFetches - jwks}`);
    const after = await headerAuthMetrics('auto');
    assert.equal(after.local_refusal! - metrics.local_refusal!, cases.length);
    assert.equal(after.introspection, metrics.introspection);
    // The same token where it belongs is fine.
    assert.equal(upstreamSaw(await get(OTHER, tokens.get('other')!))['x-authentik-meta-provider'], 'other');
  });

  test('an expired JWT is refused locally (the check at a time after its exp)', async () => {
    const token = tokens.get('auto')!;
    const p = stack.outpost.providers.all.find((x) => x.name === 'auto')!;
    const exp = decodeJwt(token).exp!;
    assert.equal(await checkLocally(p, token, (exp - 60) * 1000), null, 'valid before its exp: the IdP decides');
    assert.deepEqual(await checkLocally(p, token, (exp + 1) * 1000), { kind: 'refused', reason: 'expired' });
  });

  test('access_token_format: jwt refuses anything that is not such a JWT, without asking', async () => {
    const before = stack.idp.introspections;
    assertRefused(await get(STRICT, randomOpaque()), 'an opaque token');
    assertRefused(await get(STRICT, 'eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.c2ln'), 'alg none');
    assert.equal(stack.idp.introspections, before);
  });
});

describe('a flood of random bearer tokens', () => {
  test('costs a bounded number of IdP calls; beyond the bound 503 + Retry-After; a valid token keeps working', async (t) => {
    const valid = tokens.get('auto')!;
    upstreamSaw(await get(AUTO, valid)); // cached
    const strictToken = await accessTokenFor(stack, 'strict', ALICE); // never used yet
    const real = tokens.get('auto')!;
    const forgedKid = await Promise.all(Array.from({ length: 5 }, (_, i) => forged(real, { kid: `random-kid-${i}` })));

    const introspections = stack.idp.introspections;
    const jwks = stack.idp.jwksFetches;
    const started = Date.now();
    const statuses = new Map<number, number>();
    const note = (r: HttpResult) => statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
    let strictChecked = false;
    for (let wave = 0; wave < 6; wave++) {
      const flood = Array.from({ length: 40 }, (_, i) => {
        // Random opaque tokens on both providers, and JWTs with made-up key ids.
        if (i % 8 === 0) return get(AUTO, forgedKid[i % forgedKid.length]!);
        return get(i % 2 === 0 ? AUTO : STRICT, randomOpaque());
      });
      const during = [get(AUTO, valid, '/during')];
      if (wave === 3) during.push(get(STRICT, strictToken, '/during'));
      const results = await Promise.all([...flood, ...during]);
      for (const r of results.slice(0, flood.length)) {
        note(r);
        assert.ok(r.status === 401 || r.status === 503, `a random token never gets through: ${r.status}`);
        if (r.status === 503) {
          assert.equal(r.headers['retry-after'], '1');
          assert.equal(JSON.parse(r.body).error, 'auth.introspection_limited');
        }
      }
      assert.equal(upstreamSaw(results[flood.length]!)['x-authentik-username'], 'alice', 'the cached valid token works during the flood');
      if (wave === 3) {
        // A token never seen before, on the provider that refuses non-JWTs locally: its bound is untouched by the flood.
        assert.equal(upstreamSaw(results[flood.length + 1]!)['x-authentik-meta-provider'], 'strict');
        strictChecked = true;
      }
    }
    assert.ok(strictChecked);
    const seconds = (Date.now() - started) / 1000;
    const calls = stack.idp.introspections - introspections;
    // 240 random tokens; the IdP sees at most the auto provider's bucket (RATE now, RATE per
    // second after) plus the one fresh valid token of the strict provider.
    const allowed = RATE + Math.ceil(seconds * RATE) + 1;
    t.diagnostic(`240 random tokens in ${seconds.toFixed(1)} s: ${calls} introspection calls, statuses ${JSON.stringify([...statuses])}, ${stack.idp.jwksFetches - jwks} JWKS fetches`);
    assert.ok(calls <= allowed, `${calls} introspection calls in ${seconds.toFixed(1)} s exceed ${allowed}`);
    assert.ok(calls < 240 / 4, `far fewer calls than tokens: ${calls}`);
    assert.ok((statuses.get(503) ?? 0) > 0, `the bound was reached: ${JSON.stringify([...statuses])}`);
    assert.ok(stack.idp.jwksFetches - jwks <= Math.ceil(seconds) + 1, `JWKS fetches ${stack.idp.jwksFetches - jwks} in ${seconds.toFixed(1)} s`);

    const m = await headerAuthMetrics('auto');
    assert.ok(m.limited! > 0 && m.local_refusal! > 0 && m.cache_hit! > 0 && m.introspection! > 0, JSON.stringify(m));
    const strict = await headerAuthMetrics('strict');
    assert.equal(strict.limited, 0);
    assert.ok(strict.local_refusal! >= 100, JSON.stringify(strict));

    // After the Retry-After, a new valid token on the flooded provider is checked again.
    await new Promise((r) => setTimeout(r, 1100));
    const fresh = await accessTokenFor(stack, 'auto', ALICE);
    assert.equal(upstreamSaw(await get(AUTO, fresh, '/after'))['x-authentik-username'], 'alice');
  });
});
