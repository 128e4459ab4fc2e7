// Topic matching benchmark (issue 10): 10 000 wildcard subscriptions, topics matched per second through the
// pattern trie (createTopicMatcher with its topic cache off: the matcher itself, every topic looked up) and as
// the bus uses it (with the cache), beside the baselines from the same run: qlobber's QlobberDedup (the matcher
// this trie replaced) and a naive loop testing every pattern with topics.ts matchTopic. All must find the same
// subscribers (checked). Targets: ≥ 1 M topics/s and ≥ 100× the loop, for the trie without cache. Rounds
// alternate between the contenders; the median of 3 is printed with the spread. Also: subscribe/unsubscribe
// cost, and a CEP rule engine's events/s on the seed rule.
import { randomUUID } from 'node:crypto';
import { QlobberDedup } from 'qlobber';
import { createTopicMatcher, matchTopic, compileRules, RuleEngine } from '../src/events/index.ts';
import type { Json, PlinthEvent } from '../src/sdk/index.ts';

const SUBSCRIPTIONS = Number(process.env.BENCH_SUBSCRIPTIONS ?? 10_000);
const TOPICS = 2_000;

// Deterministic pseudo-random numbers (mulberry32), so each run measures the same workload.
let seed = 42;
const rand = (n: number) => {
  seed = (seed + 0x6d2b79f5) | 0;
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
  return Math.floor((((t ^ (t >>> 14)) >>> 0) / 4294967296) * n);
};

const SERVICES = 2000;
const ENTITIES = ['order', 'user', 'payment', 'invoice', 'shipment'];
const VERBS = ['created', 'updated', 'deleted', 'failed', 'completed'];

// Wildcard patterns as services subscribe: mostly within one service's topics, `*` and `#` in various places,
// and a few broad ones (`*.order.failed`, `#.failed`). Each topic reaches a handful of subscribers.
const patterns: string[] = [];
for (let i = 0; i < SUBSCRIPTIONS; i++) {
  const svc = `svc${rand(SERVICES)}`;
  const ent = ENTITIES[rand(ENTITIES.length)]!;
  const verb = VERBS[rand(VERBS.length)]!;
  const shapes = [`${svc}.${ent}.*`, `${svc}.#`, `${svc}.*.${verb}`, `${svc}.${ent}.#.${verb}`, `${svc}.#.${verb}`, `*.${ent}.${verb}.${svc}`];
  patterns.push(rand(500) === 0 ? (rand(2) ? `*.${ent}.${verb}` : `#.${verb}`) : shapes[rand(shapes.length)]!);
}
const topics: string[] = [];
for (let i = 0; i < TOPICS; i++) topics.push(`svc${rand(SERVICES)}.${ENTITIES[rand(ENTITIES.length)]}.${rand(4) === 0 ? 'sub.' : ''}${VERBS[rand(VERBS.length)]}`);

function rate(fn: (topic: string) => number, minMs = 1000): { perSec: number; matched: number } {
  let n = 0;
  let matched = 0;
  const start = performance.now();
  while (performance.now() - start < minMs) {
    for (const t of topics) matched += fn(t);
    n += topics.length;
  }
  return { perSec: (n / (performance.now() - start)) * 1000, matched: matched / n };
}

const matcher = createTopicMatcher<number>();
const uncached = createTopicMatcher<number>({ cacheSize: 0 });
const qlobber = new QlobberDedup<number>({ separator: '.', wildcard_one: '*', wildcard_some: '#' });
let t0 = performance.now();
patterns.forEach((p, i) => uncached.add(p, i));
const addUs = ((performance.now() - t0) * 1000) / patterns.length;
patterns.forEach((p, i) => matcher.add(p, i));
patterns.forEach((p, i) => qlobber.add(p, i));

// Every way finds the same subscribers for every topic.
for (const t of topics.slice(0, 200)) {
  const b = JSON.stringify(patterns.flatMap((p, i) => (matchTopic(p, t) ? [i] : [])));
  for (const [name, found] of [['cached', matcher.match(t)], ['trie', uncached.match(t)], ['qlobber', [...qlobber.match(t)]]] as const) {
    if (JSON.stringify([...found].sort((x, y) => x - y)) !== b) throw new Error(`${name} and the loop disagree on ${t}`);
  }
}

const contenders: Record<string, (t: string) => number> = {
  trie: (t) => uncached.match(t).length,
  cached: (t) => matcher.match(t).length,
  qlobber: (t) => qlobber.match(t).size,
};
for (let i = 0; i < 3; i++) for (const fn of Object.values(contenders)) rate(fn, 200); // warm-up
const runs: Record<string, number[]> = { trie: [], cached: [], qlobber: [] };
let matchedPerTopic = 0;
for (let round = 0; round < 3; round++) {
  for (const [name, fn] of Object.entries(contenders)) {
    const r = rate(fn, 700);
    runs[name]!.push(r.perSec);
    matchedPerTopic = r.matched;
  }
}
const loop = rate((t) => {
  let n = 0;
  for (const p of patterns) if (matchTopic(p, t)) n++;
  return n;
});

t0 = performance.now();
patterns.forEach((p, i) => uncached.remove(p, i));
const removeUs = ((performance.now() - t0) * 1000) / patterns.length;

const fmt = (n: number) => Math.round(n).toLocaleString('en-US');
const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const line = (label: string, xs: number[], extra = '') =>
  `  ${label.padEnd(54)} ${fmt(med(xs)).padStart(12)} topics/s (${fmt(Math.min(...xs))}–${fmt(Math.max(...xs))})  ${(med(xs) / loop.perSec).toFixed(0)}× the loop${extra}`;
const trie = med(runs.trie!);
console.log(`topic matching, ${SUBSCRIPTIONS} wildcard subscriptions, ${TOPICS} distinct topics (≈${matchedPerTopic.toFixed(1)} subscribers matched per topic), median of 3 (min–max):`);
console.log(line('pattern trie alone, no cache (every topic looked up)', runs.trie!, `   targets ≥ 1,000,000 and ≥ 100× → ${trie >= 1_000_000 && trie / loop.perSec >= 100 ? 'met' : 'NOT met'}`));
console.log(line('as the bus uses it (trie + cache of 4096 recent topics)', runs.cached!));
console.log(line('baseline: qlobber QlobberDedup (the matcher before)', runs.qlobber!, `   trie/qlobber ${(trie / med(runs.qlobber!)).toFixed(1)}×`));
console.log(`  ${'baseline: naive loop over every pattern (matchTopic)'.padEnd(54)} ${fmt(loop.perSec).padStart(12)} topics/s`);
console.log(`  subscribe ${addUs.toFixed(2)} µs, unsubscribe ${removeUs.toFixed(2)} µs each (trie)`);

// The seed CEP rule over a stream of many users' events.
const engine = new RuleEngine({
  rules: compileRules(
    [{ id: 'exfiltration', type: 'sequence', key: 'payload.userId', emit: 'security.exfiltration.suspected', steps: [
      { topic: 'auth.login' },
      { topic: 'data.access', where: 'payload.classification == "confidential"', within: '5m' },
      { topic: 'data.export', where: 'payload.bytes > 10485760', within: '10m' },
    ] }],
    { settings: { maxKeys: 10_000, maxEventsPerKey: 10_000, maxEvents: 100_000 } },
  ),
  publish: async () => {},
  maxHops: 8,
});
const stream: PlinthEvent[] = [];
for (let i = 0; i < 30_000; i++) {
  const userId = `u${rand(5000)}`;
  const k = rand(3);
  const topic = ['auth.login', 'data.access', 'data.export'][k]!;
  const payload: Json = k === 0 ? { userId } : k === 1 ? { userId, classification: rand(2) ? 'confidential' : 'public' } : { userId, bytes: rand(20_000_000) };
  stream.push({ id: randomUUID(), topic, payload, time: new Date().toISOString() });
}
t0 = performance.now();
for (const e of stream) await engine.handle(e);
const cepPerSec = (stream.length / (performance.now() - t0)) * 1000;
console.log(`CEP sequence rule (seed exfiltration, 5 000 users): ${fmt(cepPerSec)} events/s, ${engine.stats()[0]!.matches} matches`);
