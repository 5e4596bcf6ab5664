/**
 * The demo application behind Portcullis (`npm start`): every page shows the identity headers
 * the proxy added. `/public/...` is reachable without signing in (skip_path_regex).
 */
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { escapeHtml } from '../http/pages.js';

export interface DemoUpstream {
  url: string;
  port: number;
  close(): Promise<void>;
}

const TITLE = 'Portcullis demo application';

const STYLE = `body{font-family:system-ui,sans-serif;max-width:880px;margin:32px auto;padding:0 16px;color:#111}
.notice{background:#fde68a;border:1px solid #d97706;border-radius:6px;padding:10px 14px}
table{border-collapse:collapse;width:100%;margin:8px 0 20px}th,td{border:1px solid #ddd;padding:6px 8px;text-align:left;vertical-align:top;font-size:.92em}
th{background:#f3f4f6;width:34%}td{font-family:ui-monospace,monospace;word-break:break-all}nav a{margin-right:14px}.empty{color:#666;font-style:italic}
details.long summary{cursor:pointer}details.long .size{color:#666;font-family:system-ui,sans-serif}details.long[open] summary{margin-bottom:4px}`;

const IDENTITY_HEADER = /^(x-authentik-|x-forwarded-|x-real-ip$|x-original-|x-demo-|remote-user$|authorization$)/i;

/** Values longer than this (a JWT) are folded: their start, with the whole value one click away. */
const FOLD_AT = 96;

function cell(value: string): string {
  if (value.length <= FOLD_AT) return escapeHtml(value);
  return `<details class="long"><summary>${escapeHtml(value.slice(0, 48))}… <span class="size">(${value.length} characters)</span></summary>${escapeHtml(value)}</details>`;
}

function headerRows(entries: [string, string][]): string {
  if (!entries.length) return '<p class="empty">none received</p>';
  return `<table>\n${entries.map(([k, v]) => `<tr><th>${escapeHtml(k)}</th><td>${cell(v)}</td></tr>`).join('\n')}\n</table>`;
}

/** Header name as sent on the wire (first spelling seen in rawHeaders). */
function rawNames(req: http.IncomingMessage): Map<string, string> {
  const names = new Map<string, string>();
  for (let i = 0; i < req.rawHeaders.length; i += 2) {
    const n = req.rawHeaders[i]!;
    if (!names.has(n.toLowerCase())) names.set(n.toLowerCase(), n);
  }
  return names;
}

export function renderDemoPage(req: http.IncomingMessage): string {
  const url = new URL(req.url ?? '/', 'http://demo.invalid');
  const isPublic = url.pathname.startsWith('/public/') || url.pathname === '/public';
  const names = rawNames(req);
  const all = Object.entries(req.headers)
    .filter((e): e is [string, string | string[]] => e[1] !== undefined)
    .map(([k, v]) => [names.get(k) ?? k, Array.isArray(v) ? v.join(', ') : v] as [string, string])
    .sort(([a], [b]) => a.localeCompare(b));
  const authentik = all.filter(([k]) => /^x-authentik-/i.test(k));
  const otherIdentity = all.filter(([k]) => IDENTITY_HEADER.test(k) && !/^x-authentik-/i.test(k));
  const username = req.headers['x-authentik-username'];
  const signedIn = typeof username === 'string' && username !== '';
  const who = signedIn ? `Signed in as <strong>${escapeHtml(username)}</strong>.` : 'Nobody is signed in on this request: Portcullis passed no identity headers.';
  // Only what happened: a login is claimed (and a Sign-out link shown) only when Portcullis sent a user.
  const notice = signedIn
    ? 'Portcullis signed you in with the embedded demo identity provider and added the identity headers below to your request.'
    : isPublic
      ? 'This page is public: Portcullis let the request through without asking anyone to sign in (<code>skip_path_regex</code>), and added no identity headers.'
      : 'Portcullis passed this request without a signed-in user.';
  const account = signedIn
    ? '<a id="sign-out" href="/outpost.goauthentik.io/sign_out">Sign out</a>'
    : '<a id="sign-in" href="/">Sign in</a>';

  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${TITLE}</title>
<style>${STYLE}</style>
</head>
<body>
<h1>${TITLE}</h1>
<p class="notice">This is a <strong>demo application</strong> running behind <strong>Portcullis</strong>, an identity-aware reverse proxy.
${notice}</p>
${isPublic ? '<p id="public"><strong>public page, no login needed</strong> — this path is excluded from authentication by <code>skip_path_regex</code>.</p>' : ''}
<p id="who">${who}</p>
<nav><a href="/">Home</a><a href="/reports?month=11">Reports</a><a href="/public/">Public page</a>${account}</nav>
<h2>Request</h2>
${headerRows([['Method', req.method ?? 'GET'], ['Path', req.url ?? '/']])}
<h2>X-authentik-* headers</h2>
${headerRows(authentik)}
<h2>Other identity headers</h2>
${headerRows(otherIdentity)}
<details><summary>All request headers</summary>
${headerRows(all.filter(([k]) => k.toLowerCase() !== 'cookie'))}
</details>
</body>
</html>
`;
}

export async function startDemoUpstream(opts: { port?: number; host?: string } = {}): Promise<DemoUpstream> {
  const host = opts.host ?? '127.0.0.1';
  const server = http.createServer((req, res) => {
    req.resume();
    if (req.method !== 'GET' && req.method !== 'HEAD' && req.method !== 'POST') {
      res.statusCode = 405;
      res.setHeader('Allow', 'GET, HEAD, POST');
      res.end();
      return;
    }
    const html = renderDemoPage(req);
    res.statusCode = 200;
    res.setHeader('Content-Type', 'text/html; charset=utf-8');
    res.setHeader('Cache-Control', 'no-store');
    res.setHeader('Content-Length', Buffer.byteLength(html));
    res.end(req.method === 'HEAD' ? undefined : html);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  let closing: Promise<void> | undefined;
  return {
    url: `http://${host.includes(':') ? `[${host}]` : host}:${port}`,
    port,
    close() {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closing;
    },
  };
}
