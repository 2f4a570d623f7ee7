// Every object the API server serves, for leak searches: a fixed list of kinds misses a key written anywhere
// else (a ConfigMap, a Lease, an annotation on some other object).
import { kubectl } from '../../hack/deploy/deploy.js';
import { kubeconfigPath } from './cluster.js';

/** Every object of every listable kind, as JSON text, one entry per kind; Secret data decoded as well. */
export async function everyApiObject(): Promise<Array<[string, string]>> {
  const kinds = (await kubectl(kubeconfigPath, ['api-resources', '--verbs=list', '-o', 'name']))
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
  const out: Array<[string, string]> = [];
  for (const kind of kinds) {
    const text = await kubectl(kubeconfigPath, ['get', kind, '--all-namespaces', '-o', 'json']);
    out.push([kind, text]);
    if (kind === 'secrets') {
      // Secret data is base64: searched decoded too
      const list = JSON.parse(text) as { items: Array<{ data?: Record<string, string> }> };
      const decoded = list.items.map((s) =>
        Object.values(s.data ?? {}).map((v) => Buffer.from(v, 'base64').toString('utf8')),
      );
      out.push(['secrets, data decoded', JSON.stringify(decoded)]);
    }
  }
  return out;
}
