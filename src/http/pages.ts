// Error and information pages: HTML for browsers, JSON for API clients. Every page carries the
// request id so that a user's report can be found in the logs.
import type { Respond } from '../pipeline/contract.js';

/** Text (anything, as String() gives it) made safe inside HTML elements and quoted attributes. */
export function escapeHtml(value: unknown): string {
  return String(value).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

export interface PageOptions {
  status: number;
  title: string;
  message: string;
  requestId: string;
  wantsJson: boolean;
  /** Machine-readable code, e.g. `auth.state_invalid`. */
  code: string;
  link?: { href: string; text: string };
  extraHeaders?: Record<string, string | string[]>;
}

export function page(opts: PageOptions): Respond {
  const headers: Record<string, string | string[]> = { 'cache-control': 'no-store', ...opts.extraHeaders };
  if (opts.wantsJson) {
    headers['content-type'] = 'application/json; charset=utf-8';
    return {
      kind: 'respond',
      status: opts.status,
      headers,
      body: JSON.stringify({ error: opts.code, title: opts.title, message: opts.message, request_id: opts.requestId }),
    };
  }
  headers['content-type'] = 'text/html; charset=utf-8';
  const link = opts.link ? `<p><a href="${escapeHtml(opts.link.href)}">${escapeHtml(opts.link.text)}</a></p>` : '';
  const body = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(opts.title)}</title>
<style>body{font-family:system-ui,sans-serif;max-width:40rem;margin:4rem auto;padding:0 1rem;color:#222}code{background:#f3f3f3;padding:.1rem .3rem}</style>
</head><body><h1>${escapeHtml(opts.title)}</h1><p>${escapeHtml(opts.message)}</p>${link}
<p><small>Portcullis · status ${opts.status} · ${escapeHtml(opts.code)} · request id <code>${escapeHtml(opts.requestId)}</code></small></p>
</body></html>`;
  return { kind: 'respond', status: opts.status, headers, body };
}

/** The answer while the session store cannot be reached (auth stage, allowlist stage). */
export function sessionStoreUnavailable(requestId: string, wantsJson: boolean, message?: string): Respond {
  return page({
    status: 503,
    title: 'Sign-in temporarily unavailable',
    message: message ?? 'Portcullis cannot reach its session store right now, so it cannot tell who you are. Your session is not lost: try again in a moment.',
    requestId,
    wantsJson,
    code: 'sessions.unavailable',
    extraHeaders: { 'retry-after': '5' },
  });
}

/** Whether the client asked for JSON rather than a page (API calls, XHR). */
export function wantsJson(accept: string | undefined, requestedWith: string | string[] | undefined): boolean {
  if (requestedWith === 'XMLHttpRequest') return true;
  if (!accept) return false;
  return accept.includes('application/json') && !accept.includes('text/html');
}
