// Typed linting (typescript-eslint needs TypeScript < 6.1, hence the 6.0.x pin; see README "Toolchain").
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['node_modules/', 'coverage/'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: { allowDefaultProject: ['*.js'] }, tsconfigRootDir: import.meta.dirname },
      globals: { process: 'readonly', console: 'readonly', URL: 'readonly' },
    },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
      '@typescript-eslint/consistent-type-imports': 'error',
    },
  },
  {
    // Plain-JavaScript sources (the worker thread entry, see src/sandbox/worker/thread.js) run on Node.
    files: ['src/**/*.js'],
    languageOptions: { globals: { structuredClone: 'readonly', Buffer: 'readonly', AbortController: 'readonly', SharedArrayBuffer: 'readonly', Atomics: 'readonly' } },
  },
  {
    // The isolate shim (src/sandbox/isolate/shim.js) runs inside isolated-vm isolates, not on Node: a script that
    // may use the language's own globals only ('off' removes the Node globals set above).
    files: ['src/sandbox/isolate/shim.js'],
    ...tseslint.configs.disableTypeChecked,
    languageOptions: { parserOptions: { project: false, projectService: false, program: null }, sourceType: 'script', globals: { process: 'off', console: 'off', URL: 'off', structuredClone: 'off', Buffer: 'off', AbortController: 'off', SharedArrayBuffer: 'off', Atomics: 'off' } },
    rules: { ...tseslint.configs.disableTypeChecked.rules },
  },
  {
    // Extensions are plain ES modules that run inside the host's sandboxes: linted as JavaScript, not type-checked.
    files: ['plugins/**/*.js', 'test/fixtures/**/*.js', 'bench/**/*.js'],
    ...tseslint.configs.disableTypeChecked,
    languageOptions: {
      globals: { setTimeout: 'readonly', clearTimeout: 'readonly', setInterval: 'readonly', clearInterval: 'readonly', queueMicrotask: 'readonly' },
    },
  },
  {
    // `plinth new`'s templates (placeholders like {{name}} inside strings): files of an extension, not of this
    // project, type-checked in a scaffold (test/cli/new.test.ts), linted here without types.
    files: ['templates/**/*.js', 'templates/**/*.ts'],
    ...tseslint.configs.disableTypeChecked,
    languageOptions: { parserOptions: { project: false, projectService: false, program: null } },
  },
  {
    // Tests of the bundled extensions call their untyped JavaScript.
    files: ['test/plugins/**/*.ts'],
    rules: {
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
    },
  },
  {
    // Tests use node:test's describe/it, whose returned promises are tracked by the runner.
    files: ['test/**/*.ts'],
    rules: { '@typescript-eslint/no-floating-promises': 'off' },
  },
);
