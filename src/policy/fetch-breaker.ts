// A circuit breaker per extension and origin around ctx.fetch (host config `policy.fetchBreaker`). An extension that
// keeps calling an origin that is down (refused, reset, unresolvable, timing out) gets PLINTH_ERR_FETCH_CIRCUIT_OPEN
// at once instead of holding one of its `quotas.fetch.maxConcurrent` slots for `quotas.fetch.timeoutMs` on every try;
// after `recoveryTimeoutMs` one request is let through and its outcome closes or re-opens the breaker.
//
// Why opossum here and not for the extensions' own breaker (src/resilience/breaker.ts): this one wraps exactly what
// opossum is made for — one async function, where every rejection is the origin's failure — so its rolling window,
// volume threshold and single half-open probe say what we mean. What is not the origin's fault (a refused grant, a
// response over its size quota) is decided before or after the wrapped request and never reaches opossum, whose
// `errorFilter` would count it as a success. The window's buckets rotate on one timer shared by all breakers
// (opossum's `rotateBucketController`), cleared by close(); opossum's own reset timers are unref'd.
import { EventEmitter } from 'node:events';
import hostConfigSchema from '../../schemas/host-config.schema.json' with { type: 'json' };
import CircuitBreaker from 'opossum';
import { PlinthError } from '../errors.ts';
import type { FetchBreakerSettings } from '../config/index.ts';

export type { FetchBreakerSettings } from '../config/index.ts';


type SchemaNode = { properties?: Record<string, SchemaNode>; default?: unknown };

/** The defaults the host-config schema declares (one source with the config loader). */
export const DEFAULT_FETCH_BREAKER: FetchBreakerSettings = Object.fromEntries(
  Object.entries((hostConfigSchema as unknown as SchemaNode).properties?.policy?.properties?.fetchBreaker?.properties ?? {}).map(([k, v]) => [k, v.default]),
) as unknown as FetchBreakerSettings;

const BUCKETS = 10;
/** Breakers kept at most; beyond it the longest-unused closed one is dropped (grants may name wildcard hosts). */
const MAX_BREAKERS = 1024;

type Request = () => Promise<unknown>;

export class FetchBreakers {
  readonly settings: FetchBreakerSettings;
  readonly #breakers = new Map<string, CircuitBreaker<[Request], unknown>>();
  readonly #rotate = new EventEmitter().setMaxListeners(0);
  #timer: NodeJS.Timeout | undefined;

  constructor(settings: Partial<FetchBreakerSettings> = {}) {
    this.settings = { ...DEFAULT_FETCH_BREAKER, ...settings };
  }

  /** Runs `request` to `origin` for `extension` through their breaker; its rejections count as the origin failing. */
  async run<T>(extension: string, origin: string, request: () => Promise<T>): Promise<T> {
    if (!this.settings.enabled) return request();
    const breaker = this.#breaker(`${extension} ${origin}`);
    try {
      return (await breaker.fire(request)) as T;
    } catch (err) {
      if (CircuitBreaker.isOurError(err as Error) && (err as { code?: string }).code === 'EOPENBREAKER') {
        const { failures, fires } = breaker.stats;
        throw new PlinthError('PLINTH_ERR_FETCH_CIRCUIT_OPEN', `extension ${extension}: requests to ${origin} are failing (${failures} of the last ${fires}); not trying it again for up to ${this.settings.recoveryTimeoutMs} ms`, {
          extension,
          hint: `the origin is down or unreachable; the breaker lets one request through after policy.fetchBreaker.recoveryTimeoutMs (set policy.fetchBreaker.enabled: false to turn it off)`,
        });
      }
      throw err;
    }
  }

  /** The state of an extension's breaker for an origin, if one exists: for tests and status. */
  state(extension: string, origin: string): 'closed' | 'open' | 'half-open' | undefined {
    const b = this.#breakers.get(`${extension} ${origin}`);
    if (!b) return undefined;
    return b.opened ? 'open' : b.halfOpen ? 'half-open' : 'closed';
  }

  /** Forgets an extension's breakers (it was removed). */
  forget(extension: string): void {
    for (const [key, b] of this.#breakers) if (key.startsWith(`${extension} `)) this.#drop(key, b);
  }

  close(): void {
    for (const [key, b] of this.#breakers) this.#drop(key, b);
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  #breaker(key: string): CircuitBreaker<[Request], unknown> {
    let b = this.#breakers.get(key);
    if (b) {
      // Most recently used last: eviction takes from the front.
      this.#breakers.delete(key);
      this.#breakers.set(key, b);
      return b;
    }
    if (this.#breakers.size >= MAX_BREAKERS) {
      for (const [k, old] of this.#breakers) {
        if (!old.opened && !old.halfOpen) {
          this.#drop(k, old);
          break;
        }
      }
    }
    b = new CircuitBreaker((request: Request) => request(), {
      // ctx.fetch has its own deadline (quotas.fetch.timeoutMs); its timeout error is a rejection like any other.
      timeout: false,
      errorThresholdPercentage: this.settings.failureRateThreshold,
      volumeThreshold: this.settings.minimumCalls,
      resetTimeout: this.settings.recoveryTimeoutMs,
      rollingCountTimeout: this.settings.windowMs,
      rollingCountBuckets: BUCKETS,
      rollingPercentilesEnabled: false,
      enableSnapshots: false,
      rotateBucketController: this.#rotate,
    });
    this.#breakers.set(key, b);
    if (!this.#timer) {
      this.#timer = setInterval(() => this.#rotate.emit('rotate'), Math.max(1, Math.floor(this.settings.windowMs / BUCKETS)));
      this.#timer.unref();
    }
    return b;
  }

  #drop(key: string, b: CircuitBreaker<[Request], unknown>): void {
    b.shutdown();
    this.#breakers.delete(key);
  }
}
