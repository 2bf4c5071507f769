// Injected into dist/bin/kiln.cjs by scripts/bundle.mjs: the value that `import.meta.url` becomes
// there (the bundle's own URL; it sits in dist/bin, as deep as the modules it was made from).
export const bundleUrl = require('node:url').pathToFileURL(__filename).href;
