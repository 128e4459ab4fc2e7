// The host's resource budget (DESIGN.md §4, seed U43 ResourceManager): memory and concurrency that started
// extensions reserve from their declared limits. An extension that does not fit is not started.
import { PlinthError } from '../errors.ts';

export interface Reservation {
  memoryMb: number;
  concurrency: number;
}

export class Budget {
  readonly #total: Reservation;
  readonly #held = new Map<string, Reservation>();

  constructor(total: Reservation) {
    this.#total = total;
  }

  get used(): Reservation {
    let memoryMb = 0;
    let concurrency = 0;
    for (const r of this.#held.values()) {
      memoryMb += r.memoryMb;
      concurrency += r.concurrency;
    }
    return { memoryMb, concurrency };
  }

  get total(): Reservation {
    return { ...this.#total };
  }

  /** Reserves `need` under `key` (an extension instance); throws PLINTH_ERR_BUDGET_EXCEEDED if it does not fit. */
  reserve(key: string, extension: string, need: Reservation): void {
    const used = this.used;
    const over: string[] = [];
    if (used.memoryMb + need.memoryMb > this.#total.memoryMb) over.push(`memory: needs ${need.memoryMb} MB, ${this.#total.memoryMb - used.memoryMb} MB of ${this.#total.memoryMb} MB left`);
    if (used.concurrency + need.concurrency > this.#total.concurrency) over.push(`concurrency: needs ${need.concurrency}, ${this.#total.concurrency - used.concurrency} of ${this.#total.concurrency} left`);
    if (over.length > 0) {
      throw new PlinthError('PLINTH_ERR_BUDGET_EXCEEDED', `extension ${extension} was not started: it would exceed the host budget (${over.join('; ')})`, {
        extension,
        hint: 'raise budget.memoryMb / budget.concurrency in the host config, or lower the extension\'s limits',
      });
    }
    this.#held.set(key, need);
  }

  release(key: string): void {
    this.#held.delete(key);
  }
}
