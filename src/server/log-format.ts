// The outpost's logger: pino, writing JSON lines (`log_format: json`, for log collectors) or one
// readable line per entry (`log_format: pretty`, for a terminal). The pretty form is a small
// formatter of pino's own lines, so it needs no extra dependency and redaction applies to both.
import { pino, type Logger, type DestinationStream } from 'pino';
import type { OutpostConfig } from '../config/schema.js';
import { REDACT_PATHS } from '../pipeline/logger.js';

const LEVELS: Record<number, string> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO ', 40: 'WARN ', 50: 'ERROR', 60: 'FATAL' };
/** Fields every line has, or that the pretty form shows in its own place. */
const SHOWN = new Set(['level', 'time', 'msg', 'pid', 'hostname', 'outpost', 'reqId', 'method', 'host', 'path', 'status', 'ms']);

/** One readable line for one pino JSON line. */
export function prettyLine(json: string): string {
  let entry: Record<string, unknown>;
  try {
    entry = JSON.parse(json) as Record<string, unknown>;
  } catch {
    return json.endsWith('\n') ? json : json + '\n';
  }
  const time = typeof entry.time === 'number' ? new Date(entry.time).toISOString().slice(11, 23) : '';
  const level = LEVELS[entry.level as number] ?? String(entry.level);
  let text = `${time} ${level} ${String(entry.msg ?? '')}`;
  // The access-log line reads like one: GET host/path 200 1.2ms.
  if (entry.msg === 'request' && entry.method !== undefined) text += ` ${entry.method} ${entry.host ?? ''}${entry.path ?? ''} ${entry.status} ${entry.ms}ms`;
  const rest: string[] = [];
  for (const [key, value] of Object.entries(entry)) {
    if (SHOWN.has(key) || value === undefined) continue;
    rest.push(`${key}=${typeof value === 'string' ? (/[\s"=]/.test(value) ? JSON.stringify(value) : value) : JSON.stringify(value)}`);
  }
  if (entry.reqId !== undefined) rest.push(`reqId=${entry.reqId}`);
  return `${text}${rest.length ? '  ' + rest.join(' ') : ''}\n`;
}

/** A destination that turns pino's lines into pretty ones before writing them to `out`. */
export function prettyDestination(out: NodeJS.WritableStream = process.stdout): DestinationStream {
  return {
    write(chunk: string) {
      // pino writes one entry per call, newline-terminated.
      out.write(prettyLine(chunk.endsWith('\n') ? chunk.slice(0, -1) : chunk));
    },
  };
}

/** The logger of an outpost with this config. */
export function createLogger(outpost: Pick<OutpostConfig, 'log_level' | 'log_format' | 'name'>, out?: NodeJS.WritableStream, bindings?: Record<string, unknown>): Logger {
  const options = { level: outpost.log_level, redact: REDACT_PATHS, base: { outpost: outpost.name, ...bindings } };
  if (outpost.log_format === 'pretty') return pino(options, prettyDestination(out));
  return out ? pino(options, out as DestinationStream) : pino(options);
}
