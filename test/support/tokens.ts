// An access token from a real authorization-code grant at the stack's IdP, for a provider's
// client: the user signs in at the IdP (in a jar of its own), the code is taken from the redirect
// to the registered callback (never followed) and exchanged with the client's credentials.
import assert from 'node:assert/strict';
import * as client from 'openid-client';
import { parse } from 'yaml';
import type { Stack } from './stack.js';
import { CookieJar, followRedirects, parseForms, submitForm } from './browserless.js';

interface ProviderYaml {
  name: string;
  client_id: string;
  client_secret: string;
  external_host: string;
}

/** The provider's client as an openid-client Configuration (client_secret_basic, as registered at the IdP). */
export async function clientConfigOf(stack: Stack, provider: string): Promise<client.Configuration> {
  const p = providerOf(stack, provider);
  return client.discovery(new URL(stack.idp.issuer), p.client_id, undefined, client.ClientSecretBasic(p.client_secret), { execute: [client.allowInsecureRequests] });
}

function providerOf(stack: Stack, provider: string): ProviderYaml {
  return (parse(stack.configYaml) as { providers: ProviderYaml[] }).providers.find((x) => x.name === provider)!;
}

export async function accessTokenOf(stack: Stack, provider: string, user: { username: string; password: string }, scope = 'openid profile email entitlements ak_proxy'): Promise<string> {
  const p = providerOf(stack, provider);
  const config = await clientConfigOf(stack, provider);
  const redirectUri = `${p.external_host.replace(/\/$/, '')}/outpost.goauthentik.io/callback?X-authentik-auth-callback=true`;
  const state = client.randomState();
  const authorize = client.buildAuthorizationUrl(config, { redirect_uri: redirectUri, scope, state });
  const jar = new CookieJar();
  const first = await followRedirects(authorize.href, { jar });
  const form = parseForms(first.final.body, first.final.url).find((f) => f.inputTypes.password?.length);
  assert.ok(form, `the IdP's login form: ${first.final.status} ${first.final.body.slice(0, 200)}`);
  const posted = await submitForm(form, { username: user.username, password: user.password }, { jar });
  const callbackPrefix = redirectUri.split('?')[0]!;
  const back = await followRedirects(new URL(String(posted.headers.location), posted.url).href, {
    jar,
    stopWhen: (r) => String(r.headers.location ?? '').startsWith(callbackPrefix),
  });
  const callback = new URL(String(back.final.headers.location));
  assert.equal(callback.searchParams.get('state'), state);
  const code = callback.searchParams.get('code');
  assert.ok(code, 'an authorization code');
  const response = await client.genericGrantRequest(config, 'authorization_code', { code, redirect_uri: redirectUri });
  assert.ok(response.access_token);
  return response.access_token;
}
