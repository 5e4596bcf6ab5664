// cookieRemover: Portcullis's own cookies out of the Cookie header sent upstream, in one pass.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cookieRemover } from '../../src/http/cookies.js';

/** The definition: split on `;`, trim, drop empty parts and the named ones, join with `; `. */
function bySplitting(header: string, names: ReadonlySet<string>): string | undefined {
  const kept = header
    .split(';')
    .map((p) => p.trim())
    .filter((p) => p !== '' && !names.has(p.includes('=') ? p.slice(0, p.indexOf('=')) : p));
  return kept.length > 0 ? kept.join('; ') : undefined;
}

const NAMES = new Set(['authentik_proxy_ab12cd34', 'authentik_proxy_ab12cd34_flow', 'authentik_proxy_99ff00aa']);
const remove = cookieRemover(NAMES);

test('drops the named cookies, keeps the others in order, undefined when nothing is left', () => {
  assert.equal(remove('theme=dark; authentik_proxy_ab12cd34=abc; authentik_proxy_ab12cd34_flow=def; _ga=GA1.2.3; lang=en'), 'theme=dark; _ga=GA1.2.3; lang=en');
  assert.equal(remove('authentik_proxy_ab12cd34=abc;authentik_proxy_99ff00aa=x'), undefined);
  assert.equal(remove('xauthentik_proxy_ab12cd34=1; authentik_proxy_ab12cd34x=2'), 'xauthentik_proxy_ab12cd34=1; authentik_proxy_ab12cd34x=2', 'names that only contain ours are the app\'s');
  assert.equal(remove(' \tauthentik_proxy_ab12cd34=1 ;\u00a0authentik_proxy_99ff00aa=2'), undefined, 'whitespace around a part, as trim() sees it, does not hide a name');
  assert.equal(remove('authentik_proxy_ab12cd34'), undefined, 'a part without "=" is named by all of it');
  assert.equal(remove('a=1;;  ; b=2 '), 'a=1; b=2');
  assert.equal(cookieRemover(new Set())('a=1; authentik_proxy_ab12cd34=2'), 'a=1; authentik_proxy_ab12cd34=2');
});

test('the same answer as splitting and trimming, on many generated headers', () => {
  const pieces = ['authentik_proxy_ab12cd34', 'authentik_proxy_ab12cd34_flow', 'authentik_proxy_99ff00aa', 'authentik_proxy_', '=', ';', ' ', '\t', '\u00a0', '\u3000', 'x', 'a=b', '==', ';;'];
  let seed = 7;
  const next = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
  for (let i = 0; i < 20_000; i++) {
    let header = '';
    for (let j = Math.floor(next() * 9); j > 0; j--) header += pieces[Math.floor(next() * pieces.length)];
    assert.equal(remove(header), bySplitting(header, NAMES), JSON.stringify(header));
  }
});
