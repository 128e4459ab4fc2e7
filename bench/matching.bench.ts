// Topic matching benchmark (issue 10): 10 000 wildcard subscriptions, topics matched per second through the
// trie (createTopicMatcher, what the bus uses) beside the baseline from the same run: a naive loop testing every
// pattern with topics.ts matchTopic. Both must find the same subscribers (checked). Targets: ≥ 1 M topics/s
// and ≥ 100× the loop. Also: subscribe/unsubscribe cost, and a CEP rule engine's events/s on the seed rule.
import { randomUUID } from 'node:crypto';
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
let t0 = performance.now();
patterns.forEach((p, i) => uncached.add(p, i));
patterns.forEach((p, i) => matcher.add(p, i));
const addUs = ((performance.now() - t0) * 1000) / patterns.length;

// Both ways find the same subscribers for every topic.
for (const t of topics.slice(0, 200)) {
  const a = matcher.match(t).sort((x, y) => x - y);
  const b = patterns.flatMap((p, i) => (matchTopic(p, t) ? [i] : []));
  if (JSON.stringify(a) !== JSON.stringify(b)) throw new Error(`trie and loop disagree on ${t}`);
}

for (let i = 0; i < 3; i++) rate((t) => matcher.match(t).length + uncached.match(t).length, 200); // warm-up
const trie = rate((t) => matcher.match(t).length);
const cold = rate((t) => uncached.match(t).length);
const loop = rate((t) => {
  let n = 0;
  for (const p of patterns) if (matchTopic(p, t)) n++;
  return n;
});

t0 = performance.now();
patterns.forEach((p, i) => matcher.remove(p, i));
const removeUs = ((performance.now() - t0) * 1000) / patterns.length;

const fmt = (n: number) => Math.round(n).toLocaleString('en-US');
console.log(`topic matching, ${SUBSCRIPTIONS} wildcard subscriptions, ${TOPICS} distinct topics (≈${trie.matched.toFixed(1)} subscribers matched per topic):`);
console.log(`  matcher as the bus uses it (trie + topic cache) ${fmt(trie.perSec).padStart(12)} topics/s  ${(trie.perSec / loop.perSec).toFixed(0)}× the loop   targets ≥ 1,000,000 and ≥ 100×`);
console.log(`  trie alone, no cache (every topic new)         ${fmt(cold.perSec).padStart(12)} topics/s  ${(cold.perSec / loop.perSec).toFixed(0)}× the loop`);
console.log(`  baseline: naive loop over every pattern         ${fmt(loop.perSec).padStart(12)} topics/s`);
console.log(`  subscribe ${addUs.toFixed(2)} µs, unsubscribe ${removeUs.toFixed(2)} µs each`);

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
