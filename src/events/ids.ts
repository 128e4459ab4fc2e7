// Event ids: UUID version 7 (RFC 9562 §5.7) — 48 bits of milliseconds, then 74 random bits. Time-ordered ids keep
// the journal's id index append-only: random v4 ids land on a random index page each, so one group commit of a
// thousand events dirtied about a thousand pages (halving durable throughput, issue 10 bench).
import { randomFillSync } from 'node:crypto';

const POOL = 16 * 256;
const pool = Buffer.alloc(POOL);
let at = POOL;
const HEX: string[] = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));
/** The last id's millisecond and its sequence: ids made within one millisecond still sort in creation order. */
let lastMs = -1;
let seq = 0;

/** A new UUIDv7 for the time `ms` (the bus's clock). */
export function eventId(ms: number): string {
  if (at + 10 > POOL) {
    randomFillSync(pool);
    at = 0;
  }
  let t = Math.max(0, Math.floor(ms));
  // 12-bit counter in rand_a (RFC 9562 §6.2 method 1): monotonic within a millisecond; on overflow borrow the next ms.
  if (t <= lastMs) {
    t = lastMs;
    if (++seq > 0xfff) {
      t = ++lastMs;
      seq = 0;
    }
  } else {
    seq = pool[at]! & 0x07; // a small random start leaves room to count
    lastMs = t;
  }
  const hi = Math.floor(t / 0x1000000); // top 24 bits of the 48-bit time
  const lo = t % 0x1000000;
  const p = pool;
  const i = at;
  at += 10;
  return (
    HEX[(hi >>> 16) & 0xff]! + HEX[(hi >>> 8) & 0xff]! + HEX[hi & 0xff]! + HEX[(lo >>> 16) & 0xff]! + '-' +
    HEX[(lo >>> 8) & 0xff]! + HEX[lo & 0xff]! + '-' +
    HEX[0x70 | (seq >>> 8)]! + HEX[seq & 0xff]! + '-' +
    HEX[0x80 | (p[i + 2]! & 0x3f)]! + HEX[p[i + 3]!]! + '-' +
    HEX[p[i + 4]!]! + HEX[p[i + 5]!]! + HEX[p[i + 6]!]! + HEX[p[i + 7]!]! + HEX[p[i + 8]!]! + HEX[p[i + 9]!]!
  );
}
