// Length-prefixed frames for the links outside the host process (issue 14): one JSON-RPC 2.0 message per frame,
// optionally followed by a raw JSON text that travels as it is — a stage's input or result is serialised once by
// whoever has the value and parsed once by whoever needs it, never escaped into a string inside the envelope nor
// re-stringified on the way. The Peer (index.ts) runs over a FrameLink as over any Transport; the hot path (stage
// calls and their results) uses sendRaw.
//
//   frame  = header envelope payload
//   header = u32 BE envelope byte length, u32 BE payload byte length (0: no payload)
//   envelope: a JSON-RPC message (an object) or batch (an array, JSON-RPC §6) as UTF-8 JSON text;
//   payload: UTF-8 JSON text, any JSON value, only beside a message object
//
// Frames are untrusted input (the process at the other end may be compromised): both lengths are checked against
// caps before anything is buffered, the envelope is decoded with JSON.parse (the only decoder: no structured
// deserialiser, which would let a compromised process hand over a Map that passes `type: object`), and anything
// malformed is a FrameError for the owner to treat as a crash of the other end (the link is closed at once).
// Frames written in one tick go out together, encoded into one buffer and written once at the end of the tick (one
// copy of each text is cheaper than a write, or a corked writev, per frame), at most MAX_FRAMES_PER_WRITE
// at a time: the other end starts on the first frames while this one encodes the rest (the worker runtime's
// MAX_BATCH explains the ping-pong one batch of every call in flight makes).
import type { Duplex } from 'node:stream';
import type { Transport } from './index.ts';

export const FRAME_HEADER_BYTES = 8;
/** Frames queued in one tick that go out in one write at most. */
export const MAX_FRAMES_PER_WRITE = 16;

export interface FrameCaps {
  /** Largest envelope accepted, in bytes. */
  maxEnvelopeBytes: number;
  /** Largest raw payload accepted, in bytes. */
  maxPayloadBytes: number;
}

/** A frame that breaks the format or a cap: the other end is not speaking the protocol. */
export class FrameError extends Error {
  override readonly name = 'FrameError';
}

/** One frame's bytes. `payload`: raw JSON text, sent as it is. */
export function encodeFrame(envelope: string, payload?: string): Buffer {
  return encodeFrames([envelope], [payload]);
}

/** Frames back to back in one buffer (one allocation and one copy of each text, however many frames). */
function encodeFrames(envelopes: readonly string[], payloads: ReadonlyArray<string | undefined>): Buffer {
  const n = envelopes.length;
  const sizes = new Array<number>(2 * n);
  let total = 0;
  for (let i = 0; i < n; i++) {
    const payload = payloads[i];
    sizes[2 * i] = Buffer.byteLength(envelopes[i]!, 'utf8');
    sizes[2 * i + 1] = payload === undefined ? 0 : Buffer.byteLength(payload, 'utf8');
    total += FRAME_HEADER_BYTES + sizes[2 * i]! + sizes[2 * i + 1]!;
  }
  const out = Buffer.allocUnsafe(total);
  let off = 0;
  for (let i = 0; i < n; i++) {
    const envBytes = sizes[2 * i]!;
    const payBytes = sizes[2 * i + 1]!;
    out.writeUInt32BE(envBytes, off);
    out.writeUInt32BE(payBytes, off + 4);
    off += FRAME_HEADER_BYTES;
    off += out.write(envelopes[i]!, off, envBytes, 'utf8');
    if (payBytes > 0) off += out.write(payloads[i]!, off, payBytes, 'utf8');
  }
  return out;
}

export interface Frame {
  /** The envelope, parsed: a JSON-RPC message object, or a batch (an array). */
  message: Record<string, unknown> | unknown[];
  /** The raw payload text, if the frame has one (not parsed here). */
  payload: string | undefined;
}

/**
 * Cuts a byte stream into frames. Holds at most one partial frame (bounded by the caps); a frame is decoded only
 * once all of it has arrived. Throws FrameError on the first malformed frame; after that it must not be used.
 */
export class FrameDecoder {
  readonly #caps: FrameCaps;
  #chunks: Buffer[] = [];
  #buffered = 0;
  /** Lengths of the frame being read, once its header is in. */
  #envBytes = -1;
  #payBytes = -1;

  constructor(caps: FrameCaps) {
    this.#caps = caps;
  }

  /** Bytes held for a frame not complete yet. */
  get buffered(): number {
    return this.#buffered;
  }

  push(chunk: Buffer, onFrame: (frame: Frame) => void): void {
    if (chunk.length === 0) return;
    if (this.#buffered === 0) {
      // Nothing held: the frames whole inside this chunk (every frame, mostly) are decoded in place, without a view
      // or a copy of their bytes; only a partial frame at its end is held.
      let off = 0;
      while (chunk.length - off >= FRAME_HEADER_BYTES) {
        const envBytes = chunk.readUInt32BE(off);
        const payBytes = chunk.readUInt32BE(off + 4);
        this.#check(envBytes, payBytes);
        const envStart = off + FRAME_HEADER_BYTES;
        const end = envStart + envBytes + payBytes;
        if (end > chunk.length) break;
        off = end;
        this.#emit(chunk.toString('utf8', envStart, envStart + envBytes), payBytes === 0 ? undefined : chunk.toString('utf8', envStart + envBytes, end), onFrame);
      }
      if (off === chunk.length) return;
      if (off > 0) chunk = chunk.subarray(off);
    }
    this.#chunks.push(chunk);
    this.#buffered += chunk.length;
    for (;;) {
      if (this.#envBytes < 0) {
        if (this.#buffered < FRAME_HEADER_BYTES) return;
        const header = this.#take(FRAME_HEADER_BYTES);
        this.#envBytes = header.readUInt32BE(0);
        this.#payBytes = header.readUInt32BE(4);
        this.#check(this.#envBytes, this.#payBytes);
      }
      if (this.#buffered < this.#envBytes + this.#payBytes) return;
      const body = this.#take(this.#envBytes + this.#payBytes);
      const envText = body.toString('utf8', 0, this.#envBytes);
      const payload = this.#payBytes === 0 ? undefined : body.toString('utf8', this.#envBytes);
      this.#envBytes = -1;
      this.#payBytes = -1;
      this.#emit(envText, payload, onFrame);
    }
  }

  /** Both lengths of a header against the caps, before anything of the frame is buffered. */
  #check(envBytes: number, payBytes: number): void {
    if (envBytes === 0) throw new FrameError('a frame without an envelope');
    if (envBytes > this.#caps.maxEnvelopeBytes) throw new FrameError(`a frame envelope of ${envBytes} bytes, over the cap of ${this.#caps.maxEnvelopeBytes}`);
    if (payBytes > this.#caps.maxPayloadBytes) throw new FrameError(`a frame payload of ${payBytes} bytes, over the cap of ${this.#caps.maxPayloadBytes}`);
  }

  #emit(envText: string, payload: string | undefined, onFrame: (frame: Frame) => void): void {
    let message: unknown;
    try {
      message = JSON.parse(envText);
    } catch (err) {
      throw new FrameError(`a frame envelope that is not JSON (${(err as Error).message.slice(0, 200)})`);
    }
    if (typeof message !== 'object' || message === null) throw new FrameError('a frame envelope that is neither a JSON object nor an array');
    if (Array.isArray(message) && payload !== undefined) throw new FrameError('a raw payload beside a batch');
    onFrame({ message: message as Record<string, unknown> | unknown[], payload });
  }

  /** The next `n` buffered bytes (n <= buffered), as one Buffer (copied only when they span chunks). */
  #take(n: number): Buffer {
    this.#buffered -= n;
    const first = this.#chunks[0]!;
    if (first.length === n) {
      this.#chunks.shift();
      return first;
    }
    if (first.length > n) {
      this.#chunks[0] = first.subarray(n);
      return first.subarray(0, n);
    }
    const out = Buffer.allocUnsafe(n);
    let off = 0;
    while (off < n) {
      const c = this.#chunks[0]!;
      const k = Math.min(c.length, n - off);
      c.copy(out, off, 0, k);
      off += k;
      if (k === c.length) this.#chunks.shift();
      else this.#chunks[0] = c.subarray(k);
    }
    return out;
  }
}

/**
 * A Transport over a byte stream (a pipe to a child process, later a runner's socket) in frames. Messages with a
 * raw payload are handed to the raw listener with their payload text; all others to the Transport listener (a
 * Peer). A malformed frame closes the link and is reported to the error listeners first.
 */
export class FrameLink implements Transport {
  readonly #socket: Duplex;
  readonly #decoder: FrameDecoder;
  /** Frames written this tick, flushed together on the next. */
  #queuedEnvelopes: string[] = [];
  #queuedPayloads: Array<string | undefined> = [];
  #closed = false;
  readonly #messageListeners: Array<(message: unknown) => void> = [];
  readonly #rawListeners: Array<(message: Record<string, unknown>, payload: string | undefined) => boolean> = [];
  readonly #closeListeners: Array<(reason: string) => void> = [];
  readonly #errorListeners: Array<(err: FrameError) => void> = [];

  constructor(socket: Duplex, caps: FrameCaps) {
    this.#socket = socket;
    this.#decoder = new FrameDecoder(caps);
    socket.on('data', (chunk: Buffer) => {
      if (this.#closed) return;
      try {
        this.#decoder.push(chunk, (frame) => this.#dispatch(frame));
      } catch (err) {
        if (!(err instanceof FrameError)) throw err;
        for (const l of this.#errorListeners) l(err);
        this.#end(`malformed frame: ${err.message}`);
      }
    });
    socket.on('error', () => this.#end('the link failed'));
    socket.on('close', () => this.#end('the link closed'));
    socket.on('end', () => this.#end('the other end closed the link'));
  }

  #dispatch(frame: Frame): void {
    if (this.#closed) return;
    if (!Array.isArray(frame.message)) for (const l of this.#rawListeners) if (l(frame.message, frame.payload)) return;
    if (frame.payload !== undefined) throw new FrameError('a frame with a payload nobody asked for');
    for (const l of this.#messageListeners) l(frame.message);
  }

  #write(envelope: string, payload: string | undefined): void {
    if (this.#closed || this.#socket.destroyed) return;
    const queued = this.#queuedEnvelopes.push(envelope);
    this.#queuedPayloads.push(payload);
    if (queued === 1) process.nextTick(this.#flush);
    else if (queued >= MAX_FRAMES_PER_WRITE) this.#flush();
  }

  readonly #flush = (): void => {
    const envelopes = this.#queuedEnvelopes;
    if (envelopes.length === 0) return; // written already, as a full batch
    const payloads = this.#queuedPayloads;
    this.#queuedEnvelopes = [];
    this.#queuedPayloads = [];
    if (this.#closed || this.#socket.destroyed) return;
    this.#socket.write(encodeFrames(envelopes, payloads));
  };

  send(message: unknown): void {
    this.#write(JSON.stringify(message), undefined);
  }

  /** The raw-text path: `message` as the envelope, `rawJson` (already JSON text) as the payload, unchanged. */
  sendRaw(message: object, rawJson: string | undefined): void {
    this.#write(JSON.stringify(message), rawJson);
  }

  onMessage(listener: (message: unknown) => void): void {
    this.#messageListeners.push(listener);
  }

  /** Sees every frame first; returns true for the frames it takes (they do not reach onMessage). */
  onRaw(listener: (message: Record<string, unknown>, payload: string | undefined) => boolean): void {
    this.#rawListeners.push(listener);
  }

  onClose(listener: (reason: string) => void): void {
    this.#closeListeners.push(listener);
  }

  /** A malformed frame arrived (the link closes right after). */
  onError(listener: (err: FrameError) => void): void {
    this.#errorListeners.push(listener);
  }

  get closed(): boolean {
    return this.#closed;
  }

  ref(): void {
    (this.#socket as Duplex & { ref?: () => void }).ref?.();
  }

  unref(): void {
    (this.#socket as Duplex & { unref?: () => void }).unref?.();
  }

  close(): void {
    this.#end('closed');
  }

  #end(reason: string): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#socket.destroy();
    for (const l of this.#closeListeners) l(reason);
  }
}
