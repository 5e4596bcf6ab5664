// Logout that starts at the identity provider: OpenID Connect Back-Channel Logout 1.0 (the
// provider's server POSTs a signed logout token) and Front-Channel Logout 1.0 (the provider's
// logout page loads our URL in an iframe with `iss` and `sid`). Either ends the matching
// sessions in the session store, so on every worker and replica that shares it.
//
// Both endpoints are routes of their own, outside the request pipeline and on every host: the
// provider's server may post to an internal address that is no provider's external_host, so
// the provider is found from the token itself — the unverified `iss` and `aud` only choose
// which provider's keys to verify it with; nothing is believed before the signature checks.
import { createHash } from 'node:crypto';
import { decodeJwt, decodeProtectedHeader } from 'jose';
import type { FastifyInstance } from 'fastify';
import type { ProviderRegistry, ProviderRuntime } from '../../config/provider.js';
import { OUTPOST_PREFIX } from '../../config/provider.js';
import type { Logger } from '../../pipeline/logger.js';
import type { Respond } from '../../pipeline/contract.js';
import { userKeyOf, userTag, type SessionStore } from '../../sessions/store.js';
import { page } from '../../http/pages.js';
import { readCookie } from '../../http/cookies.js';

export const BACKCHANNEL_LOGOUT_PATH = `${OUTPOST_PREFIX}/backchannel_logout`;
export const FRONTCHANNEL_LOGOUT_PATH = `${OUTPOST_PREFIX}/frontchannel_logout`;
const BACKCHANNEL_EVENT = 'http://schemas.openid.net/event/backchannel-logout';
/** A logout token older than this (by `iat`) is refused, so its jti need be remembered only this long. */
export const LOGOUT_TOKEN_MAX_AGE_SECONDS = 120;
const CLOCK_TOLERANCE_SECONDS = 30;
/** Logout tokens are a few hundred bytes; anything much larger is not one. */
const BODY_LIMIT = 16 * 1024;

export class LogoutTokenError extends Error {}

export interface BackChannelResult {
  /** Sessions ended. */
  readonly ended: number;
  readonly providers: readonly string[];
}

export class IdpLogout {
  constructor(
    private readonly providers: ProviderRegistry,
    private readonly store: SessionStore,
    private readonly log: Logger,
  ) {}

  /**
   * Verifies a logout token (Back-Channel Logout 1.0 §2.6) and ends its sessions. Throws a
   * LogoutTokenError for a token that must be refused, and store errors as they are.
   */
  async backChannel(token: string): Promise<BackChannelResult> {
    let unverified: Record<string, unknown>;
    let typ: string | undefined;
    try {
      unverified = decodeJwt(token) as Record<string, unknown>;
      typ = decodeProtectedHeader(token).typ;
    } catch {
      throw new LogoutTokenError('not a JWT');
    }
    if (typ !== undefined && !/^(application\/)?(logout\+jwt|jwt)$/i.test(typ)) throw new LogoutTokenError(`unexpected typ ${typ}`);
    const iss = unverified.iss;
    const aud = unverified.aud;
    if (typeof iss !== 'string') throw new LogoutTokenError('no iss');
    const audiences = typeof aud === 'string' ? [aud] : Array.isArray(aud) ? aud : [];
    const candidates = (await this.byIssuer(iss)).filter((p) => audiences.includes(p.config.client_id));
    if (candidates.length === 0) throw new LogoutTokenError('no provider of this outpost has this issuer and audience');

    const verified: ProviderRuntime[] = [];
    let claims: Record<string, unknown> | undefined;
    let lastError = '';
    for (const p of candidates) {
      try {
        claims = await p.oidc.verifyProviderJwt(token, { maxAgeSeconds: LOGOUT_TOKEN_MAX_AGE_SECONDS, clockToleranceSeconds: CLOCK_TOLERANCE_SECONDS });
        verified.push(p);
      } catch (err) {
        lastError = (err as Error).message;
      }
    }
    if (claims === undefined) throw new LogoutTokenError(`verification failed: ${lastError}`);

    const events = claims.events;
    if (typeof events !== 'object' || events === null || Array.isArray(events)) throw new LogoutTokenError('no events claim');
    const event = (events as Record<string, unknown>)[BACKCHANNEL_EVENT];
    if (typeof event !== 'object' || event === null || Array.isArray(event)) throw new LogoutTokenError('not a back-channel logout event');
    if ('nonce' in claims) throw new LogoutTokenError('a logout token carries no nonce');
    const sub = typeof claims.sub === 'string' && claims.sub !== '' ? claims.sub : undefined;
    const sid = typeof claims.sid === 'string' && claims.sid !== '' ? claims.sid : undefined;
    if (sub === undefined && sid === undefined) throw new LogoutTokenError('neither sub nor sid');
    const jti = claims.jti;
    if (typeof jti !== 'string' || jti === '') throw new LogoutTokenError('no jti');
    // Only a verified token is recorded: a forger cannot use up a genuine token's jti.
    const until = ((claims.iat as number) + LOGOUT_TOKEN_MAX_AGE_SECONDS + CLOCK_TOLERANCE_SECONDS) * 1000;
    const fresh = await this.store.recordOnce('bcl:' + createHash('sha256').update(`${iss}\u0000${jti}`).digest('hex'), until);
    if (!fresh) throw new LogoutTokenError('replayed (jti already used)');

    let ended = 0;
    for (const p of verified) {
      ended += sid !== undefined ? await this.store.deleteBySid(p.name, sid) : await this.store.deleteProviderUser(p.name, userKeyOf(iss, sub!));
    }
    const names = verified.map((p) => p.name);
    this.log.info(
      { providers: names, by: sid !== undefined ? 'sid' : 'sub', ...(sub !== undefined ? { user: userTag(userKeyOf(iss, sub)) } : {}), sessions: ended },
      'back-channel logout: sessions ended',
    );
    return { ended, providers: names };
  }

  /**
   * Front-Channel Logout 1.0: ends the sessions of the IdP session `sid` at every provider with
   * this issuer, and answers a page the provider's logout page may frame (and nobody else).
   *
   * The request is an unauthenticated GET: whoever knows a sid can send it. Each provider's
   * `frontchannel_logout` says what it may end — `sid`: every session of that IdP session (a
   * provider whose sid is random, as the spec expects); `cookie`: only when the request also
   * carries this provider's session cookie naming a session of that sid (the browser that frames
   * it is the user's: a provider whose sid can be guessed, such as LemonLDAP's user id); `off`:
   * nothing. Logging someone out is all a guessed sid could do, never signing anyone in.
   */
  async frontChannel(iss: string | null, sid: string | null, cookieHeader: string | undefined, requestId: string): Promise<Respond> {
    const providers = iss ? (await this.byIssuer(iss)).filter((p) => p.config.frontchannel_logout !== 'off') : [];
    if (!iss || !sid || providers.length === 0) {
      return page({
        status: 400,
        title: 'Not signed out',
        message: !iss || !sid ? 'This front-channel logout request lacks iss or sid.' : 'No provider of this outpost with this issuer accepts front-channel logout.',
        requestId,
        wantsJson: false,
        code: 'logout.frontchannel_invalid',
        extraHeaders: { 'content-security-policy': "frame-ancestors 'none'" },
      });
    }
    let ended = 0;
    for (const p of providers) {
      if (p.config.frontchannel_logout === 'cookie' && !(await this.cookieNamesSid(p, cookieHeader, sid))) continue;
      ended += await this.store.deleteBySid(p.name, sid);
    }
    this.log.info({ providers: providers.map((p) => p.name), sessions: ended, reqId: requestId }, 'front-channel logout: sessions ended');
    return page({
      status: 200,
      title: 'Signed out',
      message: ended > 0 ? 'You are signed out of this application.' : 'No session of this application was open here.',
      requestId,
      wantsJson: false,
      code: 'logout.frontchannel',
      extraHeaders: { 'content-security-policy': `frame-ancestors ${frameAncestors(providers)}` },
    });
  }

  /** Whether the request carries `p`'s session cookie of a live session of the IdP session `sid`. */
  private async cookieNamesSid(p: ProviderRuntime, cookieHeader: string | undefined, sid: string): Promise<boolean> {
    const raw = readCookie(cookieHeader, p.cookieName);
    if (raw === undefined || raw === '') return false;
    let decoded: string;
    try {
      decoded = decodeURIComponent(raw);
    } catch {
      return false;
    }
    const id = p.sessionCodec.decode(decoded)?.s;
    if (typeof id !== 'string') return false;
    const record = await this.store.get(id);
    return record !== undefined && record.provider === p.name && record.sid === sid;
  }

  /** Providers whose discovered issuer is exactly `iss` (discovery is done once and cached). */
  private async byIssuer(iss: string): Promise<ProviderRuntime[]> {
    const out: ProviderRuntime[] = [];
    for (const p of this.providers.all) {
      const discovered = p.oidc.discoveredIssuer ?? (await p.oidc.ready().then(() => p.oidc.discoveredIssuer, () => null));
      if (discovered === iss) out.push(p);
    }
    return out;
  }
}

/** The origins that may frame the front-channel answer: the providers' issuer and end-session origins. */
function frameAncestors(providers: readonly ProviderRuntime[]): string {
  const origins = new Set<string>();
  for (const p of providers) {
    for (const url of [p.oidc.discoveredIssuer, p.oidc.endSessionEndpoint]) {
      if (!url) continue;
      try {
        origins.add(new URL(url).origin);
      } catch {
        // not a URL: frames nothing
      }
    }
  }
  return origins.size === 0 ? "'none'" : [...origins].join(' ');
}

/** The two endpoints, on the root Fastify instance (every host, outside the pipeline). */
export async function idpLogoutRoutes(app: FastifyInstance, opts: { logout: IdpLogout; log: Logger }): Promise<void> {
  const { logout, log } = opts;
  app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string', bodyLimit: BODY_LIMIT }, (_req, body, done) => done(null, body));

  const refuse = (error: string, description: string) => ({
    status: 400,
    body: JSON.stringify({ error, error_description: description }),
  });

  app.route({
    method: ['GET', 'HEAD', 'PUT', 'DELETE', 'PATCH', 'OPTIONS'],
    url: BACKCHANNEL_LOGOUT_PATH,
    handler: (_request, reply) => reply.code(405).header('allow', 'POST').header('cache-control', 'no-store').send(),
  });
  app.post(BACKCHANNEL_LOGOUT_PATH, async (request, reply) => {
    reply.header('cache-control', 'no-store').header('content-type', 'application/json; charset=utf-8');
    let out: { status: number; body: string };
    const form = typeof request.body === 'string' ? new URLSearchParams(request.body) : null;
    const tokens = form?.getAll('logout_token') ?? [];
    if (form === null) out = refuse('invalid_request', 'expected an application/x-www-form-urlencoded body');
    else if (tokens.length !== 1 || tokens[0] === '') out = refuse('invalid_request', 'expected exactly one logout_token');
    else {
      try {
        await logout.backChannel(tokens[0]!);
        out = { status: 200, body: '' };
      } catch (err) {
        if (err instanceof LogoutTokenError) {
          log.warn({ reqId: request.id, reason: err.message, peer: request.socket.remoteAddress }, 'back-channel logout refused');
          out = refuse('invalid_request', `logout token refused: ${err.message}`);
        } else {
          log.error({ reqId: request.id, err: (err as Error).message }, 'back-channel logout failed');
          out = refuse('temporarily_unavailable', 'the sessions could not be ended; try again');
        }
      }
    }
    if (out.body === '') reply.removeHeader('content-type');
    return reply.code(out.status).send(out.body);
  });

  app.route({
    method: ['GET', 'HEAD'],
    url: FRONTCHANNEL_LOGOUT_PATH,
    handler: async (request, reply) => {
      const q = request.query as Record<string, unknown>;
      const one = (v: unknown) => (typeof v === 'string' ? v : null);
      let out: Respond;
      try {
        out = await logout.frontChannel(one(q.iss), one(q.sid), request.headers.cookie, request.id);
      } catch (err) {
        log.error({ reqId: request.id, err: (err as Error).message }, 'front-channel logout failed');
        out = page({
          status: 500,
          title: 'Not signed out',
          message: 'The sessions could not be ended.',
          requestId: request.id,
          wantsJson: false,
          code: 'logout.frontchannel_failed',
          extraHeaders: { 'content-security-policy': "frame-ancestors 'none'" },
        });
      }
      return reply
        .code(out.status)
        .headers(out.headers ?? {})
        .send(out.body ?? '');
    },
  });
}
