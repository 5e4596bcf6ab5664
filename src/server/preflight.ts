// Start-up checks that need the machine but no other service: can every configured listener
// address be bound? Run before any listener opens, so that a port in use or a privileged port
// ends the start with one line naming the config field, instead of a trace after the HTTP
// listener is already up.
import net from 'node:net';
import type { PortcullisConfig } from '../config/schema.js';
import { splitListen } from './outpost.js';

/** A start-up failure: its message is one line naming the config field or the resource. */
export class StartupError extends Error {
  override readonly name = 'StartupError';
}

/** The listener fields of a config that are set, with their addresses. */
export function listenerFields(config: PortcullisConfig): [field: string, address: string][] {
  const out: [string, string][] = [];
  const { http, https } = config.outpost.listeners;
  if (http) out.push(['outpost.listeners.http', http]);
  if (https) out.push(['outpost.listeners.https', https]);
  const metrics = config.outpost.metrics?.listen;
  if (metrics) out.push(['outpost.metrics.listen', metrics]);
  return out;
}

/** Why a listen failed, in words (EADDRINUSE and friends). */
export function describeListenError(err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code;
  switch (code) {
    case 'EADDRINUSE':
      return 'the address is already in use (another process listens there)';
    case 'EACCES':
    case 'EPERM':
      return 'permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE)';
    case 'EADDRNOTAVAIL':
      return 'the address is not one of this machine';
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return 'the host name does not resolve';
    default:
      return code ? `${code}: ${(err as Error).message}` : String((err as Error)?.message ?? err);
  }
}

/**
 * Binds each configured address for a moment and releases it. Throws a StartupError naming the
 * first field whose address cannot be bound. Port 0 (any free port) is not probed.
 */
export async function probeListeners(config: PortcullisConfig): Promise<void> {
  const held: net.Server[] = [];
  try {
    for (const [field, address] of listenerFields(config)) {
      const { host, port } = splitListen(address);
      if (port === 0) continue;
      const server = net.createServer();
      await new Promise<void>((resolve, reject) => {
        server.once('error', (err) => reject(new StartupError(`${field}: cannot listen on ${address}: ${describeListenError(err)}`)));
        server.listen({ host, port, exclusive: true }, () => resolve());
      });
      held.push(server);
    }
  } finally {
    await Promise.all(held.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  }
}

/** The field whose address a failed listen was for (from the error's address and port). */
export function fieldOfListenError(config: PortcullisConfig, err: unknown): string | undefined {
  const port = (err as { port?: number }).port;
  if (port === undefined) return undefined;
  return listenerFields(config).find(([, address]) => splitListen(address).port === port)?.[0];
}
