// ProviderKeys against a real HTTP jwks_uri: refetch on an unknown key id, one fetch in flight,
// at least the floor between fetches, stale keys kept through an outage.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { SignJWT, exportJWK, generateKeyPair, errors, type JWK } from 'jose';
import { pino } from 'pino';
import { ProviderKeys, JwksUnavailable } from '../../src/oidc/jwks.js';

interface Signer {
  kid: string;
  privateKey: CryptoKey;
  publicJwk: JWK;
}

async function signer(kid: string): Promise<Signer> {
  const { privateKey, publicKey } = await generateKeyPair('ES256');
  return { kid, privateKey, publicJwk: { ...(await exportJWK(publicKey)), kid, alg: 'ES256', use: 'sig' } };
}

const sign = (s: Signer, claims: Record<string, unknown> = {}, header: Record<string, unknown> = { kid: s.kid }) =>
  new SignJWT({ sub: 'u', ...claims }).setProtectedHeader({ alg: 'ES256', ...header }).setIssuer('https://idp').setAudience('c').setExpirationTime((claims.exp as number | undefined) ?? '5m').sign(s.privateKey);

let server: http.Server;
let uri: URL;
let published: Signer[] = [];
let requests = 0;
let failing = false;
const log = pino({ level: 'silent' });
const opts = { issuer: 'https://idp', audience: 'c' };

before(async () => {
  server = http.createServer((_req, res) => {
    requests++;
    if (failing) {
      res.statusCode = 500;
      res.end();
      return;
    }
    res.setHeader('content-type', 'application/jwk-set+json');
    res.end(JSON.stringify({ keys: published.map((s) => s.publicJwk) }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  uri = new URL(`http://127.0.0.1:${(server.address() as AddressInfo).port}/jwks`);
});
after(() => new Promise<void>((resolve) => server.close(() => resolve())));

test('a known key id needs one fetch; a rotated-in key id is fetched again at once', async () => {
  const a = await signer('a');
  const b = await signer('b');
  published = [a];
  requests = 0;
  const keys = new ProviderKeys(uri, log, { refetchFloorMs: 50 });
  assert.equal((await keys.verify(await sign(a), opts)).payload.sub, 'u');
  assert.equal((await keys.verify(await sign(a), opts)).payload.sub, 'u');
  assert.equal(requests, 1);
  published = [b, a];
  assert.equal((await keys.verify(await sign(b), opts)).payload.sub, 'u');
  assert.equal(requests, 2);
});

test('a flood of unknown key ids: one fetch in flight, at most one per floor, and a valid token still verifies', async () => {
  const a = await signer('a');
  const forger = await signer('forged');
  published = [a];
  requests = 0;
  const floor = 200;
  const keys = new ProviderKeys(uri, log, { refetchFloorMs: floor });
  await keys.verify(await sign(a), opts);
  const started = Date.now();
  const forged = await Promise.all(Array.from({ length: 50 }, (_, i) => sign(forger, {}, { kid: `random-${i}` })));
  // Three waves of 50 forged tokens each, plus a real one in the middle of each wave.
  for (let wave = 0; wave < 3; wave++) {
    const real = await sign(a);
    const results = await Promise.allSettled([...forged.map((t) => keys.verify(t, opts)), keys.verify(real, opts)]);
    assert.equal(results.at(-1)!.status, 'fulfilled', 'the real token verifies during the flood');
    for (const r of results.slice(0, -1)) {
      assert.equal(r.status, 'rejected');
      assert.ok((r as PromiseRejectedResult).reason instanceof errors.JWKSNoMatchingKey);
    }
  }
  const elapsed = Date.now() - started;
  assert.ok(requests - 1 <= Math.floor(elapsed / floor) + 1, `${requests - 1} refetches in ${elapsed} ms exceed one per ${floor} ms`);
  assert.ok(requests - 1 >= 1 && requests - 1 <= 3, `one refetch per wave at most, got ${requests - 1}`);
  assert.equal(keys.fetches, requests);
});

test('a token without kid while two keys are published: each candidate is tried', async () => {
  const a = await signer('a');
  const b = await signer('b');
  published = [a, b];
  const keys = new ProviderKeys(uri, log, { refetchFloorMs: 10 });
  assert.equal((await keys.verify(await sign(b, {}, {}), opts)).payload.sub, 'u');
  await assert.rejects(keys.verify(await sign(await signer('x'), {}, {}), opts), errors.JWSSignatureVerificationFailed);
});

test('an outage: the first fetch failing is JwksUnavailable; cached keys keep working; an unknown kid during it is JwksUnavailable', async () => {
  const a = await signer('a');
  published = [a];
  failing = true;
  const keys = new ProviderKeys(uri, log, { refetchFloorMs: 10, maxAgeMs: 100 });
  await assert.rejects(keys.verify(await sign(a), opts), JwksUnavailable);
  failing = false;
  assert.equal((await keys.verify(await sign(a), opts)).payload.sub, 'u');
  failing = true;
  await new Promise((r) => setTimeout(r, 120));
  // Stale and unrefreshable: the cached key still verifies its tokens.
  assert.equal((await keys.verify(await sign(a), opts)).payload.sub, 'u');
  await assert.rejects(keys.verify(await sign(await signer('new')), opts), JwksUnavailable);
  failing = false;
});

test('expiry and audience are still checked', async () => {
  const a = await signer('a');
  published = [a];
  const keys = new ProviderKeys(uri, log);
  await assert.rejects(keys.verify(await sign(a, { exp: Math.floor(Date.now() / 1000) - 10 }), opts), errors.JWTExpired);
  await assert.rejects(keys.verify(await sign(a), { ...opts, audience: 'other' }), errors.JWTClaimValidationFailed);
});
