// What extension authors import (DESIGN.md §2). `defineExtension` only adds types: a module whose default
// export is a plain object of the same shape is just as valid, so an extension never has to bundle the SDK.

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

export interface Logger {
  debug(message: string, fields?: Record<string, Json>): void;
  info(message: string, fields?: Record<string, Json>): void;
  warn(message: string, fields?: Record<string, Json>): void;
  error(message: string, fields?: Record<string, Json>): void;
}

/** Files under the extension's data directory, limited to the paths its manifest grants (`permissions.fs`). */
export interface GrantedFiles {
  readText(path: string): Promise<string>;
  writeText(path: string, text: string): Promise<void>;
  appendText(path: string, text: string): Promise<void>;
}

/** The extension's private key-value store (`permissions.kv`). */
export interface KeyValueStore {
  get(key: string): Promise<Json | undefined>;
  set(key: string, value: Json): Promise<void>;
  delete(key: string): Promise<boolean>;
}

/** What the host hands an extension: frozen, and holding only what the manifest's permissions grant. */
export interface ExtensionContext {
  readonly extension: { readonly id: string; readonly version: string };
  readonly log: Logger;
  readonly fs: GrantedFiles;
  readonly kv: KeyValueStore;
  /** Publishes an event on a topic granted by `permissions.events.publish`. */
  emit(topic: string, payload: Json): Promise<void>;
  /** Fetches from a host granted by `permissions.network`. */
  fetch(url: string, init?: { method?: string; headers?: Record<string, string>; body?: string }): Promise<{ status: number; headers: Record<string, string>; text: string }>;
  /** Reads an environment variable granted by `permissions.env`. */
  env(name: string): string | undefined;
}

export interface StageContext extends ExtensionContext {
  readonly stage: string;
  /** Aborted when the call times out or is cancelled. */
  readonly signal: AbortSignal;
  readonly runId: string | undefined;
  readonly traceId: string;
}

export interface PlinthEvent {
  topic: string;
  payload: Json;
  id: string;
  /** ISO 8601 time of publication. */
  time: string;
  source?: string;
  /** Optional headers that travel with the event (`correlationId`, `traceId`, …). */
  headers?: EventHeaders;
}

export interface EventHeaders {
  correlationId?: string;
  traceId?: string;
  [name: string]: string | undefined;
}

/** What `handleEvent` receives: the event plus how many times it has been tried (issue 10: be idempotent). */
export interface DeliveredEvent extends PlinthEvent {
  /** 1 on the first attempt. */
  attempt: number;
  /** True when this event may have reached this subscriber before (a retry, a replay, or a redelivery after a restart). */
  redelivered: boolean;
}

export type HealthResult = boolean | { healthy: boolean; detail?: string };

/** One stage: what it takes and what it returns (both JSON, checked by the host against the manifest's schemas). */
export type StageFunction<In = Json, Out = Json> = (input: In, ctx: StageContext) => Out | Promise<Out>;

/** A stage of any input and output: the constraint every `stages` map satisfies. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- each stage declares its own input/output types
export type AnyStage = StageFunction<any, any>;

/** The stages an extension exports, by name. */
export type Stages = Record<string, AnyStage>;

export interface Extension<Config = Record<string, Json>, S extends Stages = Stages> {
  initialize?(config: Config, ctx: ExtensionContext): void | Promise<void>;
  start?(ctx: ExtensionContext): void | Promise<void>;
  stop?(ctx: ExtensionContext): void | Promise<void>;
  healthCheck?(ctx: ExtensionContext): HealthResult | Promise<HealthResult>;
  handleEvent?(event: DeliveredEvent, ctx: ExtensionContext): void | Promise<void>;
  stages?: S;
}

/** The stages map of a defined extension (`StagesOf<typeof ext>`). */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- any config
export type StagesOf<E> = E extends Extension<any, infer S> ? S : never;
/** The stage names of a defined extension. */
export type StageName<E> = keyof StagesOf<E> & string;
/** What stage `K` of extension `E` takes: `StageInput<typeof ext, 'parse'>`. */
export type StageInput<E, K extends StageName<E>> = Parameters<StagesOf<E>[K]>[0];
/** What stage `K` of extension `E` resolves to (promises unwrapped). */
export type StageOutput<E, K extends StageName<E>> = Awaited<ReturnType<StagesOf<E>[K]>>;
/** The config `initialize` receives. */
export type ConfigOf<E> = E extends Extension<infer C, Stages> ? C : never;

/**
 * Declares an extension with its types flowing through: each stage's input and output types are those of its
 * function (annotate the input parameter, or give the stages map as the second type argument and the functions
 * are checked against it), and `initialize` gets the config type. It returns the object unchanged, so the same
 * module runs as worker, isolate or remote, and a plain default-exported object of this shape is just as valid.
 *
 * ```ts
 * export default defineExtension({
 *   stages: { greet: (input: { name: string }) => ({ message: `hello ${input.name}` }) },
 * });
 * ```
 */
export function defineExtension<Config = Record<string, Json>, S extends Stages = Stages>(extension: Extension<Config, S>): Extension<Config, CallableStages<S>> {
  // The same object: only its type is restated (every host calls a stage as (input, ctx)).
  return extension;
}

/** Each stage as the host calls it, `(input, ctx) => output`, whatever parameters its function spelled out. */
export type CallableStages<S extends Stages> = { [K in keyof S]: StageFunction<Parameters<S[K]>[0], Awaited<ReturnType<S[K]>>> };

// The runner side of the remote runtime (issue 13): the same definition, served from the author's own process.
export { runExtension, type RunnerHandle, type RunnerOptions, type RunnerState } from './runner.ts';
