// @ts-check
// defineExtension, inside the package. A host runs an extension from a verified copy of this folder, and an
// isolate may import only files of its own package, so the SDK's one runtime function (it returns its argument:
// it only adds types) lives here. The types are Plinth's own (`plinth/sdk`, types only: nothing is imported at
// run time), so the same module runs unchanged as isolate, worker or remote.
/** @type {import('plinth/sdk').defineExtension} */
export const defineExtension = (definition) => definition;
