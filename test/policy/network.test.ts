// Network grants on their own: parsing, and the classification of addresses that need an address grant
// (no traffic: these are pure checks).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { NetworkPolicy, parseNetworkGrant, specialRange } from '../../src/policy/index.ts';

describe('address classification', () => {
  it('every address outside public unicast is special, in every spelling', () => {
    const special: Array<[string, string]> = [
      ['127.0.0.1', 'loopback'],
      ['127.255.0.9', 'loopback'],
      ['10.0.0.1', 'private'],
      ['172.16.5.4', 'private'],
      ['192.168.1.1', 'private'],
      ['169.254.169.254', 'linkLocal'], // AWS, GCP, Azure metadata
      ['100.100.100.200', 'carrierGradeNat'], // Alibaba metadata
      ['0.0.0.0', 'unspecified'],
      ['224.0.0.1', 'multicast'],
      ['255.255.255.255', 'broadcast'],
      ['::1', 'loopback'],
      ['::', 'unspecified'],
      ['fe80::1', 'linkLocal'],
      ['fd00:ec2::254', 'uniqueLocal'], // AWS metadata over IPv6
      ['::ffff:10.0.0.1', 'private'], // IPv4-mapped: the IPv4 it carries
      ['::ffff:169.254.169.254', 'linkLocal'],
      ['64:ff9b::a9fe:a9fe', 'rfc6052'], // NAT64 of 169.254.169.254
      ['2002:a9fe:a9fe::', '6to4'],
    ];
    for (const [address, range] of special) assert.equal(specialRange(address), range, address);
    for (const address of ['8.8.8.8', '1.1.1.1', '2606:4700:4700::1111', '93.184.216.34']) assert.equal(specialRange(address), undefined, address);
  });
});

describe('grants', () => {
  it('parses names, ports, address literals and ranges; refuses the rest', () => {
    assert.deepEqual(parseNetworkGrant('API.example.com.')?.name, 'api.example.com');
    assert.equal(parseNetworkGrant('api.example.com')?.port, '*', 'a grant that names no port allows any');
    assert.equal(parseNetworkGrant('api.example.com:8443')?.port, 8443);
    assert.equal(parseNetworkGrant('api.example.com:*')?.port, '*');
    assert.equal(parseNetworkGrant('10.0.0.0/8:5432')?.range?.[1], 8);
    assert.equal(parseNetworkGrant('[::1]:8080')?.range?.[0].toString(), '::1');
    for (const bad of ['', 'a b', 'host:0', 'host:70000', '10.0.0.0/33', '[nope]', 'example.com/8', '0x7f.1', '1.2.3', 'http://x']) assert.equal(parseNetworkGrant(bad), undefined, bad);
  });

  it('a range grant covers its addresses; a name grant covers no special address', () => {
    const policy = new NetworkPolicy(['internal.test:443', '10.0.0.0/8:443', '[fd00::]/8']);
    assert.equal(policy.checkAddress('10.20.30.40', 443).ok, true);
    assert.equal(policy.checkAddress('::ffff:10.20.30.40', 443).ok, true);
    assert.equal(policy.checkAddress('10.20.30.40', 8080).ok, false, 'the range grant names port 443');
    assert.equal(policy.checkAddress('fd00:ec2::254', 80).ok, true);
    assert.equal(policy.checkAddress('192.168.0.1', 443).ok, false);
    assert.equal(policy.checkAddress('8.8.8.8', 443).ok, true, 'public unicast needs only the name grant');
    assert.equal(policy.checkUrl(new URL('https://internal.test/x')).ok, true);
    assert.equal(policy.checkUrl(new URL('https://internal.test:444/x')).ok, false);
    assert.equal(policy.checkUrl(new URL('https://other.test/x')).ok, false);
  });
});
