// The code that runs first in every extension's isolate context, before the extension's module is evaluated.
// It is the guest half of the settle pattern (see process.ts) and the only holder of the two host functions.
//
// Rules it keeps (isolated-vm README/SECURITY; STYLE.md "One failure stays one failure"):
// - strict mode; every intrinsic it relies on is captured here, before extension code can replace or poison it;
// - the host functions (`hostRequest`, `hostDone`) stay in this closure: no Reference, ExternalCopy, Callback or
//   other isolated-vm object is ever reachable from extension code (they arrive as closure arguments, not globals);
// - only primitives cross: ctx ops and results are serialised here, with the captured JSON.stringify, so toJSON,
//   getters and `then` of extension values run inside the isolate (under its watchdogs), never in the host, and a
//   SharedArrayBuffer-backed argument is copied (into JSON text) before the host checks anything;
// - every thrown value is turned into plain, length-capped strings here; nothing the extension throws escapes into
//   isolated-vm's own conversion (a looping `message` getter there could outlive dispose());
// - ctx and everything on it are frozen: its parts are null-prototype objects, and its own prototype (the getters
//   that make the parts on first use) is frozen, constructor-less and has a null prototype itself.
// This file is compiled inside each isolate, never by Node: process.ts reads it once and injects it as the body of a
// closure, `return (<this file>)(hostRequest, hostDone, ...)`. It is therefore one parenthesised function expression
// and nothing else, linted as a script with no globals but the language's own (an isolate has no Node APIs). The
// stack traces it appears in are labelled plinth:isolate-shim (no host paths) and its frames are dropped from the
// stacks reported to the host.

// eslint-disable-next-line @typescript-eslint/no-unused-expressions -- the expression is the file's value (see above)
(function (hostRequest, hostDone, identityJson, envJson, maxResultChars, maxRequestChars) {
  'use strict';
  const JSONParse = JSON.parse;
  const JSONStringify = JSON.stringify;
  const ObjectFreeze = Object.freeze;
  const ObjectHasOwn = Object.hasOwn;
  const ObjectDefineProperty = Object.defineProperty;
  const ObjectSetPrototypeOf = Object.setPrototypeOf;
  const ReflectApply = Reflect.apply;
  const PromiseCtor = Promise;
  const ErrorCtor = Error;
  const TypeErrorCtor = TypeError;
  const StringCtor = String;
  const StringSlice = String.prototype.slice;
  const StringIndexOf = String.prototype.indexOf;
  const WeakSetCtor = WeakSet;
  const WeakSetAdd = WeakSet.prototype.add;
  const WeakSetHas = WeakSet.prototype.has;
  const StringCharAt = String.prototype.charAt;
  const NumberCtor = Number;
  const MAX_CONSOLE = 8192;
  const MAX_NAME = 128;
  const MAX_MESSAGE = 4096;
  const MAX_STACK = 16384;
  const SHIM_MARK = 'plinth:isolate-shim';

  const identity = JSONParse(identityJson);
  const envValues = JSONParse(envJson);
  let extension;
  const pending = { __proto__: null };
  // Errors rebuilt here from the host's ctx replies: only these may carry a PLINTH_ERR_* code (with its hint) out
  // of a stage, as in a worker. An extension cannot add to this set, so it cannot forge a host error.
  const ctxErrors = new WeakSetCtor();
  const calls = { __proto__: null };

  function cap(s, n) {
    return s.length > n ? ReflectApply(StringSlice, s, [0, n]) + '...[truncated]' : s;
  }

  // Drops this shim's own frames from a stack: what is left is the extension's.
  function cleanStack(stack) {
    let out = '';
    let start = 0;
    while (start <= stack.length) {
      let end = ReflectApply(StringIndexOf, stack, ['\n', start]);
      if (end === -1) end = stack.length;
      const line = ReflectApply(StringSlice, stack, [start, end]);
      if (ReflectApply(StringIndexOf, line, [SHIM_MARK]) === -1) out = out === '' ? line : out + '\n' + line;
      start = end + 1;
    }
    return out;
  }

  function primitiveText(v) {
    try {
      return typeof v === 'symbol' ? 'a symbol' : StringCtor(v);
    } catch {
      return typeof v;
    }
  }

  // Whatever was thrown, as JSON text of plain capped strings. Reads happen in try blocks: a throwing getter
  // loses that field, a looping one is stopped by the call's watchdogs.
  function describe(e) {
    const out = { __proto__: null, name: 'Error', message: '', stack: '', code: '', hint: '', ctx: false };
    if ((typeof e === 'object' && e !== null) || typeof e === 'function') {
      let v;
      try { v = e.name; if (typeof v === 'string') out.name = cap(v, MAX_NAME); } catch { /* lost */ }
      try { v = e.message; if (typeof v === 'string') out.message = cap(v, MAX_MESSAGE); } catch { /* lost */ }
      try { v = e.stack; if (typeof v === 'string') out.stack = cap(cleanStack(v), MAX_STACK); } catch { /* lost */ }
      try { v = e.code; if (typeof v === 'string') out.code = cap(v, MAX_NAME); } catch { /* lost */ }
      try { if (ReflectApply(WeakSetHas, ctxErrors, [e])) { out.ctx = true; v = e.hint; if (typeof v === 'string') out.hint = cap(v, MAX_MESSAGE); } } catch { /* lost */ }
      if (out.message === '' && out.stack === '') out.message = 'a value without message or stack was thrown';
    } else {
      out.name = 'NonError';
      out.message = cap('a non-error value was thrown: ' + primitiveText(e), MAX_MESSAGE);
    }
    try {
      return JSONStringify(out);
    } catch {
      return '{"name":"Error","message":"the thrown value could not be described","stack":"","code":""}';
    }
  }

  // A call that finishes before dispatch('run') returns hands its outcome back as dispatch's return value
  // (one crossing out of the isolate instead of a synchronous host callback plus the return).
  let syncCallId = -1;
  let syncOutcome = '';

  function done(callId, status, text) {
    if (callId === syncCallId) {
      syncCallId = -1;
      syncOutcome = status + ':' + text;
      return;
    }
    try {
      hostDone(callId, status, text);
    } catch {
      /* the host side never throws; nothing to do if it did */
    }
  }

  function codedError(code, name, message, hint) {
    const err = new ErrorCtor(typeof message === 'string' ? message : 'ctx operation failed');
    if (typeof name === 'string' && name !== '' && name !== 'Error') ObjectDefineProperty(err, 'name', { value: name, writable: true, configurable: true, enumerable: false });
    if (typeof code === 'string' && code !== '') ObjectDefineProperty(err, 'code', { value: code, writable: true, configurable: true, enumerable: true });
    if (typeof hint === 'string' && hint !== '') ObjectDefineProperty(err, 'hint', { value: hint, writable: true, configurable: true, enumerable: true });
    return err;
  }

  // An error of the host's ctx handler (or the shim's own ctx.env check, which stands in for it).
  function ctxError(code, name, message, hint) {
    const err = codedError(code, name, message, hint);
    ReflectApply(WeakSetAdd, ctxErrors, [err]);
    return err;
  }

  function rejected(err) {
    return new PromiseCtor(function (resolve, reject) { reject(err); });
  }

  // The guest half of the settle pattern: hostRequest returns a request id at once; the sandbox process later
  // calls dispatch('settle', id, ...) when the host's ContextHandler has answered.
  function request(callId, op, ignoreResult) {
    let text;
    try {
      text = JSONStringify(op);
    } catch {
      return rejected(new TypeErrorCtor('ctx arguments must be JSON-serialisable'));
    }
    if (typeof text !== 'string') return rejected(new TypeErrorCtor('ctx arguments must be JSON-serialisable'));
    if (text.length > maxRequestChars) return rejected(codedError('PLINTH_ERR_RESULT_TOO_LARGE', 'Error', 'ctx operation larger than ' + maxRequestChars + ' characters'));
    let id;
    try {
      id = hostRequest(callId, text);
    } catch {
      id = 0;
    }
    if (typeof id !== 'number' || id <= 0) return rejected(codedError('PLINTH_ERR_SANDBOX_CRASHED', 'Error', 'the sandbox is shutting down'));
    if (ignoreResult) {
      pending[id] = { __proto__: null, resolve: function () {}, reject: function () {} };
      return undefined;
    }
    return new PromiseCtor(function (resolve, reject) {
      pending[id] = { __proto__: null, resolve: resolve, reject: reject };
    });
  }

  function settle(id, ok, payload) {
    const p = pending[id];
    if (p === undefined) return;
    delete pending[id];
    if (ok === true) {
      let value;
      try {
        value = payload === '' ? undefined : JSONParse(payload);
      } catch {
        p.reject(new TypeErrorCtor('malformed reply from the host'));
        return;
      }
      p.resolve(value);
      return;
    }
    let info;
    try {
      info = JSONParse(payload);
    } catch {
      info = { __proto__: null };
    }
    p.reject(ctxError(info.code, info.name, info.message, info.hint));
  }

  function logText(message) {
    if (typeof message === 'string') return message;
    try {
      return StringCtor(message);
    } catch {
      return '[unprintable]';
    }
  }

  // What ctx offers that does not depend on the call: made once.
  const ctxExtension = ObjectFreeze({ __proto__: null, id: identity.id, version: identity.version });
  // Synchronous as in the SDK: the host asked its ContextHandler for every granted name when the sandbox started;
  // any other name is one the handler did not grant.
  const ctxEnv = ObjectFreeze(function env(name) {
    if (typeof name === 'string' && ObjectHasOwn(envValues, name)) {
      const v = envValues[name];
      return v === null ? undefined : v;
    }
    // The same message and hint the host's handler gives a worker (grants): the name to add.
    const shown = primitiveText(name);
    throw ctxError('PLINTH_ERR_PERMISSION_DENIED', 'Error', 'extension ' + identity.id + ': environment variable ' + shown + ' is not granted', 'add "' + shown + '" under permissions.env to "plinth.permissions" in its package.json (and re-sign it)');
  });

  function makeLog(callId) {
    return ObjectFreeze({
      __proto__: null,
      debug: function (message, fields) { request(callId, { __proto__: null, op: 'log', level: 'debug', message: logText(message), fields: fields }, true); },
      info: function (message, fields) { request(callId, { __proto__: null, op: 'log', level: 'info', message: logText(message), fields: fields }, true); },
      warn: function (message, fields) { request(callId, { __proto__: null, op: 'log', level: 'warn', message: logText(message), fields: fields }, true); },
      error: function (message, fields) { request(callId, { __proto__: null, op: 'log', level: 'error', message: logText(message), fields: fields }, true); },
    });
  }

  function makeFs(callId) {
    return ObjectFreeze({
      __proto__: null,
      readText: function (path) { return request(callId, { __proto__: null, op: 'fs.readText', path: path }); },
      writeText: function (path, text) { return request(callId, { __proto__: null, op: 'fs.writeText', path: path, text: text }); },
      appendText: function (path, text) { return request(callId, { __proto__: null, op: 'fs.appendText', path: path, text: text }); },
    });
  }

  function makeKv(callId) {
    return ObjectFreeze({
      __proto__: null,
      get: function (key) { return request(callId, { __proto__: null, op: 'kv.get', key: key }); },
      set: function (key, value) { return request(callId, { __proto__: null, op: 'kv.set', key: key, value: value }); },
      delete: function (key) { return request(callId, { __proto__: null, op: 'kv.delete', key: key }); },
    });
  }

  // A call's ctx. Its parts are made on first use (a stage that never logs makes no logger): building all of them
  // for every call was a third of the isolate's CPU per call for a small stage (issue 14). They live behind getters
  // of one frozen prototype that find the call through a private field, so ctx holds no per-call closures until
  // used; the prototype has no constructor to forge a ctx for another call with, and a getter called on anything
  // but a ctx throws (the private-field brand check).
  class Ctx {
    #call;
    constructor(call) {
      this.#call = call;
      if (call.stage !== undefined) {
        this.stage = call.stage;
        this.runId = call.runId;
        this.traceId = call.traceId;
      }
      ObjectFreeze(this);
    }
    get extension() { return ctxExtension; }
    get env() { return ctxEnv; }
    get log() { const c = this.#call; return (c.log ??= makeLog(c.callId)); }
    get fs() { const c = this.#call; return (c.fs ??= makeFs(c.callId)); }
    get kv() { const c = this.#call; return (c.kv ??= makeKv(c.callId)); }
    get emit() {
      const c = this.#call;
      return (c.emit ??= ObjectFreeze(function emit(topic, payload) {
        return request(c.callId, { __proto__: null, op: 'emit', topic: topic, payload: payload === undefined ? null : payload });
      }));
    }
    get fetch() {
      const c = this.#call;
      return (c.fetch ??= ObjectFreeze(function fetch(url, init) {
        return request(c.callId, { __proto__: null, op: 'fetch', url: url, init: init });
      }));
    }
    // Only a stage's ctx has a signal (hooks have none), made on first read; dispatch('abort') fires it then.
    get signal() {
      const c = this.#call;
      if (c.stage === undefined) return undefined;
      if (c.signal === undefined) {
        c.signal = makeSignal();
        if (c.aborted !== undefined) c.signal.fire(c.aborted);
      }
      return c.signal.signal;
    }
  }
  const CtxPrototype = Ctx.prototype;
  ObjectDefineProperty(CtxPrototype, 'constructor', { value: undefined, writable: false, enumerable: false, configurable: false });
  ObjectSetPrototypeOf(CtxPrototype, null);
  ObjectFreeze(CtxPrototype);

  /** A call's record: what its ctx has made so far, and whether it was aborted (before its signal was read). */
  function callRecord(callId, stage, runId, traceId) {
    return { __proto__: null, callId: callId, stage: stage, runId: runId, traceId: traceId, log: undefined, fs: undefined, kv: undefined, emit: undefined, fetch: undefined, signal: undefined, aborted: undefined };
  }


  // console.* of the extension: lines of the host log under its id (level by method), never the host's stdout and
  // never dropped. Formatted here, in the isolate: the host receives only a capped string.
  function show(v) {
    if (typeof v === 'string') return v;
    if (v === null || (typeof v !== 'object' && typeof v !== 'function')) return primitiveText(v);
    try {
      const st = v.stack;
      if (typeof st === 'string' && st !== '') return cleanStack(st);
    } catch { /* not an error after all */ }
    if (typeof v === 'function') return '[Function]';
    try {
      const t = JSONStringify(v);
      if (typeof t === 'string') return t;
    } catch { /* cyclic, BigInt, a throwing toJSON */ }
    return '[object]';
  }

  // Node's console format: %s %d %i %f %j %o %O %c and %% in a leading string, then the rest joined by spaces.
  function formatArgs(args) {
    const n = args.length;
    let i = 0;
    let out = '';
    if (n > 0 && typeof args[0] === 'string' && ReflectApply(StringIndexOf, args[0], ['%']) !== -1) {
      const f = args[0];
      i = 1;
      let at = 0;
      while (at < f.length && out.length < MAX_CONSOLE) {
        const pc = ReflectApply(StringIndexOf, f, ['%', at]);
        if (pc === -1 || pc === f.length - 1) { out += ReflectApply(StringSlice, f, [at]); break; }
        out += ReflectApply(StringSlice, f, [at, pc]);
        const k = ReflectApply(StringCharAt, f, [pc + 1]);
        at = pc + 2;
        if (k === '%') out += '%';
        else if (k === 'c') i++;
        else if (k === 's' || k === 'o' || k === 'O' || k === 'j') out += i < n ? show(args[i++]) : '%' + k;
        else if (k === 'd' || k === 'i' || k === 'f') out += i < n ? primitiveText(typeof args[i] === 'bigint' ? args[i++] : NumberCtor(args[i++])) : '%' + k;
        else out += '%' + k;
      }
    } else if (n > 0) {
      out = show(args[0]);
      i = 1;
    }
    for (; i < n && out.length < MAX_CONSOLE; i++) out += ' ' + show(args[i]);
    return cap(out, MAX_CONSOLE);
  }

  const CONSOLE_LEVELS = { __proto__: null, log: 'info', info: 'info', dir: 'info', table: 'info', debug: 'debug', trace: 'debug', warn: 'warn', error: 'error' };
  const guestConsole = { __proto__: null };
  for (const method in CONSOLE_LEVELS) {
    const level = CONSOLE_LEVELS[method];
    guestConsole[method] = function () {
      let message;
      try {
        message = formatArgs(arguments);
      } catch {
        message = '[unprintable]';
      }
      request(0, { __proto__: null, op: 'log', level: level, message: message, fields: { __proto__: null, console: method } }, true);
    };
  }
  ObjectDefineProperty(globalThis, 'console', { value: ObjectFreeze(guestConsole), writable: true, configurable: true, enumerable: false });

  // AbortSignal does not exist in a bare isolate: a frozen look-alike, aborted by dispatch('abort').
  function makeSignal() {
    let aborted = false;
    let reason;
    let onabort = null;
    const listeners = [];
    const signal = ObjectFreeze({
      __proto__: null,
      get aborted() { return aborted; },
      get reason() { return reason; },
      get onabort() { return onabort; },
      set onabort(fn) { onabort = typeof fn === 'function' ? fn : null; },
      addEventListener: function (type, fn) { if (type === 'abort' && typeof fn === 'function') listeners[listeners.length] = fn; },
      removeEventListener: function (type, fn) {
        for (let i = 0; i < listeners.length; i++) if (listeners[i] === fn) listeners[i] = null;
      },
      throwIfAborted: function () { if (aborted) throw reason; },
    });
    function fire(message) {
      if (aborted) return;
      aborted = true;
      reason = codedError('', 'AbortError', message);
      const ev = ObjectFreeze({ __proto__: null, type: 'abort', target: signal });
      if (onabort !== null) {
        try { ReflectApply(onabort, signal, [ev]); } catch { /* a listener's failure is its own */ }
      }
      for (let i = 0; i < listeners.length; i++) {
        const l = listeners[i];
        if (l !== null) {
          try { ReflectApply(l, signal, [ev]); } catch { /* a listener's failure is its own */ }
        }
      }
    }
    return { __proto__: null, signal: signal, fire: fire };
  }

  function normaliseHealth(v) {
    if (typeof v === 'boolean') return { __proto__: null, healthy: v };
    if (v !== null && typeof v === 'object') {
      const healthy = v.healthy;
      const detail = v.detail;
      if (typeof healthy === 'boolean') return typeof detail === 'string' ? { __proto__: null, healthy: healthy, detail: cap(detail, MAX_MESSAGE) } : { __proto__: null, healthy: healthy };
    }
    return { __proto__: null, healthy: false, detail: 'healthCheck() returned neither a boolean nor { healthy }' };
  }

  // A hook or stage that threw: a health check that throws is simply unhealthy.
  function failed(callId, kind, e) {
    delete calls[callId];
    if (kind === 'health') done(callId, 'ok', JSONStringify({ healthy: false, detail: JSONParse(describe(e)).message }));
    else done(callId, 'error', describe(e));
  }

  function isThenable(v) {
    return v !== null && (typeof v === 'object' || typeof v === 'function') && typeof v.then === 'function';
  }

  function finish(callId, kind, result) {
    let thenable;
    try {
      thenable = isThenable(result);
    } catch (e) {
      failed(callId, kind, e);
      return;
    }
    if (thenable) settleLater(callId, kind, result);
    else report(callId, kind, result);
  }

  async function settleLater(callId, kind, result) {
    let value;
    try {
      value = await result;
    } catch (e) {
      failed(callId, kind, e);
      return;
    }
    report(callId, kind, value);
  }

  function report(callId, kind, value) {
    delete calls[callId];
    let text;
    try {
      if (kind === 'health') value = normaliseHealth(value);
      text = value === undefined ? 'null' : JSONStringify(value);
    } catch (e) {
      done(callId, 'unserialisable', describe(e));
      return;
    }
    if (typeof text !== 'string') text = 'null';
    if (text.length > maxResultChars) {
      done(callId, 'too-large', '' + text.length);
      return;
    }
    done(callId, 'ok', text);
  }

  const HOOKS = { __proto__: null, initialize: 'initialize', start: 'start', stop: 'stop', health: 'healthCheck', event: 'handleEvent' };

  function run(callId, kind, name, inputJson, metaJson) {
    let result;
    try {
      const input = inputJson === '' ? undefined : JSONParse(inputJson);
      const meta = JSONParse(metaJson);
      const ext = extension;
      if (kind === 'stage') {
        const stages = ext.stages;
        const fn = stages !== null && (typeof stages === 'object' || typeof stages === 'function') ? stages[name] : undefined;
        if (typeof fn !== 'function') {
          done(callId, 'unknown', '');
          return;
        }
        const call = callRecord(callId, name, meta.runId === null ? undefined : meta.runId, meta.traceId);
        calls[callId] = call;
        const ctx = new Ctx(call);
        result = ReflectApply(fn, stages, [input, ctx]);
      } else {
        const hook = HOOKS[kind];
        const fn = hook === undefined ? undefined : ext[hook];
        if (fn === undefined || fn === null) {
          done(callId, 'absent', '');
          return;
        }
        if (typeof fn !== 'function') throw new TypeErrorCtor('the default export\'s ' + hook + ' is not a function');
        // A ctx of this call's own: its ops end with the call (a ctx kept from an earlier call no longer answers).
        const hookCtx = new Ctx(callRecord(callId, undefined, undefined, undefined));
        result = kind === 'initialize' || kind === 'event' ? ReflectApply(fn, ext, [input, hookCtx]) : ReflectApply(fn, ext, [hookCtx]);
      }
    } catch (e) {
      failed(callId, kind, e);
      return;
    }
    finish(callId, kind, result);
  }

  function bind(namespace) {
    let ext;
    try {
      ext = namespace.default;
    } catch (e) {
      return 'reading the default export threw: ' + JSONParse(describe(e)).message;
    }
    if (ext === null || (typeof ext !== 'object' && typeof ext !== 'function')) return 'the module has no default export object ({ initialize, start, stages, ... })';
    extension = ext;
    return '';
  }

  function abort(callId, message) {
    const call = calls[callId];
    if (call === undefined) return;
    delete calls[callId];
    if (call.signal !== undefined) call.signal.fire(message);
    else call.aborted = message;
  }

  // The one entry point the sandbox process holds (as a Reference). It never throws into isolated-vm.
  return function dispatch(cmd, a, b, c, d, e) {
    try {
      if (cmd === 'run') {
        syncCallId = a;
        syncOutcome = '';
        try {
          run(a, b, c, d, e);
        } finally {
          syncCallId = -1;
        }
        return syncOutcome;
      }
      else if (cmd === 'settle') settle(a, b, c);
      else if (cmd === 'abort') abort(a, b);
      else if (cmd === 'bind') return bind(a);
    } catch {
      /* never into isolated-vm's conversion */
    }
    return undefined;
  };
})
