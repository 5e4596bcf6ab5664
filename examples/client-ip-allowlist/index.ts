// A third-party stage: refuses requests whose client address is outside a list of CIDRs.
//
// Published as an npm package, this module would import from 'portcullis' instead of the
// relative paths below; everything it uses (defineStage, CONTINUE, page, the injection tokens)
// is part of the stage contract. Its default export is the StageDefinition the registry loads
// when the config's `pipeline:` names this module.
import 'reflect-metadata';
import { Type, type Static } from '@sinclair/typebox';
import { inject, injectable } from 'tsyringe';
import proxyaddr from 'proxy-addr';
import { CONTINUE, defineStage, type RequestContext, type Stage, type StageOutcome } from '../../src/pipeline/contract.js';
import { LOGGER, STAGE_OPTIONS } from '../../src/pipeline/tokens.js';
import type { Logger } from '../../src/pipeline/logger.js';
import { page } from '../../src/http/pages.js';

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

@injectable()
export class ClientIpAllowlistStage implements Stage {
  readonly name = STAGE_NAME;
  private readonly allowed: (addr: string, i: number) => boolean;
  private readonly message: string;
  private readonly log: Logger;

  constructor(@inject(STAGE_OPTIONS) options: ClientIpAllowlistOptions, @inject(LOGGER) log: Logger) {
    this.log = log.child({ stage: STAGE_NAME });
    try {
      // Compiled once: matching a request is a few integer comparisons.
      this.allowed = proxyaddr.compile(options.allow);
    } catch (err) {
      throw new Error(`${STAGE_NAME}: invalid address or CIDR in "allow": ${(err as Error).message}`);
    }
    this.message = options.message ?? DEFAULT_MESSAGE;
    this.log.info({ allow: options.allow }, 'client address allowlist active');
  }

  run(ctx: RequestContext): StageOutcome {
    // clientIp is the socket peer, or X-Forwarded-For's client when the peer is a trusted proxy.
    if (ctx.clientIp !== '' && this.allowed(ctx.clientIp, 0)) return CONTINUE;
    this.log.debug({ clientIp: ctx.clientIp, requestId: ctx.requestId }, 'client address refused');
    return page({
      status: 403,
      title: 'Access denied',
      message: this.message,
      requestId: ctx.requestId,
      wantsJson: ctx.wantsJson,
      code: 'client_ip.denied',
    });
  }
}

export default defineStage<ClientIpAllowlistOptions>({
  name: STAGE_NAME,
  optionsSchema: OptionsSchema,
  create: (container) => container.resolve(ClientIpAllowlistStage),
});
