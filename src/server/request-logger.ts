// `request.log` without a pino child per request. Fastify's default makes one for every request
// (pino's child() serializes the reqId binding: about 1 µs, 2% of an auth/nginx decision in the
// profiles), while a request rarely writes a line of its own (the one line per request is written
// through the outpost's logger, with reqId: outpost.ts). Here the child is made when the first
// line at an enabled level is written; a request that logs nothing costs one small object.
import type { FastifyBaseLogger } from 'fastify';
import type { Bindings, ChildLoggerOptions, LevelWithSilentOrString, Logger as Pino } from 'pino';

export class LazyRequestLogger {
  private made: Pino | null = null;

  constructor(
    private readonly parent: Pino,
    private readonly binds: Bindings,
  ) {}

  private get real(): Pino {
    return (this.made ??= this.parent.child(this.binds));
  }

  get level(): LevelWithSilentOrString {
    return this.made?.level ?? this.parent.level;
  }

  set level(level: LevelWithSilentOrString) {
    this.real.level = level;
  }

  isLevelEnabled(level: string): boolean {
    return (this.made ?? this.parent).isLevelEnabled(level);
  }

  bindings(): Bindings {
    return { ...this.parent.bindings(), ...this.binds };
  }

  child(bindings: Bindings, options?: ChildLoggerOptions): FastifyBaseLogger {
    return this.real.child(bindings, options) as unknown as FastifyBaseLogger;
  }

  fatal(...args: unknown[]): void {
    this.write('fatal', args);
  }
  error(...args: unknown[]): void {
    this.write('error', args);
  }
  warn(...args: unknown[]): void {
    this.write('warn', args);
  }
  info(...args: unknown[]): void {
    this.write('info', args);
  }
  debug(...args: unknown[]): void {
    this.write('debug', args);
  }
  trace(...args: unknown[]): void {
    this.write('trace', args);
  }
  silent(): void {}

  private write(level: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace', args: unknown[]): void {
    if (this.isLevelEnabled(level)) (this.real[level] as (...a: unknown[]) => void)(...args);
  }
}

/**
 * Fastify's `childLoggerFactory`: a lazy child for the usual request; pino's own child when the
 * route sets a level or serializers of its own (none of Portcullis's routes does).
 */
export function lazyChildLoggerFactory(logger: FastifyBaseLogger, bindings: Bindings, opts: ChildLoggerOptions): FastifyBaseLogger {
  if (opts.level !== undefined || opts.serializers !== undefined) return logger.child(bindings, opts);
  return new LazyRequestLogger(logger as unknown as Pino, bindings) as unknown as FastifyBaseLogger;
}
