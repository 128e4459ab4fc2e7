// Stage slots shared by every run of the host (issue 11 "fair per-run scheduling"): at most `maxConcurrent` stage
// attempts at once over all runs, handed out round-robin — each run with a ready stage gets one slot per turn, so
// a run with a thousand ready stages never starves a run with one. Each run also keeps its own bound
// (`maxConcurrentStages`), checked by the run itself in `startNext`.

/** What the scheduler needs of a run. */
export interface SchedulableRun {
  /** Starts one ready stage attempt and returns its promise; undefined when it has none or is at its own bound. */
  startNext(): Promise<void> | undefined;
  /** Whether it has a ready stage it may start now. */
  wantsSlot(): boolean;
}

export class StageScheduler {
  readonly #max: number;
  #running = 0;
  /** Runs waiting for a slot, in turn order; a run appears at most once. */
  readonly #turns: SchedulableRun[] = [];
  readonly #queued = new Set<SchedulableRun>();

  constructor(maxConcurrent: number) {
    this.#max = Math.max(1, Math.floor(maxConcurrent));
  }

  get running(): number {
    return this.#running;
  }

  /** A run has (more) ready stages: give it a turn. */
  offer(run: SchedulableRun): void {
    if (!this.#queued.has(run)) {
      this.#queued.add(run);
      this.#turns.push(run);
    }
    this.#pump();
  }

  #pump(): void {
    while (this.#running < this.#max && this.#turns.length > 0) {
      const run = this.#turns.shift()!;
      this.#queued.delete(run);
      const task = run.startNext();
      if (!task) continue;
      this.#running++;
      // Back of the line: the other runs waiting get their turn first.
      if (run.wantsSlot()) {
        this.#queued.add(run);
        this.#turns.push(run);
      }
      void task.finally(() => {
        this.#running--;
        this.#pump();
      });
    }
  }
}
