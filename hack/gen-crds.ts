// `npm run manifests`: writes config/crd/bases/*.yaml from the zod schemas in api/v1alpha1.
// `npm run manifests -- --check`: writes nothing, exits 1 and says what differs when the committed YAML is
// stale (CI runs this).
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { generatedFiles, staleFiles } from './crdgen/manifests.js';

const root = resolve(import.meta.dirname, '..');

async function main(): Promise<number> {
  if (process.argv.includes('--check')) {
    const stale = await staleFiles(root);
    for (const s of stale) console.error(`${s.file} is out of date (${s.detail}); run npm run manifests`);
    return stale.length === 0 ? 0 : 1;
  }
  for (const [file, content] of generatedFiles()) {
    await mkdir(dirname(resolve(root, file)), { recursive: true });
    await writeFile(resolve(root, file), content);
    console.log(`wrote ${file}`);
  }
  return 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(`gen-crds: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  },
);
