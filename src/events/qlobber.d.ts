// The part of qlobber's API bench/matching.bench.ts uses as its baseline (the package ships no types).
declare module 'qlobber' {
  export interface QlobberOptions {
    separator?: string;
    wildcard_one?: string;
    wildcard_some?: string;
    max_words?: number;
    max_wildcard_somes?: number;
    cache_adds?: boolean;
  }
  export class QlobberDedup<T> {
    constructor(options?: QlobberOptions);
    add(topic: string, value: T): this;
    remove(topic: string, value?: T): this;
    match(topic: string): Set<T>;
    test(topic: string, value: T): boolean;
    clear(): this;
  }
}
