// The files `npm run manifests` owns, and the comparison `--check` and the sync test make. Each CRD is written
// twice, byte for byte: config/crd/bases (kustomize, the tests) and the Helm chart's copy
// (charts/sealmesh/files/crds, which its templates/crds.yaml renders), so the chart never has CRDs of its own.
// The alert rules and the dashboard are written by hand in config/prometheus and copied into the chart the same
// way (charts/sealmesh/files/prometheus).
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { basename, resolve } from 'node:path';
import { nodeTunnelKind } from '../../api/v1alpha1/nodetunnel.types.js';
import { overlayNetworkKind } from '../../api/v1alpha1/overlaynetwork.types.js';
import { crdFile, renderCRD } from './crdgen.js';

export const KINDS = [overlayNetworkKind, nodeTunnelKind];

/** Where the Helm chart keeps its copy of the CRDs. */
export const CHART_CRD_DIR = 'charts/sealmesh/files/crds';

const repoRoot = resolve(import.meta.dirname, '..', '..');

/** Hand-written files the chart carries a copy of: source → copy, both repository-relative. */
export const CHART_COPIES: ReadonlyArray<[string, string]> = [
  ['config/prometheus/prometheusrule.yaml', 'charts/sealmesh/files/prometheus/prometheusrule.yaml'],
  ['config/prometheus/sealmesh-dashboard.json', 'charts/sealmesh/files/prometheus/sealmesh-dashboard.json'],
];

/** Repository-relative path → freshly generated content. */
export function generatedFiles(): Map<string, string> {
  return new Map([
    ...KINDS.flatMap((k): Array<[string, string]> => {
      const text = renderCRD(k);
      return [
        [crdFile(k), text],
        [`${CHART_CRD_DIR}/${basename(crdFile(k))}`, text],
      ];
    }),
    ...CHART_COPIES.map(([from, to]): [string, string] => [
      to,
      readFileSync(resolve(repoRoot, from), 'utf8'),
    ]),
  ]);
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
