// Doors: how a request comes in. Each door is a set of explicit Fastify routes declared by the
// plugin that owns it — the proxy's catch-all (the upstream plugin), one route per forward-auth
// endpoint (the forward-auth plugin), the login endpoints (the auth plugin) — and, for each
// request, builds its context and names its exit. The router is Fastify's; `Doors` routes a bare
// request the same way for the callers without a server (benchmarks, unit tests).
import type { FastifyInstance } from 'fastify';
import type { RequestContext, Respond } from './contract.js';
import type { ContextFactory, RawRequestView } from './context.js';
import type { Exit } from './exits.js';

export interface Door {
  /** For logs and errors: `proxy`, `nginx`, `login`, … */
  readonly name: string;
  /**
   * The door's routes (find-my-way paths; `/x/*` matches the paths below `/x/`). Each takes every
   * method Node parses. A door with `fastify` registers them itself.
   */
  readonly routes: readonly string[];
  /** The request's context, or the answer when it cannot be served through this door. */
  context(req: RawRequestView, requestId: string): RequestContext | Respond;
  /** Where the request goes once the chain has let it through. */
  exit(ctx: RequestContext): Exit;
  /** Registers the door's routes with a handler of its own (the proxy), in the door's scope. */
  fastify?(scope: FastifyInstance): Promise<void>;
}

/** What a plugin's door is built from, once per config generation. */
export interface DoorParts {
  readonly contexts: ContextFactory;
  readonly exits: ReadonlyMap<string, Exit>;
}

export interface DoorDefinition {
  readonly name: string;
  create(parts: DoorParts): Door | readonly Door[];
}

export function buildDoors(definitions: readonly DoorDefinition[], parts: DoorParts): Doors {
  const doors: Door[] = [];
  for (const def of definitions) {
    const made = def.create(parts);
    if (Array.isArray(made)) doors.push(...(made as readonly Door[]));
    else doors.push(made as Door);
  }
  return new Doors(doors);
}

/**
 * The doors of one generation, and the same routing as Fastify's for a bare request: an exact
 * route first, then the longest `/*` route whose base the path is under.
 */
export class Doors {
  private readonly exact = new Map<string, Door>();
  private readonly below: { base: string; door: Door }[] = [];
  private readonly doorOf = new WeakMap<RequestContext, Door>();

  constructor(readonly all: readonly Door[]) {
    for (const door of all) {
      for (const route of door.routes) {
        if (route.endsWith('/*')) this.below.push({ base: route.slice(0, -1), door });
        else if (this.exact.has(route)) throw new Error(`the route ${route} belongs to two doors (${this.exact.get(route)!.name}, ${door.name})`);
        else this.exact.set(route, door);
      }
    }
    this.below.sort((a, b) => b.base.length - a.base.length);
  }

  /** The door Fastify would route `path` to (undefined: none). */
  find(path: string): Door | undefined {
    const exact = this.exact.get(path);
    if (exact !== undefined) return exact;
    for (const b of this.below) if (path.startsWith(b.base)) return b.door;
    return undefined;
  }

  /** A bare request's context through the door its path routes to. */
  context(req: RawRequestView, requestId: string): RequestContext | Respond {
    const q = req.url.indexOf('?');
    const door = this.find(q === -1 ? req.url : req.url.slice(0, q));
    if (door === undefined) throw new Error(`no door routes ${req.url}`);
    const ctx = door.context(req, requestId);
    if (!('kind' in ctx)) this.doorOf.set(ctx, door);
    return ctx;
  }

  /** The exit of a context made by `context()`. */
  exit(ctx: RequestContext): Exit {
    const door = this.doorOf.get(ctx);
    if (door === undefined) throw new Error('the context was not made by these doors');
    return door.exit(ctx);
  }
}
