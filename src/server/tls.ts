// HTTPS certificates: those named in config, chosen by SNI from their subject names, and a
// self-signed certificate generated at start for names no certificate covers.
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { X509Certificate } from 'node:crypto';
import tls, { createSecureContext, type SecureContext } from 'node:tls';
import { generate } from 'selfsigned';

export interface TlsSetup {
  /** Options for https.createServer. */
  serverOptions: tls.TlsOptions;
  /** Names covered by configured certificates (for logs). */
  names: string[];
}

interface LoadedCert {
  context: SecureContext;
  names: string[];
}

export async function buildTls(certs: { cert: string; key: string }[], baseDir: string, fallbackNames: string[]): Promise<TlsSetup> {
  const loaded: LoadedCert[] = certs.map(({ cert, key }) => {
    const certPem = readFileSync(resolve(baseDir, cert), 'utf8');
    const keyPem = readFileSync(resolve(baseDir, key), 'utf8');
    const x509 = new X509Certificate(certPem);
    const names = (x509.subjectAltName ?? '')
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s.startsWith('DNS:'))
      .map((s) => s.slice(4).toLowerCase());
    return { context: createSecureContext({ cert: certPem, key: keyPem }), names };
  });
  const generated = await generate([{ name: 'commonName', value: 'portcullis.invalid' }], {
    keyType: 'ec',
    algorithm: 'sha256',
    extensions: [
      { name: 'basicConstraints', cA: false },
      { name: 'subjectAltName', altNames: [...new Set(['localhost', ...fallbackNames])].map((value) => ({ type: 2, value })) },
    ],
  } as never);
  const fallback = createSecureContext({ cert: generated.cert, key: generated.private });
  const match = (servername: string): SecureContext => {
    const name = servername.toLowerCase();
    for (const c of loaded) {
      for (const n of c.names) {
        if (n === name) return c.context;
        if (n.startsWith('*.') && name.endsWith(n.slice(1)) && name.indexOf('.') === name.length - n.length + 1) return c.context;
      }
    }
    return fallback;
  };
  return {
    serverOptions: {
      minVersion: 'TLSv1.2',
      SNICallback: (servername, cb) => cb(null, match(servername)),
      cert: generated.cert,
      key: generated.private,
    },
    names: loaded.flatMap((c) => c.names),
  };
}
