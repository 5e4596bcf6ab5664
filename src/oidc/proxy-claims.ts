// authentik's proxy claims: `ak_proxy` (backend_override, host_header,
// user_attributes.additionalHeaders), validated once when a session is made — at login and for an
// introspected bearer token — into the session's proxy settings, so requests only read them.
// Whatever is invalid is dropped and named in `problems` (logged by the caller).
import { hasUnderscore, refusedHeaderName } from '../http/header-names.js';
import type { ProviderConfig } from '../config/schema.js';
import type { SessionProxySettings } from '../sessions/store.js';
import { describeType, isObjectMap } from './claim-values.js';

export interface ProxyClaimsPolicy {
  /** When set, backend_override's hostname (or host:port) must be one of these (case-insensitive). */
  allowedBackendHosts?: string[];
  /** Let additionalHeaders replace X-authentik-* / X-Forwarded-* headers. */
  allowIdentityHeaderOverride: boolean;
}

export interface ValidatedProxyClaims {
  /** Only the origin of backend_override is used (its path is ignored, as authentik does). */
  backendOverride: { origin: string; host: string } | null;
  hostHeader: string | null;
  /**
   * Headers to set on the upstream request, in claim order. Values are the claim's text; the
   * header stage sends every non-ASCII character as its UTF-8 bytes, exactly once.
   */
  additionalHeaders: [string, string][];
  /** Human-readable, each naming the field; the invalid items are dropped. */
  problems: string[];
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const MAX_HEADER_VALUE_LENGTH = 8192;
const MAX_HEADERS = 64;
const HOST_HEADER = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?)(?::(\d{1,5}))?$/;

const NO_PROXY_CLAIMS: ValidatedProxyClaims = Object.freeze({
  backendOverride: null,
  hostHeader: null,
  additionalHeaders: Object.freeze([]) as unknown as [string, string][],
  problems: Object.freeze([]) as unknown as string[],
}) as ValidatedProxyClaims;

/** Validates `claims.ak_proxy` (backend_override, host_header, user_attributes.additionalHeaders). */
export function validateProxyClaims(claims: Record<string, unknown>, policy: ProxyClaimsPolicy): ValidatedProxyClaims {
  const akProxy = claims['ak_proxy'];
  if (akProxy === undefined || akProxy === null) return NO_PROXY_CLAIMS;
  const problems: string[] = [];
  if (!isObjectMap(akProxy)) {
    problems.push(`ak_proxy: must be a map, got ${describeType(akProxy)}; ignored`);
    return { backendOverride: null, hostHeader: null, additionalHeaders: [], problems };
  }
  return {
    backendOverride: validateBackendOverride(akProxy['backend_override'], policy, problems),
    hostHeader: validateHostHeader(akProxy['host_header'], problems),
    additionalHeaders: validateHeaders(akProxy['user_attributes'], policy, problems),
    problems,
  };
}

function validateBackendOverride(value: unknown, policy: ProxyClaimsPolicy, problems: string[]): { origin: string; host: string } | null {
  const field = 'ak_proxy.backend_override';
  if (value === undefined || value === null || value === '') return null;
  if (typeof value !== 'string') {
    problems.push(`${field}: must be a string, got ${describeType(value)}; ignored`);
    return null;
  }
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    problems.push(`${field}: "${clip(value)}" is not an absolute URL; ignored`);
    return null;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    problems.push(`${field}: scheme ${url.protocol} is not http: or https:; ignored`);
    return null;
  }
  if (url.username || url.password) {
    problems.push(`${field}: the URL must not contain user information; ignored`);
    return null;
  }
  if (!url.hostname) {
    problems.push(`${field}: the URL has no host; ignored`);
    return null;
  }
  if (policy.allowedBackendHosts) {
    const hostname = url.hostname.toLowerCase();
    const host = url.host.toLowerCase();
    const allowed = policy.allowedBackendHosts.some((h) => {
      const entry = h.trim().toLowerCase();
      return entry === hostname || entry === host;
    });
    if (!allowed) {
      problems.push(`${field}: host ${url.host} is not in allowed_backend_hosts; ignored`);
      return null;
    }
  }
  return { origin: url.origin, host: url.host };
}

function validateHostHeader(value: unknown, problems: string[]): string | null {
  const field = 'ak_proxy.host_header';
  if (value === undefined || value === null || value === '') return null;
  if (typeof value !== 'string') {
    problems.push(`${field}: must be a string, got ${describeType(value)}; ignored`);
    return null;
  }
  const m = value.length <= 261 ? HOST_HEADER.exec(value) : null;
  const port = m?.[1];
  if (!m || (port !== undefined && (Number(port) < 1 || Number(port) > 65535))) {
    problems.push(`${field}: "${clip(value)}" is not a valid host[:port]; ignored`);
    return null;
  }
  return value;
}

function validateHeaders(userAttributes: unknown, policy: ProxyClaimsPolicy, problems: string[]): [string, string][] {
  if (userAttributes === undefined || userAttributes === null) return [];
  if (!isObjectMap(userAttributes)) {
    problems.push(`ak_proxy.user_attributes: must be a map, got ${describeType(userAttributes)}; ignored`);
    return [];
  }
  const headers = userAttributes['additionalHeaders'];
  const field = 'ak_proxy.user_attributes.additionalHeaders';
  if (headers === undefined || headers === null) return [];
  if (!isObjectMap(headers)) {
    problems.push(`${field}: must be a map, got ${describeType(headers)}; ignored`);
    return [];
  }
  const out: [string, string][] = [];
  const seen = new Set<string>();
  for (const name of Object.keys(headers)) {
    const where = `${field}["${clip(name)}"]`;
    if (!TOKEN.test(name)) {
      problems.push(`${where}: not a valid header name (RFC 7230 token); dropped`);
      continue;
    }
    if (hasUnderscore(name)) {
      problems.push(`${where}: header names with "_" are not sent; dropped`);
      continue;
    }
    const normalized = name.toLowerCase();
    const refused = refusedHeaderName(normalized);
    if (refused !== undefined) {
      problems.push(`${where}: ${refused}; dropped`);
      continue;
    }
    if ((normalized.startsWith('x-authentik-') || normalized.startsWith('x-forwarded-')) && !policy.allowIdentityHeaderOverride) {
      problems.push(`${where}: would override an identity header (allow_identity_header_override is false); dropped`);
      continue;
    }
    if (seen.has(normalized)) {
      problems.push(`${where}: duplicate of an earlier header with the same name; dropped`);
      continue;
    }
    const raw = headers[name];
    let value: string;
    if (typeof raw === 'string') value = raw;
    else if ((typeof raw === 'number' && Number.isFinite(raw)) || typeof raw === 'boolean' || typeof raw === 'bigint') value = String(raw);
    else {
      problems.push(`${where}: value must be a string, number or boolean, got ${describeType(raw)}; dropped`);
      continue;
    }
    if (/[\r\n\0]/.test(value)) {
      problems.push(`${where}: value contains CR, LF or NUL; dropped`);
      continue;
    }
    if (/[\x01-\x08\x0a-\x1f\x7f]/.test(value)) {
      problems.push(`${where}: value contains a control character; dropped`);
      continue;
    }
    if (value.length > MAX_HEADER_VALUE_LENGTH) {
      problems.push(`${where}: value is longer than ${MAX_HEADER_VALUE_LENGTH} characters; dropped`);
      continue;
    }
    if (out.length >= MAX_HEADERS) {
      problems.push(`${where}: more than ${MAX_HEADERS} headers; dropped`);
      continue;
    }
    seen.add(normalized);
    out.push([name, value]);
  }
  return out;
}

function clip(text: string): string {
  const oneLine = text.replace(/[\x00-\x1f\x7f]/g, '?');
  return oneLine.length > 80 ? `${oneLine.slice(0, 77)}...` : oneLine;
}

/**
 * The session's proxy settings from its claims under a provider's policy (allowed_backend_hosts,
 * allow_identity_header_override): what the login and the bearer-token sessions store, header
 * names lower-cased. `problems` as validateProxyClaims gives them.
 */
export function proxySettingsOf(
  claims: Record<string, unknown>,
  config: Pick<ProviderConfig, 'allowed_backend_hosts' | 'allow_identity_header_override'>,
): { settings: SessionProxySettings; problems: readonly string[] } {
  const v = validateProxyClaims(claims, { allowedBackendHosts: config.allowed_backend_hosts, allowIdentityHeaderOverride: config.allow_identity_header_override });
  return {
    settings: {
      backendOrigin: v.backendOverride?.origin,
      backendHost: v.backendOverride?.host,
      hostHeader: v.hostHeader ?? undefined,
      additionalHeaders: v.additionalHeaders.map(([k, val]) => [k.toLowerCase(), val] as const),
    },
    problems: v.problems,
  };
}
