// defineExtension, inside the package. A host runs an extension from a verified copy of this folder, and only
// files of the package are certain to be there, so the SDK's one runtime function (it returns its argument: it
// only adds types) lives here. The types are Plinth's own (`plinth/sdk`, `import type`: erased when Node strips
// the types), so the same module runs unchanged as worker or remote.
import type { defineExtension as define } from 'plinth/sdk';

export type { StageContext, ExtensionContext, Json } from 'plinth/sdk';

export const defineExtension: typeof define = (definition) => definition;
