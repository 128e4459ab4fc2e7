// Network grants (DESIGN.md §3, issue 7 §5). A grant names a host and optionally a port:
//   `api.example.com`        that host name, on any port (`api.example.com:*` says the same)
//   `api.example.com:8443`   that host name, on that port only
//   `127.0.0.1`, `[::1]:8080` an address literal;  `10.0.0.0/8:5432`, `[fd00::]/8`  a range of addresses
// A request is allowed when a grant matches the URL's host and port. Then the host name is resolved ONCE, every
// address is classified, and the connection goes to the checked address (DNS rebinding cannot swap it): an
// address outside public unicast — loopback, private, link-local (cloud metadata 169.254.169.254), unique-local,
// carrier-grade NAT (100.100.100.200), IPv4-mapped/NAT64/6to4 forms of those, multicast, reserved — also needs an
// address or range grant that covers it, for every extension, trusted or not. The classification is ipaddr.js's
// table of IANA special-purpose ranges (kept up to date upstream, with IPv4-mapped and embedded forms handled),
// not a hand-written list.
import ipaddr from 'ipaddr.js';
import { lookup } from 'node:dns/promises';

export interface NetworkGrant {
  /** As written in the manifest or host config. */
  text: string;
  /** A lower-case host name without a trailing dot, or undefined for an address grant. */
  name: string | undefined;
  /** An address range (a literal is a range of one). */
  range: [ipaddr.IPv4 | ipaddr.IPv6, number] | undefined;
  /** A port, or '*' for any (a grant that names none). */
  port: number | '*';
}

export interface ResolvedAddress {
  address: string;
  family: 4 | 6;
}

/** Resolves a host name to every address it has. Injected in tests to play a rebinding name server. */
export type Resolver = (hostname: string) => Promise<ResolvedAddress[]>;

export const systemResolver: Resolver = async (hostname) => {
  const found = await lookup(hostname, { all: true, verbatim: true });
  return found.map((a) => ({ address: a.address, family: a.family === 6 ? 6 : 4 }));
};

const GRANT = /^(?<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?:\/(?<bits>\d{1,3}))?(?::(?<port>\d{1,5}|\*))?$/;

/** Parses a network grant; undefined if it is not one of the forms above. */
export function parseNetworkGrant(text: string): NetworkGrant | undefined {
  const m = typeof text === 'string' ? GRANT.exec(text) : null;
  if (!m?.groups) return undefined;
  const { host = '', bits, port: portText } = m.groups;
  let port: NetworkGrant['port'] = '*';
  if (portText !== undefined && portText !== '*') {
    port = Number(portText);
    if (port < 1 || port > 65535) return undefined;
  }
  const bracketed = host.startsWith('[');
  const literal = bracketed ? host.slice(1, -1) : host;
  const isV6 = bracketed && ipaddr.IPv6.isValid(literal);
  const isV4 = !bracketed && ipaddr.IPv4.isValidFourPartDecimal(literal);
  if (bracketed && !isV6) return undefined;
  if (isV4 || isV6) {
    const parsed = ipaddr.parse(literal);
    const max = parsed.kind() === 'ipv4' ? 32 : 128;
    const prefix = bits === undefined ? max : Number(bits);
    if (prefix > max) return undefined;
    // `[::ffff:10.0.0.0]/104` is the IPv4 range 10.0.0.0/8: compare like with like.
    if (parsed.kind() === 'ipv6' && (parsed as ipaddr.IPv6).isIPv4MappedAddress()) return { text, name: undefined, range: [(parsed as ipaddr.IPv6).toIPv4Address(), Math.max(0, prefix - 96)], port };
    return { text, name: undefined, range: [parsed, prefix], port };
  }
  // A name whose last label is a number is an IPv4 address to a URL parser (`0x7f.1` is 127.0.0.1): not a name.
  const last = host.replace(/\.$/, '').split('.').at(-1) ?? '';
  if (bits !== undefined || !/^(?!-)[A-Za-z0-9-]{1,63}(?:\.(?!-)[A-Za-z0-9-]{1,63})*\.?$/.test(host) || /^(?:0x[0-9a-f]*|\d+)$/i.test(last)) return undefined;
  return { text, name: host.toLowerCase().replace(/\.$/, ''), range: undefined, port };
}

function portMatches(grant: NetworkGrant, port: number): boolean {
  return grant.port === '*' || grant.port === port;
}

/** The address a URL host names, if it is an IP literal (WHATWG URLs keep IPv6 in brackets). */
export function literalAddress(hostname: string): ipaddr.IPv4 | ipaddr.IPv6 | undefined {
  const bare = hostname.startsWith('[') ? hostname.slice(1, -1) : hostname;
  return ipaddr.isValid(bare) ? ipaddr.process(bare) : undefined;
}

/** `addr` is already processed (IPv4-mapped IPv6 turned into IPv4). */
function inRange(addr: ipaddr.IPv4 | ipaddr.IPv6, range: [ipaddr.IPv4 | ipaddr.IPv6, number]): boolean {
  return addr.kind() === range[0].kind() && addr.match(range);
}

/**
 * Where an address is special: the ipaddr.js range name (`loopback`, `private`, `linkLocal`, …), or undefined for
 * public unicast. IPv4-mapped IPv6 is classified as the IPv4 address it carries.
 */
export function specialRange(address: string): string | undefined {
  const addr = ipaddr.process(address);
  const range = addr.range();
  return range === 'unicast' ? undefined : range;
}

export interface NetworkCheck {
  ok: boolean;
  /** Why not, for the denial message. */
  why?: string;
  /** The grant the extension would need. */
  need?: string;
}

export class NetworkPolicy {
  readonly grants: NetworkGrant[];

  constructor(grants: readonly string[]) {
    // Grants that do not parse were refused by the manifest schema; here they simply never match.
    this.grants = grants.map(parseNetworkGrant).filter((g): g is NetworkGrant => g !== undefined);
  }

  /** Step 1, before any DNS or connection: does a grant name this URL's host and port? */
  checkUrl(url: URL): NetworkCheck {
    const port = url.port === '' ? (url.protocol === 'https:' ? 443 : 80) : Number(url.port);
    const defaultPort = url.protocol === 'https:' ? 443 : 80;
    const literal = literalAddress(url.hostname);
    const name = url.hostname.toLowerCase().replace(/\.$/, '');
    const hostLabel = literal ? (literal.kind() === 'ipv6' ? `[${literal.toString()}]` : literal.toString()) : name;
    const matches = this.grants.some((g) => portMatches(g, port) && (literal ? g.range !== undefined && inRange(literal, g.range) : g.name === name));
    if (matches) return { ok: true };
    return { ok: false, why: `fetch from ${hostLabel}${port === defaultPort ? '' : `:${port}`}`, need: `${hostLabel}:${port}` };
  }

  /** Step 2, for each address the host resolved to: public unicast passes; a special address needs a grant covering it. */
  checkAddress(address: string, port: number): NetworkCheck {
    const range = specialRange(address);
    if (range === undefined) return { ok: true };
    const addr = ipaddr.process(address);
    if (this.grants.some((g) => g.range !== undefined && portMatches(g, port) && inRange(addr, g.range))) return { ok: true };
    const label = addr.kind() === 'ipv6' ? `[${addr.toString()}]` : addr.toString();
    return { ok: false, why: `a connection to ${label} (a ${range} address)`, need: `${label}:${port}` };
  }
}
