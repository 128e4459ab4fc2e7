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
  /** Optional string headers that travel with the event (`correlationId`, `traceId`, `causationId`, …). */
  headers?: Record<string, string>;
}

export type HealthResult = boolean | { healthy: boolean; detail?: string };

export type StageFunction<In = Json, Out = Json> = (input: In, ctx: StageContext) => Out | Promise<Out>;

export interface Extension<Config = Record<string, Json>> {
  initialize?(config: Config, ctx: ExtensionContext): void | Promise<void>;
  start?(ctx: ExtensionContext): void | Promise<void>;
  stop?(ctx: ExtensionContext): void | Promise<void>;
  healthCheck?(ctx: ExtensionContext): HealthResult | Promise<HealthResult>;
  handleEvent?(event: PlinthEvent, ctx: ExtensionContext): void | Promise<void>;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- each stage declares its own input/output types
  stages?: Record<string, StageFunction<any, any>>;
}

export function defineExtension<Config = Record<string, Json>>(extension: Extension<Config>): Extension<Config> {
  return extension;
}
