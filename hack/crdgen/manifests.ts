// The CRD files `npm run manifests` owns, and the comparison `--check` and the sync test make.
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { nodeTunnelKind } from '../../api/v1alpha1/nodetunnel.types.js';
import { overlayNetworkKind } from '../../api/v1alpha1/overlaynetwork.types.js';
import { crdFile, renderCRD } from './crdgen.js';

export const KINDS = [overlayNetworkKind, nodeTunnelKind];

/** Repository-relative path → freshly generated content. */
export function generatedFiles(): Map<string, string> {
  return new Map(KINDS.map((k) => [crdFile(k), renderCRD(k)]));
}

export interface StaleFile {
  file: string;
  /** First differing line, 1-based, with both versions; or a note that the file is missing. */
  detail: string;
}

/** Generated files whose committed version under `root` differs; empty when everything is in sync. */
export async function staleFiles(root: string): Promise<StaleFile[]> {
  const stale: StaleFile[] = [];
  for (const [file, fresh] of generatedFiles()) {
    let committed: string;
    try {
      committed = await readFile(resolve(root, file), 'utf8');
    } catch {
      stale.push({ file, detail: 'missing' });
      continue;
    }
    if (committed !== fresh) stale.push({ file, detail: firstDifference(committed, fresh) });
  }
  return stale;
}

function firstDifference(committed: string, fresh: string): string {
  const a = committed.split('\n');
  const b = fresh.split('\n');
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    if (a[i] !== b[i]) {
      return `line ${i + 1}: committed ${JSON.stringify(a[i] ?? '<end of file>')}, generated ${JSON.stringify(b[i] ?? '<end of file>')}`;
    }
  }
  return 'differs';
}
