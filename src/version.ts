import { readFileSync, existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** Portcullis's version, from package.json (X-authentik-meta-version: portcullis/<version>). */
function readVersion(): string {
  // src/version.ts runs from src/ (tsx) or dist/src/ (compiled): look upwards for package.json.
  for (const rel of ['../package.json', '../../package.json']) {
    const path = fileURLToPath(new URL(rel, import.meta.url));
    if (existsSync(path)) {
      const pkg = JSON.parse(readFileSync(path, 'utf8')) as { name?: string; version: string };
      if (pkg.name === 'portcullis') return pkg.version;
    }
  }
  return '0.0.0';
}

export const VERSION_STRING = readVersion();
