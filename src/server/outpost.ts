// Assembles an outpost from a validated config: the DI container, providers, session store,
// the chain of stages, and one Fastify instance per listener (HTTP 9000, HTTPS 9443).
import 'reflect-metadata';
import { randomUUID } from 'node:crypto';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { resolve } from 'node:path';
import Fastify, { LogController, type FastifyInstance } from 'fastify';
import { pino, type Logger as PinoLogger } from 'pino';
import { container as rootContainer, type DependencyContainer } from 'tsyringe';
import type { PortcullisConfig } from '../config/schema.js';
import { buildProviders, OUTPOST_PREFIX, type ProviderRegistry } from '../config/provider.js';
import { AUTH_EVENTS, CONFIG, LOGGER, NO_AUTH_EVENTS, PROVIDERS, SESSION_STORE, VERSION } from '../pipeline/tokens.js';
import { REDACT_PATHS, type Logger } from '../pipeline/logger.js';
import { StageRegistry } from '../pipeline/registry.js';
import { buildChain, DEFAULT_CHAIN, type BuiltStage } from '../pipeline/chain.js';
import { ContextFactory, rewriteRequestUrl, type EntryResolver } from '../pipeline/context.js';
import { pipelineScope, sendRespond } from '../pipeline/fastify.js';
import type { SessionStore } from '../sessions/store.js';
import { EmbeddedSessionStore } from '../sessions/embedded-store.js';
import { RedisSessionStore } from '../sessions/redis-store.js';
import { deriveKey } from '../sessions/cookie-codec.js';
import { page } from '../http/pages.js';
import { EXTRA_METHODS } from '../http/methods.js';
import { builtInStages, builtInEntries } from '../plugins/index.js';
import { buildTls } from './tls.js';
import { OutpostMetrics } from './metrics.js';
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
}

export class Outpost {
  private readonly apps: FastifyInstance[] = [];

  private constructor(
    readonly config: PortcullisConfig,
    readonly container: DependencyContainer,
    readonly providers: ProviderRegistry,
    readonly store: SessionStore,
    readonly stages: readonly BuiltStage[],
    readonly contexts: ContextFactory,
    readonly log: PinoLogger,
    /** Prometheus metrics, or null when `outpost.metrics.listen` is not set. */
    readonly metrics: OutpostMetrics | null,
  ) {}

  static async create(config: PortcullisConfig, opts: OutpostOptions = {}): Promise<Outpost> {
    const log = opts.logger ?? pino({ level: config.outpost.log_level, redact: REDACT_PATHS, base: { outpost: config.outpost.name } });
    const logger = log as unknown as Logger;
    const providers = await buildProviders(config, logger);
    const storeConfig = config.outpost.session_store;
    const storeKeys = () => new Map(config.providers.map((p) => [p.name, deriveKey(p.cookie_secret, `journal:${p.client_id}`)]));
    const store =
      opts.store ??
      (opts.checkOnly ? new EmbeddedSessionStore({ path: null, keys: new Map(), log: logger }) : undefined) ??
      (storeConfig.type === 'redis'
        ? new RedisSessionStore({ url: storeConfig.url, keyPrefix: storeConfig.key_prefix, keys: storeKeys(), log: logger.child({ component: 'sessions' }) })
        : new EmbeddedSessionStore({
            path: resolve(config.baseDir, storeConfig.path),
            keys: storeKeys(),
            log: logger.child({ component: 'sessions' }),
          }));
    await store.open();

    const metrics = config.outpost.metrics?.listen
      ? new OutpostMetrics({ outpostName: config.outpost.name, providers, store, log: logger.child({ component: 'metrics' }) })
      : null;

    const container = rootContainer.createChildContainer();
    container.register(CONFIG, { useValue: config });
    container.register(PROVIDERS, { useValue: providers });
    container.register(SESSION_STORE, { useValue: store });
    container.register(LOGGER, { useValue: logger });
    container.register(VERSION, { useValue: VERSION_STRING });
    container.register(AUTH_EVENTS, { useValue: metrics ?? NO_AUTH_EVENTS });

    const registry = opts.registry ?? new StageRegistry();
    for (const def of builtInStages) if (!registry.get(def.name)) registry.register(def);
    let stages: BuiltStage[];
    try {
      stages = await buildChain(config.pipeline ?? DEFAULT_CHAIN, registry, container, config.baseDir, config.source);
    } catch (err) {
      await store.close();
      throw err;
    }

    const contexts = new ContextFactory(providers, config.outpost.trusted_proxies);
    for (const entry of builtInEntries as EntryResolver[]) contexts.addEntry(entry);
    // Discovery in the background: the first login should not wait for it, and an IdP that is
    // down at start-up must not stop the outpost (logins get 503 until it answers).
    if (!opts.checkOnly) for (const p of providers.all) p.oidc.ready().catch(() => undefined);
    return new Outpost(config, container, providers, store, stages, contexts, log, metrics);
  }

  /** A Fastify instance serving the outpost (not listening). */
  async buildApp(serverFactory?: (handler: (req: never, res: never) => void) => import('node:http').Server | https.Server): Promise<FastifyInstance> {
    const app: FastifyInstance = Fastify({
      loggerInstance: this.log as unknown as import('fastify').FastifyBaseLogger,
      // One line per request is written by the onResponse hook below, without the query string.
      logController: new LogController({ disableRequestLogging: true }),
      genReqId: () => randomUUID(),
      requestIdHeader: false,
      trustProxy: false,
      routerOptions: { maxParamLength: 16_384 },
      return503OnClosing: true,
      ...(serverFactory ? { serverFactory: serverFactory as never } : {}),
      // One normalization of the request target, before routing: the stages decide on it and
      // the upstream receives it. A target that cannot be normalized is answered 400 below.
      // One normalization of the request target, before routing: the stages decide on it and
      // the upstream receives it. A refused target is answered 400 by the pipeline's context.
      rewriteUrl: rewriteRequestUrl,
    });
    for (const method of EXTRA_METHODS) app.addHttpMethod(method, { hasBody: true });
    app.decorateRequest('portcullis', null);
    // `Expect: 100-continue` is answered by the pipeline, not by Node before any decision: a
    // refused request gets its answer without the client ever sending the body, and the upstream
    // transport sends the 100 once the request is let through.
    app.server.on('checkContinue', (req, res) => app.server.emit('request', req, res));
    app.route({ method: ['GET', 'HEAD'], url: `${OUTPOST_PREFIX}/ping`, handler: (_req, reply) => reply.code(204).send() });
    const logRequests = this.log.isLevelEnabled('info');
    app.addHook('onResponse', (request, reply, done) => {
      if (!logRequests) return done();
      const ctx = request.portcullis;
      request.log.info(
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
    // Decided here, once: without metrics there is no hook and no per-request work at all.
    const metrics = this.metrics;
    if (metrics !== null) {
      app.addHook('onResponse', (request, reply, done) => {
        metrics.observeRequest(request, reply);
        done();
      });
    }
    app.setErrorHandler((err, request, reply) => {
      request.log.error({ err, reqId: request.id }, 'request failed');
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
    await app.register(pipelineScope, { stages: this.stages, contexts: this.contexts });
    this.apps.push(app);
    return app;
  }

  /** Starts the configured listeners; returns their addresses. */
  async listen(): Promise<{ http?: AddressInfo; https?: AddressInfo; metrics?: AddressInfo }> {
    const out: { http?: AddressInfo; https?: AddressInfo; metrics?: AddressInfo } = {};
    const { http: httpListen, https: httpsListen } = this.config.outpost.listeners;
    if (httpListen) {
      const app = await this.buildApp();
      const { host, port } = splitListen(httpListen);
      await app.listen({ host, port });
      out.http = app.server.address() as AddressInfo;
    }
    if (httpsListen) {
      const tlsSetup = await buildTls(
        this.config.outpost.tls.certificates,
        this.config.baseDir,
        this.providers.all.map((p) => p.externalHost.replace(/:\d+$/, '')),
      );
      const app = await this.buildApp((handler) => https.createServer(tlsSetup.serverOptions, handler as never));
      const { host, port } = splitListen(httpsListen);
      await app.listen({ host, port });
      out.https = app.server.address() as AddressInfo;
    }
    const metricsListen = this.config.outpost.metrics?.listen;
    if (this.metrics !== null && metricsListen) {
      const { host, port } = splitListen(metricsListen);
      out.metrics = await this.metrics.listen(host, port);
      this.log.info({ metrics: out.metrics }, 'Prometheus metrics at /metrics');
    }
    return out;
  }

  async close(): Promise<void> {
    for (const app of this.apps.splice(0)) await app.close();
    await this.metrics?.close();
    await this.store.close();
  }
}

export function splitListen(value: string): { host: string; port: number } {
  const colon = value.lastIndexOf(':');
  const host = value.slice(0, colon).replace(/^\[|\]$/g, '') || '0.0.0.0';
  return { host, port: Number(value.slice(colon + 1)) };
}
