// Post-login redirect targets (`rd`): only our own host (or, in forward_domain mode, the
// cookie domain) — everything else falls back to the external host (null here).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { validateRedirect, type RedirectPolicy } from '../../src/http/redirects.js';

const single: RedirectPolicy = { externalBase: 'https://app.example.com', externalHost: 'app.example.com', cookieDomain: null };
const withPort: RedirectPolicy = { externalBase: 'http://app.localtest:8080', externalHost: 'app.localtest:8080', cookieDomain: null };
const subPath: RedirectPolicy = { externalBase: 'https://x.test/sub', externalHost: 'x.test', cookieDomain: null };
const domain: RedirectPolicy = { externalBase: 'https://auth.example.com', externalHost: 'auth.example.com', cookieDomain: 'example.com' };

function accepted(rd: string, policy: RedirectPolicy, expected: string): void {
  assert.equal(validateRedirect(rd, policy), expected, `${JSON.stringify(rd)} should be accepted`);
}
function refused(rd: string | null | undefined, policy: RedirectPolicy): void {
  assert.equal(validateRedirect(rd, policy), null, `${JSON.stringify(rd)} should be refused`);
}

test('absolute URLs on the external host are accepted, query and fragment kept', () => {
  accepted('https://app.example.com/', single, 'https://app.example.com/');
  accepted('https://app.example.com/reports?month=11&x=%2F', single, 'https://app.example.com/reports?month=11&x=%2F');
  accepted('https://app.example.com/x?y=1#frag', single, 'https://app.example.com/x?y=1#frag');
  accepted('https://app.example.com', single, 'https://app.example.com/');
  // Default port spelled out: the same host.
  accepted('https://app.example.com:443/x', single, 'https://app.example.com/x');
});

test('relative paths are resolved on the external host, query kept', () => {
  accepted('/reports?month=11', single, 'https://app.example.com/reports?month=11');
  accepted('/', single, 'https://app.example.com/');
  accepted('/a/../b?c=%2F..', single, 'https://app.example.com/b?c=%2F..');
  accepted('/a', withPort, 'http://app.localtest:8080/a');
  // An absolute path replaces external_host's own path.
  accepted('/y', subPath, 'https://x.test/y');
  accepted('https://x.test/other', subPath, 'https://x.test/other');
});

test('relative paths that stay on our host are accepted even when they look odd', () => {
  // These do not leave the external host: the browser asks *our* server for an odd path,
  // which the normalizer then answers itself (400 for %09). Not an open redirect.
  accepted('/%09/evil.com', single, 'https://app.example.com/%09/evil.com');
  accepted('/%2F/evil.com', single, 'https://app.example.com/%2F/evil.com');
  accepted('/%5Cevil.com', single, 'https://app.example.com/%5Cevil.com');
  accepted('/.evil.com', single, 'https://app.example.com/.evil.com');
});

test('protocol-relative and backslash tricks are refused', () => {
  for (const rd of ['//evil.com', '//evil.com/path', '/\\evil.com', '/\\/evil.com', '\\\\evil.com', '\\/evil.com', '///evil.com', 'https:\\\\evil.com', 'https://app.example.com\\@evil.com']) {
    refused(rd, single);
  }
});

test('other hosts, userinfo and look-alike hosts are refused', () => {
  for (const rd of [
    'https://evil.com',
    'https://evil.com/',
    'https://app.example.com@evil.com',
    'https://app.example.com:x@evil.com/',
    'https://evil.com@app.example.com/',
    'https://user:pass@app.example.com/',
    'https://app.example.com.evil.com/',
    'https://evilapp.example.com/',
    'https://a.app.example.com/',
    'https://app.example.com%2F@evil.com',
    'https://app.example.com%40evil.com/',
    'https://[::1]/',
    'https://127.0.0.1/',
  ]) {
    refused(rd, single);
  }
});

test('schemes other than http(s), and scheme-relative spellings, are refused', () => {
  for (const rd of ['javascript:alert(1)', 'JavaScript:alert(1)', 'data:text/html,hi', 'ftp://app.example.com/', 'https:evil.com', 'https:/evil.com', 'https:app.example.com/x', 'file:///etc/passwd', 'x', '?a=1', '#a', 'app.example.com/x']) {
    refused(rd, single);
  }
});

test('whitespace, control characters and non-ASCII are refused anywhere', () => {
  for (const rd of [' https://app.example.com/', 'https://app.example.com/ ', 'https://app.example.com/\t', '\thttps://app.example.com/', '/x\ny', '/x\ry', '/x\u0000', '/x\u007f', '/a b', 'https://app.example.com/é', '/\u2028x', 'java\tscript:alert(1)']) {
    refused(rd, single);
  }
});

test('empty, missing and over-long values are refused', () => {
  refused('', single);
  refused(undefined, single);
  refused(null, single);
  refused('/' + 'a'.repeat(8192), single);
  accepted('/' + 'a'.repeat(8000), single, 'https://app.example.com/' + 'a'.repeat(8000));
});

test('scheme and host are case-insensitive', () => {
  accepted('HTTP://APP.LOCALTEST:8080/x', withPort, 'http://app.localtest:8080/x');
  accepted('HTTPS://APP.EXAMPLE.COM/x', single, 'https://app.example.com/x');
  accepted('https://App.Example.Com/Reports', single, 'https://app.example.com/Reports');
});

test('behind an https external host, plain-http targets are refused (no downgrade)', () => {
  refused('http://app.example.com/x', single);
  refused('http://a.example.com/x', domain);
  refused('http://example.com/', domain);
  accepted('https://a.example.com/x', domain, 'https://a.example.com/x');
});

test('the port must match the external host', () => {
  refused('https://app.example.com:8443/x', single);
  refused('http://app.localtest/a', withPort);
  refused('http://app.localtest:9090/a', withPort);
  refused('http://app.localtest:80/a', withPort);
  accepted('http://app.localtest:8080/a?b=c', withPort, 'http://app.localtest:8080/a?b=c');
});

test('forward_domain: the cookie domain and its subdomains are accepted, on a dot boundary', () => {
  accepted('https://a.example.com/p?q=1', domain, 'https://a.example.com/p?q=1');
  accepted('https://a.b.example.com:8443/', domain, 'https://a.b.example.com:8443/');
  accepted('https://example.com/', domain, 'https://example.com/');
  accepted('https://A.EXAMPLE.COM/', domain, 'https://a.example.com/');
  accepted('/p', domain, 'https://auth.example.com/p');
  refused('https://evilexample.com/', domain);
  refused('https://example.com.evil.com/', domain);
  refused('https://a.example.community/', domain);
  refused('https://a.example.com@evil.com/', domain);
  refused('//a.example.com/', domain);
  refused('javascript://a.example.com/%0Aalert(1)', domain);
});

test('without a cookie domain only the external host is accepted', () => {
  const emptyDomain: RedirectPolicy = { ...single, cookieDomain: '' };
  for (const policy of [single, emptyDomain]) {
    accepted('https://app.example.com/x', policy, 'https://app.example.com/x');
    refused('https://a.example.com/', policy);
    refused('https://example.com/', policy);
    refused('https://evil.com/', policy);
  }
});
