// Prometheus metrics of one outpost, on a registry of its own (never prom-client's global one:
// two outposts in one process must not collide), served by a small separate listener.
//
// Label values are bounded by construction: provider names and external hosts come from the
// config, entries from a fixed set, status classes are 1xx–5xx, methods are the HTTP methods
// Node's parser accepts. Paths, query strings, the Host of unknown requests and user names never
// become label values.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { OUTPOST_PREFIX, type ProviderRegistry } from '../config/provider.js';
import type { AuthEvents, HeaderAuthEvent } from '../pipeline/tokens.js';
import type { Logger } from '../pipeline/logger.js';
import type { SessionStore } from '../sessions/store.js';
import { normalizeHost } from '../http/normalize.js';

/** Seconds, from 0.5 ms (an allowlisted or forward-auth decision) to 10 s (a slow upstream). */
export const DURATION_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

const PING_URL = `${OUTPOST_PREFIX}/ping`;
const HEADER_AUTH_EVENTS: readonly HeaderAuthEvent[] = ['cache_hit', 'local_refusal', 'introspection', 'limited'];
const STATUS_CLASSES = ['', '1xx', '2xx', '3xx', '4xx', '5xx'];

interface RequestSeries {
  readonly count: { inc(): void };
  readonly duration: { observe(v: number): void };
}

export interface OutpostMetricsOptions {
  /** `outpost.name`: the `outpost_name` label of the authentik-compatible metric. */
  outpostName: string;
  providers: ProviderRegistry;
  store: SessionStore;
  log: Logger;
}

/** Config reloads, by result, and whether the last one succeeded. */
export class ReloadMetrics {
  private readonly total: Counter<'result'>;
  private readonly lastSuccessful: Gauge;

  constructor(registry: Registry) {
    this.total = new Counter({
      name: 'portcullis_config_reloads_total',
      help: 'Config reloads (SIGHUP or a change of the watched file), by result: success (the new config is served) or failure (the running one kept serving).',
      labelNames: ['result'],
      registers: [registry],
      // In a cluster the primary counts reloads; a worker's own count is left out of the aggregate.
      aggregator: 'omit',
    });
    this.total.inc({ result: 'success' }, 0);
    this.total.inc({ result: 'failure' }, 0);
    this.lastSuccessful = new Gauge({
      name: 'portcullis_config_last_reload_successful',
      help: 'Whether the last config reload succeeded (1) or failed (0); 1 before any reload.',
      registers: [registry],
      aggregator: 'omit',
    });
    this.lastSuccessful.set(1);
  }

  record(ok: boolean): void {
    this.total.labels(ok ? 'success' : 'failure').inc();
    this.lastSuccessful.set(ok ? 1 : 0);
  }
}

export class OutpostMetrics implements AuthEvents {
  readonly registry = new Registry();
  private readonly requests: Counter<'provider' | 'entry' | 'status_class'>;
  private readonly durations: Histogram<'provider' | 'entry'>;
  private readonly authentikDurations: Histogram<'outpost_name' | 'method' | 'host' | 'type'>;
  private readonly logins: Counter<'provider' | 'result'>;
  private readonly signOuts: Counter<'provider'>;
  private readonly headerAuthChecks: Counter<'provider' | 'outcome'>;
  /** `provider \0 outcome` → its counter child, made for every provider at start. */
  private readonly headerAuthSeries = new Map<string, { inc(): void }>();
  /** Label children by their label values: prom-client hashes a label object on every call. */
  private readonly requestSeries = new Map<string, RequestSeries>();
  private readonly authentikSeries = new Map<string, { observe(v: number): void }>();
  private readonly outpostName: string;
  private providers: ProviderRegistry;
  private readonly log: Logger;
  private server: Server | null = null;

  constructor(opts: OutpostMetricsOptions) {
    this.outpostName = opts.outpostName;
    this.providers = opts.providers;
    this.log = opts.log;
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    this.requests = new Counter({
      name: 'portcullis_requests_total',
      help: 'Requests answered, by provider ("" when none was found), entry (proxy, nginx, traefik, caddy, envoy, ping; "" when refused before routing) and status class.',
      labelNames: ['provider', 'entry', 'status_class'],
      registers,
    });
    this.durations = new Histogram({
      name: 'portcullis_request_duration_seconds',
      help: 'Time from the request to the end of the response, by provider and entry.',
      labelNames: ['provider', 'entry'],
      buckets: DURATION_BUCKETS,
      registers,
    });
    this.authentikDurations = new Histogram({
      name: 'authentik_outpost_proxy_request_duration_seconds',
      help: "authentik-compatible request duration: type 'app' for provider requests, 'ping' for the ping endpoint; host is the provider's external host.",
      labelNames: ['outpost_name', 'method', 'host', 'type'],
      buckets: DURATION_BUCKETS,
      registers,
    });
    this.logins = new Counter({
      name: 'portcullis_logins_total',
      help: 'Login callbacks, by provider and result (success: a session was created; failure: the login was refused).',
      labelNames: ['provider', 'result'],
      registers,
    });
    this.signOuts = new Counter({
      name: 'portcullis_sign_outs_total',
      help: "Sign-outs of a signed-in user (each ends all of the user's sessions), by provider.",
      labelNames: ['provider'],
      registers,
    });
    this.headerAuthChecks = new Counter({
      name: 'portcullis_header_auth_total',
      help: 'Bearer-token checks (header auth), by provider and outcome: cache_hit (answered from memory), local_refusal (refused without asking the IdP), introspection (a call to the IdP), limited (the introspection bound was reached: 503).',
      labelNames: ['provider', 'outcome'],
      registers,
    });
    const store = opts.store;
    const log = opts.log;
    const sessions: Gauge = new Gauge({
      name: 'portcullis_sessions',
      help: 'Sessions in the session store (all providers; shared by every outpost using the same Redis).',
      registers,
      // Every worker of a cluster counts the same shared store: aggregated, the count is not summed.
      aggregator: 'max',
      // Read at scrape time; the Redis store answers asynchronously. A failed read keeps the last value.
      async collect() {
        try {
          sessions.set(await store.size());
        } catch (err) {
          log.warn({ err: (err as Error).message }, 'metrics: could not count the sessions');
        }
      },
    });
    this.reloads = new ReloadMetrics(this.registry);
    this.setProviders(opts.providers);
  }

  /** Config reloads of this process (a cluster's primary counts its own instead). */
  readonly reloads: ReloadMetrics;

  /** The providers of the config now served (after a reload). */
  setProviders(providers: ProviderRegistry): void {
    this.providers = providers;
    // Every provider's series exist from the start, so rates work from the first scrape.
    for (const p of providers.all) {
      this.logins.inc({ provider: p.name, result: 'success' }, 0);
      this.logins.inc({ provider: p.name, result: 'failure' }, 0);
      this.signOuts.inc({ provider: p.name }, 0);
      for (const outcome of HEADER_AUTH_EVENTS) {
        const child = this.headerAuthChecks.labels(p.name, outcome);
        child.inc(0);
        this.headerAuthSeries.set(p.name + '\u0000' + outcome, child);
      }
    }
  }

  /** AuthEvents: one bearer-token check. */
  headerAuth(provider: string, event: HeaderAuthEvent): void {
    this.headerAuthSeries.get(provider + '\u0000' + event)?.inc();
  }

  /** AuthEvents: a login callback finished. */
  login(provider: string, ok: boolean): void {
    this.logins.labels(provider, ok ? 'success' : 'failure').inc();
  }

  /** AuthEvents: a signed-in user signed out. */
  signOut(provider: string): void {
    this.signOuts.labels(provider).inc();
  }

  /** Records one answered request (the outpost's onResponse hook). */
  observeRequest(request: FastifyRequest, reply: FastifyReply): void {
    const seconds = reply.elapsedTime / 1000;
    const ctx = request.portcullis;
    let provider = '';
    let entry = '';
    let host = '';
    let type: 'app' | 'ping' | null = null;
    if (ctx !== null) {
      provider = ctx.provider.name;
      entry = ctx.entry;
      host = ctx.provider.externalHost;
      type = 'app';
    } else if (request.routeOptions.url === PING_URL) {
      entry = 'ping';
      type = 'ping';
      // The provider's external host when the Host names one, else nothing (never the raw Host).
      host = this.providers.forHost(normalizeHost(request.host, request.protocol))?.externalHost ?? '';
    }
    const status = reply.statusCode;
    const statusClass = STATUS_CLASSES[(status / 100) | 0] ?? 'other';
    const key = provider + '\u0000' + entry + '\u0000' + statusClass;
    let series = this.requestSeries.get(key);
    if (series === undefined) {
      series = { count: this.requests.labels(provider, entry, statusClass), duration: this.durations.labels(provider, entry) };
      this.requestSeries.set(key, series);
    }
    series.count.inc();
    series.duration.observe(seconds);
    if (type !== null) {
      const method = request.method;
      const akKey = method + '\u0000' + host + '\u0000' + type;
      let ak = this.authentikSeries.get(akKey);
      if (ak === undefined) {
        ak = this.authentikDurations.labels(this.outpostName, method, host, type);
        this.authentikSeries.set(akKey, ak);
      }
      ak.observe(seconds);
    }
  }

  /** The exposition text (what `GET /metrics` answers). */
  metrics(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /** Starts the `/metrics` listener on `host`:`port`. */
  async listen(host: string, port: number): Promise<AddressInfo> {
    if (this.server !== null) throw new Error('the metrics listener is already started');
    const server = createServer((req, res) => this.handle(req, res));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host, port }, () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.on('error', (err) => this.log.error({ err }, 'metrics listener failed'));
    this.server = server;
    return server.address() as AddressInfo;
  }

  /** Stops the listener (scrapers' keep-alive connections included). */
  async close(): Promise<void> {
    const server = this.server;
    if (server === null) return;
    this.server = null;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeAllConnections();
    await closed;
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = q === -1 ? url : url.slice(0, q);
    if (path !== '/metrics' || (req.method !== 'GET' && req.method !== 'HEAD')) {
      res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8', 'content-length': '10' });
      res.end('Not found\n');
      return;
    }
    this.registry.metrics().then(
      (body) => {
        res.writeHead(200, { 'content-type': this.registry.contentType, 'content-length': String(Buffer.byteLength(body)), 'cache-control': 'no-store' });
        res.end(req.method === 'HEAD' ? undefined : body);
      },
      (err: Error) => {
        this.log.error({ err }, 'metrics: collection failed');
        res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' });
        res.end('Metrics collection failed\n');
      },
    );
  }
}
