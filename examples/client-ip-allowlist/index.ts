// A third-party stage: refuses requests whose client address is outside a list of CIDRs.
//
// It imports only from 'portcullis', the package's public entry point, as a stage published to
// npm does; its default export is the StageDefinition the registry loads when the config's
// `pipeline:` names this package. A plain factory builds it: no decorators, no reflect-metadata.
import { Type, type Static } from '@sinclair/typebox';
import proxyaddr from 'proxy-addr';
import { CONTINUE, defineStage, page, type Logger, type RequestContext, type Stage, type StageOutcome } from 'portcullis';

export const STAGE_NAME = 'client-ip-allowlist';

/** The stage's `options` in the config file, validated at start (unknown keys refused). */
export const OptionsSchema = Type.Object(
  {
    allow: Type.Array(Type.String({ minLength: 1 }), {
      minItems: 1,
      description: 'Client addresses or CIDRs (IPv4 or IPv6) that may pass, e.g. 10.0.0.0/8.',
    }),
    message: Type.Optional(Type.String({ minLength: 1, description: 'Text of the 403 page.' })),
  },
  { additionalProperties: false },
);
export type ClientIpAllowlistOptions = Static<typeof OptionsSchema>;

const DEFAULT_MESSAGE = 'Your network address is not allowed to reach this application.';

interface Compiled {
  readonly allowed: (addr: string, i: number) => boolean;
  readonly message: string;
}

function compile(options: ClientIpAllowlistOptions): Compiled {
  try {
    // Compiled once, at start: matching a request is a few integer comparisons.
    return { allowed: proxyaddr.compile(options.allow), message: options.message ?? DEFAULT_MESSAGE };
  } catch (err) {
    throw new Error(`${STAGE_NAME}: invalid address or CIDR in "allow": ${(err as Error).message}`);
  }
}

export class ClientIpAllowlistStage implements Stage {
  readonly name = STAGE_NAME;

  /** `perProvider[i]`: the compiled options of provider i (its `providers:` override, or the entry's options). */
  constructor(
    private readonly perProvider: readonly Compiled[],
    private readonly log: Logger,
  ) {}

  run(ctx: RequestContext): StageOutcome {
    const own = this.perProvider[ctx.provider.index]!;
    // clientIp is the socket peer, or X-Forwarded-For's client when the peer is a trusted proxy.
    if (ctx.clientIp !== '' && own.allowed(ctx.clientIp, 0)) return CONTINUE;
    this.log.debug({ provider: ctx.provider.name, reqId: ctx.requestId }, 'client address refused');
    return page({
      status: 403,
      title: 'Access denied',
      message: own.message,
      requestId: ctx.requestId,
      wantsJson: ctx.wantsJson,
      code: 'client_ip.denied',
    });
  }
}

export default defineStage<ClientIpAllowlistOptions>({
  name: STAGE_NAME,
  optionsSchema: OptionsSchema,
  // Decides on the request alone (ctx.clientIp, always set): it reads and writes no stage's field.
  reads: [],
  writes: [],
  create(deps, options) {
    // One compiled set per distinct options object: providers without an override share the entry's.
    const cache = new Map<ClientIpAllowlistOptions, Compiled>();
    const perProvider = deps.providerOptions.map((o) => {
      let c = cache.get(o);
      if (c === undefined) cache.set(o, (c = compile(o)));
      return c;
    });
    deps.logger.info({ allow: options.allow, overrides: deps.providers.filter((p) => deps.providerOptions[p.index] !== options).map((p) => p.name) }, 'client address allowlist active');
    return new ClientIpAllowlistStage(perProvider, deps.logger);
  },
});
