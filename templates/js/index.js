// @ts-check
// The {{name}} extension. Every stage gets its input already checked against the stage's `input` schema in
// package.json, and its output is checked against the `output` schema before the caller sees it.
import { defineExtension } from './plinth-sdk.js';

let greeting = 'Hello';

export default defineExtension({
  /** @param {{ greeting: string }} config the host config's `extensions.{{name}}.config`, defaults applied */
  initialize(config) {
    greeting = config.greeting;
  },
  stages: {
    /**
     * @param {{ name: string }} input
     * @param {import('plinth/sdk').StageContext} ctx only what package.json's `permissions` grant (here: kv)
     */
    async greet(input, ctx) {
      const key = `greeted:${input.name}`;
      const count = Number((await ctx.kv.get(key)) ?? 0) + 1;
      await ctx.kv.set(key, count);
      ctx.log.info(`greeted ${input.name}`, { count });
      return { message: `${greeting}, ${input.name}!`, count };
    },
  },
});
