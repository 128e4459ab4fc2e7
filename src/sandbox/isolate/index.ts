// The `isolate` runtime (DESIGN.md §4): untrusted extensions, each in its own isolated-vm Isolate, all inside a
// separate sandbox process (process.ts) that this side forks, watches and SIGKILLs. Two walls:
//   in the sandbox process: per call, a wall-clock deadline and a CPU-time budget (isolate.cpuTime); past either
//     the isolate is disposed (STAGE_TIMEOUT / CPU_LIMIT) and the sandbox reports onExit 'killed';
//   here, in the host: per call, the deadline plus a grace period (the process did not answer: SIGKILL), and the
//     process's RSS read from /proc/<pid>/status (memoryLimit is not a hard limit: resizable ArrayBuffers and
//     WebAssembly.Memory grow outside it) past a limit: SIGKILL, OUT_OF_MEMORY.
// Every ctx op an extension makes arrives here and goes to the ContextHandler it was created with (src/policy):
// this runtime checks no permission itself.
//
// Process model and blast radius. By default every isolate sandbox shares one lazily forked process
// (IsolateProcess.shared()): cheap (one Node process for all untrusted extensions), but when that process has to be
// killed (a hung call past its grace, RSS past the limit, an isolated-vm crash) every extension in it dies with it:
// their pending calls fail (SANDBOX_CRASHED, or OUT_OF_MEMORY for an RSS kill) and each sandbox reports onExit; the
// supervisor restarts them and the next start() transparently forks a fresh process. A misbehaving isolate that
// its own watchdog can stop (loops, timeouts, CPU, its memoryLimit) takes only itself down. Pass
// `{ process: 'dedicated' }` (or your own `new IsolateProcess()`) to confine even process kills to one extension,
// at the cost of a Node process (~84 MB RSS) per extension.
//
// The parts, each in its own file: handle.ts (one forked process: its link, its hosted sandboxes, why it ended),
// watchdog.ts (the RSS wall), registry.ts (IsolateProcess: which process a sandbox runs in), sandbox.ts (the
// IsolateSandbox state machine), process.ts (the sandbox process itself) with shim.js (the guest half inside each
// isolate) and protocol.ts (the wire contract between the two sides).
export { DEFAULT_MAX_RESULT_BYTES } from './protocol.ts';
export type { StatsResult as IsolateProcessStats } from './protocol.ts';
export { IsolateProcess, type IsolateProcessOptions } from './registry.ts';
export { IsolateSandbox, createIsolateSandbox, type IsolateSandboxOptions, type IsolateUsage } from './sandbox.ts';
