// The proxied WebSockets that are open: the one place that knows them, so that
//  - a shutdown ends each with 1001 (Going Away) instead of cutting the TCP connection (which the
//    browser sees as 1006, or 1005 when the server closes without a code);
//  - a WebSocket follows its session: sign-out on this process closes the user's sockets at once,
//    and every socket's session is re-read from the store periodically, so that a sign-out on
//    another replica sharing the store (or the session's expiry) closes it too (1008);
//  - an idle socket (no message, ping or pong either way for `idle_timeout`) is closed (1000);
//  - the outpost holds at most `max_open` of them (the upgrade beyond answers 503).
// The upstream stage's WebSocket proxy adds and removes the client-facing socket; closing it makes
// the proxy close the upstream side with the same code.
import type { SessionRecord, SessionStore } from '../sessions/store.js';
import type { Logger } from '../pipeline/logger.js';
import { isPromise } from '../pipeline/maybe-async.js';

/** What the registry needs of a `ws` WebSocket. */
export interface ClosableWebSocket {
  close(code?: number, reason?: string): void;
  on?(event: 'message' | 'ping' | 'pong', listener: () => void): unknown;
}

/** RFC 6455 §7.4.1: the endpoint is going away (server shutdown). */
export const GOING_AWAY = 1001;
/** RFC 6455 §7.4.1: policy violation — here, the session behind the socket has ended. */
export const SESSION_ENDED = 1008;
/** Normal closure: the socket was idle too long. */
export const IDLE = 1000;

export interface WebSocketSettings {
  /** Seconds without a message, ping or pong in either direction before the socket is closed. */
  idleTimeoutSeconds: number;
  /** Open WebSockets the outpost accepts at most. */
  maxOpen: number;
  /** Seconds between re-reads of each socket's session in the store. */
  sessionCheckSeconds: number;
}

export const DEFAULT_WEBSOCKET_SETTINGS: WebSocketSettings = Object.freeze({ idleTimeoutSeconds: 900, maxOpen: 10_000, sessionCheckSeconds: 30 });

/** The session a socket was opened for: null for an anonymous one (allowlisted path). */
export interface SocketSession {
  readonly id: string;
  readonly userKey: string;
  readonly expiresAt: number;
  /** False for a bearer-token session, which is never stored (nothing to re-read). */
  readonly stored: boolean;
}

interface Entry {
  readonly session: SocketSession | null;
  lastActivity: number;
  lastCheck: number;
}

export interface WebSocketRegistryOptions {
  store?: SessionStore;
  log?: Logger;
  settings?: WebSocketSettings;
}

export class WebSocketRegistry {
  private readonly open = new Map<ClosableWebSocket, Entry>();
  private closing: { code: number; reason: string } | null = null;
  private settings: WebSocketSettings;
  private timer: NodeJS.Timeout | null = null;
  private sweeping = false;

  constructor(private readonly opts: WebSocketRegistryOptions = {}) {
    this.settings = opts.settings ?? DEFAULT_WEBSOCKET_SETTINGS;
  }

  /** New limits (a reload); sockets already open keep going under them. */
  configure(settings: WebSocketSettings): void {
    this.settings = settings;
    if (this.timer !== null) {
      this.stopTimer();
      this.startTimer();
    }
  }

  /** Whether the outpost-wide limit is reached: an upgrade now is refused. */
  get full(): boolean {
    return this.open.size >= this.settings.maxOpen;
  }

  get maxOpen(): number {
    return this.settings.maxOpen;
  }

  /** A socket whose upstream side is connected; `session` is the request's (null: anonymous). */
  add(ws: ClosableWebSocket, session: SessionRecord | SocketSession | null = null, upstream?: ClosableWebSocket): void {
    // A WebSocket whose upstream connected after the shutdown began is closed at once.
    if (this.closing !== null) return ws.close(this.closing.code, this.closing.reason);
    const now = Date.now();
    const entry: Entry = { session: session === null ? null : socketSession(session), lastActivity: now, lastCheck: now };
    // Its session may have ended while the upstream was connecting.
    if (entry.session !== null && entry.session.expiresAt <= now) return ws.close(SESSION_ENDED, 'session ended');
    this.open.set(ws, entry);
    const touch = () => {
      entry.lastActivity = Date.now();
    };
    for (const side of upstream ? [ws, upstream] : [ws]) {
      side.on?.('message', touch);
      side.on?.('ping', touch);
      side.on?.('pong', touch);
    }
    if (this.timer === null) this.startTimer();
  }

  delete(ws: ClosableWebSocket): void {
    this.open.delete(ws);
    if (this.open.size === 0) this.stopTimer();
  }

  get size(): number {
    return this.open.size;
  }

  /** Closes the sockets of every session of this user (sign-out); returns how many. */
  closeUser(userKey: string): number {
    let n = 0;
    for (const [ws, e] of this.open) {
      if (e.session !== null && e.session.userKey === userKey) {
        this.closeOne(ws, SESSION_ENDED, 'signed out');
        n++;
      }
    }
    return n;
  }

  /** Closes every open WebSocket, and every one that opens from now on. */
  closeAll(code = GOING_AWAY, reason = 'server shutting down'): void {
    this.closing = { code, reason };
    this.stopTimer();
    for (const ws of this.open.keys()) ws.close(code, reason);
    this.open.clear();
  }

  private closeOne(ws: ClosableWebSocket, code: number, reason: string): void {
    this.open.delete(ws);
    ws.close(code, reason);
  }

  private startTimer(): void {
    const s = this.settings;
    // Often enough that neither limit is overshot by more than a quarter of itself.
    const tick = Math.max(250, Math.min(s.idleTimeoutSeconds, s.sessionCheckSeconds) * 250);
    this.timer = setInterval(() => void this.sweep(), tick);
    this.timer.unref();
  }

  private stopTimer(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }

  /** Idle and expired sockets closed; sessions due for a check re-read (once per session id). */
  async sweep(): Promise<void> {
    if (this.sweeping) return;
    this.sweeping = true;
    try {
      const now = Date.now();
      const idleMs = this.settings.idleTimeoutSeconds * 1000;
      const checkMs = this.settings.sessionCheckSeconds * 1000;
      const due = new Map<string, ClosableWebSocket[]>();
      for (const [ws, e] of this.open) {
        if (now - e.lastActivity >= idleMs) {
          this.closeOne(ws, IDLE, 'idle timeout');
          continue;
        }
        const s = e.session;
        if (s === null) continue;
        if (s.expiresAt <= now) {
          this.closeOne(ws, SESSION_ENDED, 'session ended');
          continue;
        }
        if (s.stored && this.opts.store && now - e.lastCheck >= checkMs) {
          e.lastCheck = now;
          const list = due.get(s.id);
          if (list) list.push(ws);
          else due.set(s.id, [ws]);
        }
      }
      for (const [id, sockets] of due) {
        let alive: boolean;
        try {
          const found = this.opts.store!.get(id);
          alive = (isPromise(found) ? await found : found) !== undefined;
        } catch (err) {
          // The store cannot say (Redis down): the socket stays until it can; the check is retried.
          this.opts.log?.debug({ err: (err as Error).message, sockets: sockets.length }, 'WebSocket session check deferred: session store unavailable');
          continue;
        }
        if (!alive) for (const ws of sockets) if (this.open.has(ws)) this.closeOne(ws, SESSION_ENDED, 'session ended');
      }
    } finally {
      this.sweeping = false;
    }
  }
}

function socketSession(s: SessionRecord | SocketSession): SocketSession {
  if ('stored' in s) return s;
  return { id: s.id, userKey: s.userKey, expiresAt: s.expiresAt, stored: true };
}
