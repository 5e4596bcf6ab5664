// The proxied WebSockets that are open, so that a shutdown can end each with 1001 (Going Away)
// instead of cutting the TCP connection (which the browser sees as 1006, or 1005 when the
// server closes without a code). The upstream stage's WebSocket proxy adds and removes the
// client-facing socket; closing it makes the proxy close the upstream side with the same code.

/** What the registry needs of a `ws` WebSocket. */
export interface ClosableWebSocket {
  close(code?: number, reason?: string): void;
}

/** RFC 6455 §7.4.1: the endpoint is going away (server shutdown). */
export const GOING_AWAY = 1001;

export class WebSocketRegistry {
  private readonly open = new Set<ClosableWebSocket>();
  private closing: { code: number; reason: string } | null = null;

  add(ws: ClosableWebSocket): void {
    // A WebSocket whose upstream connected after the shutdown began is closed at once.
    if (this.closing !== null) return ws.close(this.closing.code, this.closing.reason);
    this.open.add(ws);
  }

  delete(ws: ClosableWebSocket): void {
    this.open.delete(ws);
  }

  get size(): number {
    return this.open.size;
  }

  /** Closes every open WebSocket, and every one that opens from now on. */
  closeAll(code = GOING_AWAY, reason = 'server shutting down'): void {
    this.closing = { code, reason };
    for (const ws of this.open) ws.close(code, reason);
    this.open.clear();
  }
}
