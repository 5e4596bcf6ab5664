// The registry of stages by name. Built-in stages register here; the chain builder resolves a
// config entry either by name or, failing that, by importing it as a module specifier.
import { pathToFileURL } from 'node:url';
import { isAbsolute, resolve } from 'node:path';
import type { StageDefinition } from './contract.js';

export class StageRegistry {
  private readonly definitions = new Map<string, StageDefinition<unknown>>();
  /** Old names of renamed built-in stages -> their current names. */
  private readonly aliases = new Map<string, string>();

  register(definition: StageDefinition<any>): this {
    if (this.definitions.has(definition.name)) throw new Error(`stage "${definition.name}" is already registered`);
    this.definitions.set(definition.name, definition as StageDefinition<unknown>);
    return this;
  }

  get(name: string): StageDefinition<unknown> | undefined {
    return this.definitions.get(name);
  }

  /** Accepts `oldName` in a `pipeline:` for the stage now called `name` (not listed by names()). */
  alias(oldName: string, name: string): this {
    if (this.definitions.has(oldName)) throw new Error(`stage "${oldName}" is registered: it cannot also be an alias`);
    this.aliases.set(oldName, name);
    return this;
  }

  /** The current name when `specifier` is an old name of a renamed stage, else undefined. */
  renamed(specifier: string): string | undefined {
    return this.aliases.get(specifier);
  }

  names(): string[] {
    return [...this.definitions.keys()];
  }

  /**
   * A built-in stage by name, else a module: a path (relative to the config file) or an npm
   * package whose default export is a StageDefinition.
   */
  async resolve(specifier: string, baseDir: string): Promise<StageDefinition<unknown>> {
    const builtIn = this.definitions.get(this.aliases.get(specifier) ?? specifier);
    if (builtIn) return builtIn;
    const isPath = specifier.startsWith('.') || isAbsolute(specifier);
    const target = isPath ? pathToFileURL(resolve(baseDir, specifier)).href : specifier;
    let mod: { default?: unknown };
    try {
      mod = (await import(target)) as { default?: unknown };
    } catch (err) {
      throw new Error(`stage "${specifier}" is neither a built-in stage (${this.names().join(', ')}) nor a loadable module: ${(err as Error).message}`);
    }
    const def = mod.default as StageDefinition<unknown> | undefined;
    if (!def || typeof def !== 'object' || typeof def.name !== 'string' || typeof def.create !== 'function') {
      throw new Error(`module "${specifier}" does not default-export a stage definition ({ name, optionsSchema?, create })`);
    }
    return def;
  }
}
