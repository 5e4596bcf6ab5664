// Scenario 7: what a Node user would pick instead — express + express-openid-connect (login,
// encrypted session cookie) + http-proxy-middleware, forwarding the same identity headers.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { auth } from 'express-openid-connect';
import { createProxyMiddleware } from 'http-proxy-middleware';
import { benchConfig, childMain } from '../../lib/proc.js';

interface ExpressBenchConfig {
  port: number;
  upstream: string;
  baseURL: string;
  issuer: string;
  clientID: string;
  clientSecret: string;
  secret: string;
}
const c = benchConfig<ExpressBenchConfig>();
const app = express();
app.disable('x-powered-by');
app.use(
  auth({
    authRequired: true,
    auth0Logout: false,
    idpLogout: false,
    baseURL: c.baseURL,
    issuerBaseURL: c.issuer,
    clientID: c.clientID,
    clientSecret: c.clientSecret,
    secret: c.secret,
    authorizationParams: { response_type: 'code', scope: 'openid profile email entitlements ak_proxy' },
  }),
);
const agent = new http.Agent({ keepAlive: true, maxSockets: 128 });
const headerValue = (v: unknown) => (typeof v === 'string' ? v : Array.isArray(v) ? v.join('|') : v === undefined || v === null ? '' : String(v));
app.use(
  createProxyMiddleware({
    target: c.upstream,
    agent,
    xfwd: true,
    on: {
      proxyReq: (proxyReq, req) => {
        const oidc = (req as unknown as { oidc: { user?: Record<string, unknown>; idToken?: string } }).oidc;
        const u = oidc.user ?? {};
        proxyReq.removeHeader('cookie');
        proxyReq.setHeader('x-authentik-username', headerValue(u.preferred_username));
        proxyReq.setHeader('x-authentik-groups', headerValue(u.groups));
        proxyReq.setHeader('x-authentik-entitlements', headerValue(u.entitlements));
        proxyReq.setHeader('x-authentik-email', headerValue(u.email));
        proxyReq.setHeader('x-authentik-name', headerValue(u.name));
        proxyReq.setHeader('x-authentik-uid', headerValue(u.sub));
        proxyReq.setHeader('x-authentik-jwt', oidc.idToken ?? '');
      },
    },
  }),
);
const server = http.createServer(app);
const child = childMain({}, async () => {
  server.closeAllConnections();
  await new Promise<void>((r) => server.close(() => r()));
  agent.destroy();
});
server.listen(c.port, '127.0.0.1', () => child.ready({ port: (server.address() as AddressInfo).port }));
