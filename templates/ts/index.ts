// The {{name}} extension. Every stage gets its input already checked against the stage's `input` schema in
// package.json, and its output is checked against the `output` schema before the caller sees it. Node runs this
// file by stripping its types: erasable syntax only (no enums, namespaces or parameter properties).
import { defineExtension, type StageContext } from './plinth-sdk.ts';

export interface Config {
  greeting: string;
}

export interface GreetInput {
  name: string;
}

export interface GreetOutput {
  message: string;
  count: number;
}

let greeting = 'Hello';

export default defineExtension({
  /** The host config's `extensions.{{name}}.config`, defaults applied. */
  initialize(config: Config) {
    greeting = config.greeting;
  },
  stages: {
    /** `ctx` holds only what package.json's `permissions` grant (here: kv). */
    async greet(input: GreetInput, ctx: StageContext): Promise<GreetOutput> {
      const key = `greeted:${input.name}`;
      const count = Number((await ctx.kv.get(key)) ?? 0) + 1;
      await ctx.kv.set(key, count);
      ctx.log.info(`greeted ${input.name}`, { count });
      return { message: `${greeting}, ${input.name}!`, count };
    },
  },
});
