// Node objects as the kubelet would register them, for operator tests without kubelets: labels, pod CIDR
// and an InternalIP address (status is a subresource, so it takes a patch of its own).
import { PatchStrategy, setHeaderOptions, type CoreV1Api } from '@kubernetes/client-node';

export async function createNode(
  core: CoreV1Api,
  node: { name: string; labels: Record<string, string>; podCIDR?: string; internalIP?: string },
): Promise<void> {
  await core.createNode({
    body: {
      metadata: { name: node.name, labels: node.labels },
      ...(node.podCIDR ? { spec: { podCIDR: node.podCIDR, podCIDRs: [node.podCIDR] } } : {}),
    },
  });
  if (node.internalIP === undefined) return;
  await core.patchNodeStatus(
    { name: node.name, body: { status: { addresses: [{ type: 'InternalIP', address: node.internalIP }] } } },
    setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
  );
}

/** Deletes the Node objects a test made, found by label. */
export async function deleteNodes(core: CoreV1Api, labelSelector: string): Promise<void> {
  const nodes = await core.listNode({ labelSelector });
  for (const n of nodes.items) await core.deleteNode({ name: n.metadata!.name! });
}
