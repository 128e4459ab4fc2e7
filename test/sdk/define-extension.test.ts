// defineExtension's generics (issue 13): stage inputs, outputs and config are typed from the definition, and a
// wrong input type is refused by the compiler. `npm run typecheck` checks the `@ts-expect-error` lines below (an
// expected error that does not occur fails the type-check); `npm test` checks the runtime half: the object is
// returned unchanged, so the same module runs as worker, isolate or remote.
/* eslint-disable @typescript-eslint/no-unsafe-call -- the refused calls below do not type-check, on purpose */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { defineExtension, type StageContext, type StageFunction, type StageInput, type StageOutput, type ConfigOf, type StageName } from '../../src/sdk/index.ts';

const greeter = defineExtension({
  initialize(config: { greeting: string }) {
    void config.greeting.toUpperCase();
  },
  stages: {
    greet: (input: { name: string; times?: number }) => ({ message: `hello ${input.name}`, length: input.name.length }),
    count: async (input: { items: string[] }) => ({ count: await Promise.resolve(input.items.length) }),
  },
});

// Declared up front: the functions are checked against the declared stage types, their parameters inferred.
type Parse = StageFunction<{ text: string }, { rows: string[][] }>;
const declared = defineExtension<{ separator: string }, { parse: Parse }>({
  stages: { parse: (input) => ({ rows: input.text.split('\n').map((line) => line.split(',')) }) },
});

type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
const yes = <T extends true>(): T => true as T;

// The types flow through.
yes<Equal<StageInput<typeof greeter, 'greet'>, { name: string; times?: number }>>();
yes<Equal<StageOutput<typeof greeter, 'greet'>, { message: string; length: number }>>();
yes<Equal<StageOutput<typeof greeter, 'count'>, { count: number }>>();
yes<Equal<ConfigOf<typeof greeter>, { greeting: string }>>();
yes<Equal<StageName<typeof greeter>, 'greet' | 'count'>>();
yes<Equal<StageInput<typeof declared, 'parse'>, { text: string }>>();

function refusedAtCompileTime(ctx: StageContext): void {
  // A wrong input type is refused:
  // @ts-expect-error -- name must be a string
  void greeter.stages?.greet({ name: 42 }, ctx);
  // @ts-expect-error -- a required input property is missing
  void greeter.stages?.count({}, ctx);
  // @ts-expect-error -- no such stage
  void greeter.stages?.missing({}, ctx);
  // An output that does not match the declared stage type is refused:
  defineExtension<Record<string, never>, { parse: Parse }>({
    // @ts-expect-error -- rows must be string[][]
    stages: { parse: (input) => ({ rows: input.text }) },
  });
  // A stage input read as something it is not is refused:
  defineExtension<Record<string, never>, { parse: Parse }>({
    // @ts-expect-error -- input.text is a string, not a number
    stages: { parse: (input) => ({ rows: [[String(input.text.toFixed(2))]] }) },
  });
  // initialize gets the declared config type:
  defineExtension<{ separator: string }, { parse: Parse }>({
    initialize(config) {
      // @ts-expect-error -- separator is a string
      void config.separator.toFixed(1);
    },
  });
  // A stage is a function of (input, ctx):
  // @ts-expect-error -- not a function
  defineExtension({ stages: { parse: 'not a function' } });
  // StageInput names only stages that exist:
  // @ts-expect-error -- no such stage
  yes<Equal<StageInput<typeof greeter, 'missing'>, never>>();
}

describe('defineExtension', () => {
  it('returns the very object it was given (it only adds types)', async () => {
    const definition = { stages: { greet: (input: { name: string }) => ({ message: `hello ${input.name}` }) } };
    assert.equal(defineExtension(definition), definition);
    assert.deepEqual(await greeter.stages?.count({ items: ['a', 'b'] }, {} as StageContext), { count: 2 });
    assert.equal(typeof refusedAtCompileTime, 'function');
    assert.deepEqual(await declared.stages?.parse({ text: 'a,b' }, {} as StageContext), { rows: [['a', 'b']] });
  });
});
