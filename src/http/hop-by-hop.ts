// Headers that belong to one connection (RFC 9110 §7.6.1): never passed on by a proxy, in
// either direction (and the names a Connection header lists, handled where headers are copied).
export const HOP_BY_HOP_HEADERS: ReadonlySet<string> = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);
