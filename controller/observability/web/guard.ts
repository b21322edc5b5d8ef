/**
 * PURE: what the dashboard's server checks before it routes a request. The Host a loopback
 * dashboard without a token answers to (DNS rebinding: a page of attacker.example whose name now
 * resolves to 127.0.0.1 sends `Host: attacker.example:PORT`, and is answered 421); the request
 * target as a URL (400 when it is not one); percent-escapes that do not decode (400, never 500);
 * and a redirect's Location that stays on this site (never `//evil.com/...`).
 */
import { isIP } from 'node:net';

/** A Host header's name (lowercase; an IPv6 one in brackets) and port, or undefined when malformed. */
export function parseHostHeader(value: string | undefined): { name: string; port?: number } | undefined {
  const m = /^(\[[0-9a-f:.]+\]|[^\s:[\]/@]+)(?::(\d{1,5}))?$/i.exec(value ?? '');
  if (!m) return undefined;
  return { name: m[1].toLowerCase(), ...(m[2] !== undefined ? { port: Number(m[2]) } : {}) };
}

/**
 * Whether `Host: value` names this loopback server: localhost, 127.x.y.z, [::1] or the address it
 * bound, with its port (no port only when that is 80). Any other name is someone else's.
 */
export function loopbackHostAllowed(value: string | undefined, bound: { host: string; port: number }): boolean {
  const h = parseHostHeader(value);
  if (!h) return false;
  if ((h.port ?? 80) !== bound.port) return false;
  const boundName = (bound.host.includes(':') ? `[${bound.host}]` : bound.host).toLowerCase();
  if (h.name === 'localhost' || h.name === '[::1]' || h.name === boundName) return true;
  return isIP(h.name) === 4 && h.name.startsWith('127.');
}

/** The request target (origin-form, `/path?query`) as a URL; undefined when it is not one. */
export function requestUrl(target: string | undefined): URL | undefined {
  if (!target?.startsWith('/')) return undefined;
  try {
    // Prefixed, never resolved against a base: `//evil.com/x` stays a path here.
    return new URL(`http://ugro${target}`);
  } catch {
    return undefined;
  }
}

/** decodeURIComponent that answers undefined for a malformed escape (`%zz`, `%E0%A4%A`). */
export function decodePart(s: string): string | undefined {
  try {
    return decodeURIComponent(s);
  } catch {
    return undefined;
  }
}

/**
 * A Location for a redirect to this request's own page: always one leading slash, so that a path
 * such as `/.//evil.com/x` (which URL parsing makes `//evil.com/x`) cannot become protocol-relative.
 */
export function localLocation(url: URL): string {
  return `/${url.pathname.replace(/^[/\\]+/, '')}${url.search}`;
}
