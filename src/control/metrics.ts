// GET /metrics: Prometheus text from prom-client, on a registry of this server's own (never the global one, so
// two hosts in one process do not mix). Counters the host already keeps (restarts, bus counters, breaker and
// extension states, DLQ depth, runs) are read at scrape time; call latencies and RPC requests are observed as
// they happen.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { BusCounters } from '../events/index.ts';
import type { PipelineService } from '../pipeline/types.ts';
import type { RegistryEntry } from '../registry/index.ts';
import type { CallObserver } from '../host/index.ts';

export interface MetricsSources {
  list(): RegistryEntry[];
  busCounters?: BusCounters;
  deadLetters(): number;
  pipelines?: PipelineService;
  connections(): number;
}

const BREAKER_STATES = ['closed', 'open', 'halfOpen'] as const;
const EXTENSION_STATES = ['starting', 'active', 'degraded', 'stopping', 'stopped', 'failed'] as const;

export class ControlMetrics {
  readonly registry = new Registry();
  readonly calls: CallObserver;
  readonly #rpc: Counter;
  readonly #stageDuration: Histogram;

  constructor(sources: MetricsSources) {
    const registers = [this.registry];
    // The standard names (process_*, nodejs_*), as dashboards for Node processes expect them.
    collectDefaultMetrics({ register: this.registry });
    // promtool check metrics refuses gauges named *_total; these three are sums of the by-type gauges kept beside them.
    for (const name of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) this.registry.removeSingleMetric(name);
    const callDuration = new Histogram({
      name: 'plinth_stage_call_duration_seconds',
      help: 'Stage calls through the host, by extension, stage and outcome (ok or the PLINTH_ERR_* code).',
      labelNames: ['extension', 'stage', 'outcome'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    });
    // Counted in a plain map on the call path and read at scrape time (prom-client's inc/dec hash the labels on
    // every call; issue 12 measured them at a tenth of the control channel's own cost per call).
    const inFlightNow = new Map<string, number>();
    new Gauge({
      name: 'plinth_stage_calls_in_flight',
      help: 'Stage calls running now, by extension.',
      labelNames: ['extension'],
      registers,
      collect() {
        this.reset();
        for (const [extension, n] of inFlightNow) this.set({ extension }, n);
      },
    });
    this.calls = {
      started: (extension) => void inFlightNow.set(extension, (inFlightNow.get(extension) ?? 0) + 1),
      ended: (extension, stage, outcome, seconds) => {
        inFlightNow.set(extension, (inFlightNow.get(extension) ?? 1) - 1);
        callDuration.observe({ extension, stage, outcome }, seconds);
      },
    };
    new Gauge({
      name: 'plinth_extension_breaker_state',
      help: 'Circuit breaker state per extension: 1 for the state it is in, 0 for the others.',
      labelNames: ['extension', 'state'],
      registers,
      collect() {
        this.reset();
        for (const e of sources.list()) if (e.breaker) for (const s of BREAKER_STATES) this.set({ extension: e.id, state: s }, e.breaker === s ? 1 : 0);
      },
    });
    new Gauge({
      name: 'plinth_extension_state',
      help: 'Lifecycle state per extension: 1 for the state it is in, 0 for the others.',
      labelNames: ['extension', 'state'],
      registers,
      collect() {
        this.reset();
        for (const e of sources.list()) for (const s of EXTENSION_STATES) this.set({ extension: e.id, state: s }, e.state === s ? 1 : 0);
      },
    });
    new Counter({
      name: 'plinth_extension_restarts_total',
      help: 'Sandbox restarts per extension since the host started.',
      labelNames: ['extension'],
      registers,
      collect() {
        this.reset();
        for (const e of sources.list()) this.inc({ extension: e.id }, e.restarts ?? 0);
      },
    });
    const busCounter = (name: string, key: keyof BusCounters, help: string) =>
      new Counter({
        name,
        help,
        registers,
        collect() {
          this.reset();
          this.inc(sources.busCounters?.[key] ?? 0);
        },
      });
    busCounter('plinth_events_published_total', 'published', 'Events published on the bus.');
    busCounter('plinth_events_delivered_total', 'delivered', 'Event deliveries acknowledged by subscribers.');
    busCounter('plinth_events_retried_total', 'retried', 'Failed event deliveries scheduled for another attempt.');
    busCounter('plinth_events_dead_lettered_total', 'deadLettered', 'Events dead-lettered after their last attempt.');
    new Gauge({
      name: 'plinth_dlq_depth',
      help: 'Dead letters kept now.',
      registers,
      collect() {
        this.set(sources.deadLetters());
      },
    });
    new Gauge({
      name: 'plinth_runs',
      help: 'Pipeline runs known to the host, by pipeline and state.',
      labelNames: ['pipeline', 'state'],
      registers,
      collect() {
        this.reset();
        const counts = new Map<string, number>();
        for (const r of sources.pipelines?.list({ limit: 100_000 }) ?? []) counts.set(JSON.stringify([r.pipeline, r.state]), (counts.get(JSON.stringify([r.pipeline, r.state])) ?? 0) + 1);
        for (const [k, n] of counts) {
          const [pipeline, state] = JSON.parse(k) as [string, string];
          this.set({ pipeline, state }, n);
        }
      },
    });
    this.#stageDuration = new Histogram({
      name: 'plinth_pipeline_stage_duration_seconds',
      help: 'Pipeline stage durations, by pipeline, stage and final state.',
      labelNames: ['pipeline', 'stage', 'state'],
      buckets: [0.001, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300],
      registers,
    });
    new Gauge({
      name: 'plinth_control_connections',
      help: 'Open control-channel WebSocket connections.',
      registers,
      collect() {
        this.set(sources.connections());
      },
    });
    this.#rpc = new Counter({ name: 'plinth_rpc_requests_total', help: 'Control-channel requests by method and outcome (ok or the PLINTH_ERR_* code / JSON-RPC code).', labelNames: ['method', 'outcome'], registers });
  }

  rpc(method: string, outcome: string): void {
    this.#rpc.inc({ method, outcome });
  }

  stage(pipeline: string, stage: string, state: string, durationMs: number): void {
    this.#stageDuration.observe({ pipeline, stage, state }, durationMs / 1000);
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
