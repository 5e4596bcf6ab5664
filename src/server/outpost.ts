// Assembles an outpost from a validated config: the DI container, providers, session store,
// the chain of stages, and one Fastify instance per listener (HTTP 9000, HTTPS 9443).
//
// What is built from the config (providers, container, stages, the Fastify instances) is one
// *generation*. The listening sockets, the session store and the metrics outlive generations:
// a reload builds a new generation and points new requests at it, while requests and WebSockets
// already running finish on the old one, which is closed when the last of them ends. A shutdown
// stops accepting, answers readiness with 503, closes WebSockets with 1001 and waits for the
// requests in flight, up to `outpost.shutdown_timeout`.
import 'reflect-metadata';
import { randomUUID } from 'node:crypto';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { SecureContext } from 'node:tls';
import { resolve } from 'node:path';
import Fastify, { LogController, type FastifyInstance } from 'fastify';
import type { Logger as PinoLogger } from 'pino';
import { container as rootContainer, type DependencyContainer } from 'tsyringe';
import type { PortcullisConfig } from '../config/schema.js';
import { ConfigError, type ConfigIssue } from '../config/load.js';
import { buildProviders, OUTPOST_PREFIX, type ProviderRegistry } from '../config/provider.js';
import { AUTH_EVENTS, CONFIG, LOGGER, NO_AUTH_EVENTS, PROVIDERS, SESSION_STORE, VERSION, WEBSOCKETS } from '../pipeline/tokens.js';
import type { Logger } from '../pipeline/logger.js';
import { lazyChildLoggerFactory } from './request-logger.js';
import { StageRegistry } from '../pipeline/registry.js';
import { buildChain, DEFAULT_CHAIN, type BuiltStage } from '../pipeline/chain.js';
import { ContextFactory, rewriteRequestUrl } from '../pipeline/context.js';
import { pipelineScope, sendRespond } from '../pipeline/fastify.js';
import type { SessionStore } from '../sessions/store.js';
import { EmbeddedSessionStore } from '../sessions/embedded-store.js';
import { RedisSessionStore } from '../sessions/redis-store.js';
import { deriveKey } from '../sessions/cookie-codec.js';
import { page } from '../http/pages.js';
import { EXTRA_METHODS } from '../http/methods.js';
import { builtInActions, builtInDoors, builtInStages, builtInStageAliases, builtInExits } from '../plugins/index.js';
import { buildDoors, type Doors } from '../pipeline/doors.js';
import { buildExits, type Exit } from '../pipeline/exits.js';
import { buildTls } from './tls.js';
import { createHttpsListener, type HttpsListener } from './https-listener.js';
import { createLogger } from './log-format.js';
import { IdpLogout, idpLogoutRoutes } from '../plugins/auth/idp-logout.js';
import { OutpostMetrics } from './metrics.js';
import { WebSocketRegistry } from './websockets.js';
import { VERSION_STRING } from '../version.js';

export interface OutpostOptions {
  /** A pino logger; by default one is made at the config's log level. */
  logger?: PinoLogger;
  /** Replaces the configured session store (tests, benchmarks). */
  store?: SessionStore;
  /** Extra stages a program embedding Portcullis registers before the chain is built. */
  registry?: StageRegistry;
  /** Build everything (stages, options) but contact nothing: `portcullis --check`. */
  checkOnly?: boolean;
  /**
   * Open the `outpost.metrics.listen` listener (default true). A cluster worker says false: the
   * primary serves every worker's metrics, aggregated, on that one address.
   */
  metricsListener?: boolean;
  /** Fields on every log line of the default logger (a cluster worker adds `worker`). */
  logBindings?: Record<string, unknown>;
}

type ListenerKind = 'http' | 'https';

/** Why readiness answers 503 (no names: the endpoint answers anyone). */
export type NotReadyReason = 'draining' | 'session_store' | 'discovery';

/** The retry interval of discovery for readiness (the OIDC client refuses sooner retries). */
const DISCOVERY_RETRY_MS = 5000;

/**
 * Everything built from one config. Requests and WebSockets count as active on the generation
 * that received them; a retired generation is closed when its count reaches zero.
 */
class Generation {
  /** The Fastify instance of each listener, its request handler and its (never listening) server. */
  readonly apps = new Map<ListenerKind, { app: FastifyInstance; handle: (req: IncomingMessage, res: ServerResponse) => void; server: http.Server }>();
  private active = 0;
  private retired = false;
  private closed: Promise<void> | null = null;
  private discoveryTimer: NodeJS.Timeout | null = null;
  /** Bound once: one listener per request, no closure per request. */
  readonly done = (): void => {
    if (--this.active === 0 && this.retired) void this.close();
  };

  constructor(
    readonly config: PortcullisConfig,
    readonly container: DependencyContainer,
    readonly providers: ProviderRegistry,
    readonly stages: readonly BuiltStage[],
    readonly contexts: ContextFactory,
    readonly exits: ReadonlyMap<string, Exit>,
    readonly doors: Doors,
  ) {}

  enter(): void {
    this.active++;
  }

  get activeCount(): number {
    return this.active;
  }

  /** Discovery for every provider, retried until it succeeds (readiness waits for it). */
  discover(): void {
    const pending = this.providers.all.filter((p) => !p.oidc.discovered);
    if (pending.length === 0 || this.retired) return;
    void Promise.allSettled(pending.map((p) => p.oidc.ready())).then(() => {
      if (this.retired || this.providers.all.every((p) => p.oidc.discovered)) return;
      this.discoveryTimer = setTimeout(() => this.discover(), DISCOVERY_RETRY_MS);
      this.discoveryTimer.unref();
    });
  }

  /** No new requests come here; closes once the active ones have ended. */
  retire(): Promise<void> {
    this.retired = true;
    if (this.discoveryTimer) clearTimeout(this.discoveryTimer);
    return this.active === 0 ? this.close() : new Promise((resolve) => this.whenClosed.push(resolve));
  }

  private readonly whenClosed: (() => void)[] = [];

  close(): Promise<void> {
    this.closed ??= (async () => {
      if (this.discoveryTimer) clearTimeout(this.discoveryTimer);
      for (const { app } of this.apps.values()) await app.close();
      for (const resolve of this.whenClosed.splice(0)) resolve();
    })();
    return this.closed;
  }
}

export class Outpost {
  private generation: Generation;
  /** Retired generations still serving requests or WebSockets. */
  private readonly retiring = new Set<Generation>();
  private readonly servers = new Map<ListenerKind, http.Server | HttpsListener>();
  /** Upgraded sockets (WebSockets): Node's server no longer tracks them once upgraded. */
  private readonly upgraded = new Set<Socket>();
  private readonly websockets: WebSocketRegistry;
  /** SNI certificate choice of the HTTPS listener; a reload swaps in the new config's. */
  private sni: ((servername: string) => SecureContext) | null = null;
  private draining = false;
  private storeOpen = true;
  private closing: Promise<{ cut: number }> | null = null;

  private constructor(
    generation: Generation,
    readonly store: SessionStore,
    /** Encryption key of each provider's stored sessions, shared with the store; a reload updates it. */
    private readonly storeKeys: Map<string, Buffer>,
    websockets: WebSocketRegistry,
    readonly log: PinoLogger,
    /** Prometheus metrics, or null when `outpost.metrics.listen` is not set. */
    readonly metrics: OutpostMetrics | null,
    private readonly registry: StageRegistry,
    private readonly opts: OutpostOptions,
  ) {
    this.generation = generation;
    this.websockets = websockets;
  }

  /** The config being served (the last one loaded). */
  get config(): PortcullisConfig {
    return this.generation.config;
  }
  get container(): DependencyContainer {
    return this.generation.container;
  }
  get providers(): ProviderRegistry {
    return this.generation.providers;
  }
  get stages(): readonly BuiltStage[] {
    return this.generation.stages;
  }
  get contexts(): ContextFactory {
    return this.generation.contexts;
  }
  /** The exits by name (`upstream`, `forward`, …). */
  get exits(): ReadonlyMap<string, Exit> {
    return this.generation.exits;
  }
  /** How requests come in: the doors, and their routing for a bare request (benchmarks, tests). */
  get doors(): Doors {
    return this.generation.doors;
  }

  static async create(config: PortcullisConfig, opts: OutpostOptions = {}): Promise<Outpost> {
    const log = opts.logger ?? createLogger(config.outpost, undefined, opts.logBindings);
    const logger = log as unknown as Logger;
    const storeConfig = config.outpost.session_store;
    const storeKeys = new Map<string, Buffer>();
    setStoreKeys(storeKeys, config);
    const store =
      opts.store ??
      (opts.checkOnly ? new EmbeddedSessionStore({ path: null, keys: new Map(), log: logger }) : undefined) ??
      (storeConfig.type === 'redis'
        ? new RedisSessionStore({
            url: storeConfig.url,
            sentinel: storeConfig.sentinel && {
              masterName: storeConfig.sentinel.master_name,
              nodes: storeConfig.sentinel.nodes,
              username: storeConfig.sentinel.username,
              password: storeConfig.sentinel.password,
              tls: storeConfig.sentinel.tls,
            },
            cluster: storeConfig.cluster,
            username: storeConfig.username,
            password: storeConfig.password,
            tls: storeConfig.tls,
            db: storeConfig.db,
            waitReplicas: storeConfig.wait_replicas,
            maxSessionsPerUser: storeConfig.max_sessions_per_user,
            keyPrefix: storeConfig.key_prefix,
            keys: storeKeys,
            log: logger.child({ component: 'sessions' }),
          })
        : new EmbeddedSessionStore({
            path: resolve(config.baseDir, storeConfig.path),
            maxSessionsPerUser: storeConfig.max_sessions_per_user,
            keys: storeKeys,
            log: logger.child({ component: 'sessions' }),
          }));
    const providers = await buildProviders(config, logger);
    await store.open();

    const metrics = config.outpost.metrics?.listen
      ? new OutpostMetrics({ outpostName: config.outpost.name, providers, store, log: logger.child({ component: 'metrics' }) })
      : null;
    const websockets = new WebSocketRegistry({ store, log: logger.child({ component: 'websockets' }) });
    const registry = opts.registry ?? new StageRegistry();
    for (const def of builtInStages) if (!registry.get(def.name)) registry.register(def);
    for (const [oldName, name] of Object.entries(builtInStageAliases)) if (!registry.get(oldName)) registry.alias(oldName, name);
    let generation: Generation;
    try {
      generation = await buildGeneration(config, providers, { store, logger, metrics, websockets, registry });
    } catch (err) {
      await store.close();
      throw err;
    }
    // Discovery in the background: the first login should not wait for it, and an IdP that is
    // down at start-up must not stop the outpost (logins get 503, readiness too, until it answers).
    if (!opts.checkOnly) generation.discover();
    return new Outpost(generation, store, storeKeys, websockets, log, metrics, registry, opts);
  }

  /**
   * Readiness: the store is open, every provider's discovery has succeeded, and the outpost is
   * not draining. Returns the reasons it is not ready (empty when ready).
   */
  notReady(): NotReadyReason[] {
    const out: NotReadyReason[] = [];
    if (this.draining) out.push('draining');
    if (!this.storeOpen) out.push('session_store');
    if (!this.generation.providers.all.every((p) => p.oidc.discovered)) out.push('discovery');
    return out;
  }

  /** A Fastify instance serving one generation (not listening: the outpost's servers hand it requests). */
  private async buildApp(generation: Generation): Promise<{ app: FastifyInstance; handle: (req: IncomingMessage, res: ServerResponse) => void; server: http.Server }> {
    let handle: ((req: IncomingMessage, res: ServerResponse) => void) | null = null;
    // The Fastify instance gets a server that never listens: upgrade events are re-emitted on it
    // (the WebSocket proxy listens there), requests go to the handler captured here.
    const server = http.createServer();
    // At level silent Fastify gets no logger: request.log is then its no-op logger, and a request
    // pays for no child logger and no response listeners.
    const silent = !this.log.isLevelEnabled('fatal');
    const app: FastifyInstance = Fastify({
      ...(silent ? { logger: false } : { loggerInstance: this.log as unknown as import('fastify').FastifyBaseLogger, childLoggerFactory: lazyChildLoggerFactory as never }),
      // One line per request is written by the onResponse hook below, without the query string.
      logController: new LogController({ disableRequestLogging: true }),
      genReqId: () => randomUUID(),
      requestIdHeader: false,
      trustProxy: false,
      routerOptions: { maxParamLength: 16_384 },
      serverFactory: ((handler: (req: IncomingMessage, res: ServerResponse) => void) => {
        handle = handler;
        return server;
      }) as never,
      // One normalization of the request target, before routing: the stages decide on it and
      // the upstream receives it. A refused target is answered 400 by the pipeline's context.
      rewriteUrl: rewriteRequestUrl,
    });
    for (const method of EXTRA_METHODS) app.addHttpMethod(method, { hasBody: true });
    app.decorateRequest('portcullis', null);
    app.route({ method: ['GET', 'HEAD'], url: `${OUTPOST_PREFIX}/ping`, handler: (_req, reply) => reply.code(204).send() });
    // Readiness (Kubernetes readinessProbe): 204, or 503 with the reasons while not ready.
    app.route({
      method: ['GET', 'HEAD'],
      url: READY_PATH,
      handler: (_req, reply) => {
        const reasons = this.notReady();
        if (reasons.length === 0) return reply.code(204).header('cache-control', 'no-store').send();
        return reply.code(503).header('cache-control', 'no-store').send({ ready: false, waiting_for: reasons });
      },
    });
    // Back- and front-channel logout: on every host, outside the pipeline (the IdP's server may
    // post to an address that is no provider's external_host).
    const idpLog = (this.log as unknown as Logger).child({ component: 'idp-logout' });
    await app.register(idpLogoutRoutes, { logout: new IdpLogout(this.providers, this.store, idpLog), log: idpLog });
    // Decided here, once: below level info there is no hook and no per-request work at all.
    const log = this.log;
    if (log.isLevelEnabled('info')) {
      app.addHook('onResponse', (request, reply, done) => {
        const ctx = request.portcullis;
        // Through the outpost's logger, with reqId in the line: request.log's child is made only
        // when a request logs something else (request-logger.ts).
        log.info(
          {
            reqId: request.id,
            method: request.method,
            host: ctx?.target.host ?? request.headers.host,
            path: ctx?.target.path ?? request.url.split('?')[0],
            status: reply.statusCode,
            ms: Math.round(reply.elapsedTime * 100) / 100,
            provider: ctx?.provider.name,
            entry: ctx?.entry,
            remote: ctx?.clientIp ?? request.socket.remoteAddress,
          },
          'request',
        );
        done();
      });
    }
    // Also decided once: without metrics there is no hook and no per-request work at all.
    const metrics = this.metrics;
    if (metrics !== null) {
      app.addHook('onResponse', (request, reply, done) => {
        metrics.observeRequest(request, reply);
        done();
      });
    }
    app.setErrorHandler((err, request, reply) => {
      request.log.error({ err }, 'request failed');
      if (reply.sent) return;
      const status = typeof (err as { statusCode?: number }).statusCode === 'number' && (err as { statusCode: number }).statusCode >= 400 ? (err as { statusCode: number }).statusCode : 500;
      sendRespond(
        reply,
        request.portcullis,
        page({
          status: status >= 500 ? 500 : status,
          title: status >= 500 ? 'Internal error' : 'Bad request',
          message: status >= 500 ? 'Portcullis could not handle this request.' : (err as Error).message,
          requestId: request.id,
          wantsJson: request.portcullis?.wantsJson ?? false,
          code: status >= 500 ? 'internal' : 'request.invalid',
        }),
      );
    });
    await app.register(pipelineScope, { stages: generation.stages, doors: generation.doors.all });
    await app.ready();
    if (handle === null) throw new Error('Fastify did not hand over its request handler');
    return { app, handle, server };
  }

  private async buildApps(generation: Generation, kinds: Iterable<ListenerKind>): Promise<void> {
    try {
      for (const kind of kinds) generation.apps.set(kind, await this.buildApp(generation));
    } catch (err) {
      await generation.close();
      throw err;
    }
  }

  /** Starts the configured listeners; returns their addresses. */
  async listen(): Promise<{ http?: AddressInfo; https?: AddressInfo; metrics?: AddressInfo }> {
    const out: { http?: AddressInfo; https?: AddressInfo; metrics?: AddressInfo } = {};
    const { http: httpListen, https: httpsListen } = this.config.outpost.listeners;
    const kinds: ListenerKind[] = [];
    if (httpListen) kinds.push('http');
    if (httpsListen) kinds.push('https');
    await this.buildApps(this.generation, kinds);
    if (httpListen) {
      const server = http.createServer();
      out.http = await this.listenOn('http', server, httpListen);
    }
    if (httpsListen) {
      const tlsSetup = await this.loadTls(this.config);
      this.sni = tlsSetup.match;
      const server = createHttpsListener(
        {
          ...tlsSetup.serverOptions,
          // Indirect, so that a reload can change the certificates without a new listener.
          SNICallback: (servername, cb) => cb(null, this.sni!(servername)),
        },
        this.config.outpost.listeners.https_http2,
      );
      out.https = await this.listenOn('https', server, httpsListen);
    }
    const metricsListen = this.config.outpost.metrics?.listen;
    if (this.metrics !== null && metricsListen && this.opts.metricsListener !== false) {
      const { host, port } = splitListen(metricsListen);
      out.metrics = await this.metrics.listen(host, port);
      this.log.info({ metrics: out.metrics }, 'Prometheus metrics at /metrics');
    }
    return out;
  }

  private async loadTls(config: PortcullisConfig) {
    const setup = await buildTls(
      config.outpost.tls.certificates,
      config.baseDir,
      this.generation.providers.all.map((p) => p.externalHost.replace(/:\d+$/, '')),
    );
    const sni = setup.serverOptions.SNICallback!;
    // buildTls answers synchronously; its callback form is turned into a plain choice here.
    const match = (servername: string): SecureContext => {
      let chosen: SecureContext | undefined;
      sni(servername, (_err, ctx) => {
        chosen = ctx as SecureContext | undefined;
      });
      return chosen!;
    };
    return { serverOptions: setup.serverOptions, match };
  }

  private async listenOn(kind: ListenerKind, server: http.Server | HttpsListener, address: string): Promise<AddressInfo> {
    // Fastify's default for the servers it makes (Node's own is 5 s, shorter than most proxies' idle timeout).
    server.keepAliveTimeout = 72_000;
    const dispatch = (req: IncomingMessage, res: ServerResponse) => {
      const generation = this.generation;
      // While draining, each answer ends its connection: clients reconnect elsewhere.
      if (this.draining) res.shouldKeepAlive = false;
      generation.enter();
      res.once('close', generation.done);
      generation.apps.get(kind)!.handle(req, res);
    };
    server.on('request', dispatch);
    // `Expect: 100-continue` is answered by the pipeline, not by Node before any decision: a
    // refused request gets its answer without the client ever sending the body, and the upstream
    // transport sends the 100 once the request is let through.
    server.on('checkContinue', dispatch);
    server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => {
      if (this.draining) {
        socket.end('HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
        return;
      }
      const generation = this.generation;
      generation.enter();
      this.upgraded.add(socket);
      socket.once('close', () => {
        this.upgraded.delete(socket);
        generation.done();
      });
      generation.apps.get(kind)!.server.emit('upgrade', req, socket, head);
    });
    const { host, port } = splitListen(address);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host, port }, () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.on('error', (err) => this.log.error({ err: err.message, listener: kind }, 'listener failed'));
    this.servers.set(kind, server);
    return server.address() as AddressInfo;
  }

  /**
   * Serves `config` from now on. New requests use it; requests and WebSockets in flight finish on
   * the previous config, which is closed after them. Sessions are kept. Throws (and changes
   * nothing) when the config cannot be built, or changes what only a restart can change.
   */
  async reload(config: PortcullisConfig): Promise<void> {
    if (this.closing !== null) throw new Error('the outpost is shutting down');
    const old = this.generation;
    const fixed = restartOnlyChanges(old.config, config);
    if (fixed.length > 0) throw new ConfigError(config.source ?? '<config>', fixed);
    const logger = this.log as unknown as Logger;
    const providers = await buildProviders(config, logger, old.providers);
    const next = await buildGeneration(config, providers, { store: this.store, logger, metrics: this.metrics, websockets: this.websockets, registry: this.registry });
    await this.buildApps(next, old.apps.keys());
    let sni: ((servername: string) => SecureContext) | null = null;
    if (this.servers.has('https')) {
      try {
        sni = (await this.loadTls(config)).match;
      } catch (err) {
        await next.close();
        throw err;
      }
    }
    // Nothing below can fail: the switch is complete or not made at all.
    setStoreKeys(this.storeKeys, config);
    if (sni !== null) this.sni = sni;
    this.log.level = config.outpost.log_level;
    this.metrics?.setProviders(providers);
    this.generation = next;
    next.discover();
    this.retiring.add(old);
    void old.retire().then(() => this.retiring.delete(old));
  }

  /**
   * Stops serving: no new connections, readiness 503, WebSockets closed with 1001, requests in
   * flight given `timeoutMs` (default `outpost.shutdown_timeout`) to finish before their
   * connections are cut; then the store is closed. Resolves with how many were cut.
   */
  shutdown(timeoutMs = this.config.outpost.shutdown_timeout * 1000): Promise<{ cut: number }> {
    this.closing ??= this.drain(timeoutMs);
    return this.closing;
  }

  /** `shutdown()` with the configured timeout. */
  async close(): Promise<void> {
    await this.shutdown();
  }

  private async drain(timeoutMs: number): Promise<{ cut: number }> {
    this.draining = true;
    const generations = [this.generation, ...this.retiring];
    const closed = [...this.servers.values()].map((server) => new Promise<void>((resolve) => server.close(() => resolve())));
    // Idle keep-alive connections have no request to finish.
    for (const server of this.servers.values()) server.closeIdleConnections();
    this.websockets.closeAll();
    const active = () => generations.reduce((n, g) => n + g.activeCount, 0);
    const deadline = Date.now() + timeoutMs;
    while (active() > 0 && Date.now() < deadline) await sleep(Math.min(50, Math.max(1, deadline - Date.now())));
    const cut = active();
    if (cut > 0) {
      this.log.warn({ cut, timeout_s: timeoutMs / 1000 }, 'shutdown timeout: cutting the requests still in flight');
      for (const server of this.servers.values()) server.closeAllConnections();
      for (const socket of this.upgraded) socket.destroy();
    }
    await Promise.all(closed);
    this.servers.clear();
    for (const g of generations) await g.close();
    await this.metrics?.close();
    this.storeOpen = false;
    await this.store.close();
    return { cut };
  }
}

/** The readiness endpoint, in authentik's namespace next to ping. */
export const READY_PATH = `${OUTPOST_PREFIX}/ready`;

interface GenerationParts {
  store: SessionStore;
  logger: Logger;
  metrics: OutpostMetrics | null;
  websockets: WebSocketRegistry;
  registry: StageRegistry;
}

async function buildGeneration(config: PortcullisConfig, providers: ProviderRegistry, parts: GenerationParts): Promise<Generation> {
  const container = rootContainer.createChildContainer();
  container.register(CONFIG, { useValue: config });
  container.register(PROVIDERS, { useValue: providers });
  container.register(SESSION_STORE, { useValue: parts.store });
  container.register(LOGGER, { useValue: parts.logger });
  container.register(VERSION, { useValue: VERSION_STRING });
  container.register(AUTH_EVENTS, { useValue: parts.metrics ?? NO_AUTH_EVENTS });
  container.register(WEBSOCKETS, { useValue: parts.websockets });
  const ws = config.outpost.websockets;
  parts.websockets.configure({ idleTimeoutSeconds: ws.idle_timeout, maxOpen: ws.max_open, sessionCheckSeconds: ws.session_check_interval });
  const stages = await buildChain(config.pipeline ?? DEFAULT_CHAIN, parts.registry, container, config.baseDir, config.source);
  const contexts = new ContextFactory(providers, config.outpost.trusted_proxies, builtInActions);
  const exits = await buildExits(builtInExits, container, stages);
  const doors = buildDoors(builtInDoors, { contexts, exits });
  return new Generation(config, container, providers, stages, contexts, exits, doors);
}

function setStoreKeys(keys: Map<string, Buffer>, config: PortcullisConfig): void {
  // Keys of providers a reload removed stay: their stored sessions remain readable (and deletable).
  for (const p of config.providers) keys.set(p.name, deriveKey(p.cookie_secret, `journal:${p.client_id}`));
}

/** Fields a running outpost cannot change: the listening sockets and the store outlive a reload. */
export function restartOnlyChanges(running: PortcullisConfig, next: PortcullisConfig): ConfigIssue[] {
  const fields: [string, (c: PortcullisConfig) => unknown][] = [
    ['outpost.listeners.http', (c) => c.outpost.listeners.http ?? null],
    ['outpost.listeners.https', (c) => c.outpost.listeners.https ?? null],
    ['outpost.listeners.https_http2', (c) => c.outpost.listeners.https_http2],
    ['outpost.session_store', (c) => c.outpost.session_store],
    ['outpost.metrics.listen', (c) => c.outpost.metrics?.listen ?? null],
    ['outpost.workers', (c) => c.outpost.workers],
  ];
  const out: ConfigIssue[] = [];
  for (const [field, get] of fields) {
    if (JSON.stringify(get(running)) !== JSON.stringify(get(next))) {
      out.push({ code: 'config.restart_required', field, message: 'cannot change while running; restart Portcullis to apply it' });
    }
  }
  return out;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export function splitListen(value: string): { host: string; port: number } {
  const colon = value.lastIndexOf(':');
  const host = value.slice(0, colon).replace(/^\[|\]$/g, '') || '0.0.0.0';
  return { host, port: Number(value.slice(colon + 1)) };
}
