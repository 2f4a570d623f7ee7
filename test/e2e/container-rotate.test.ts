// The rotation e2e (test/e2e/rotation.test.ts) in container mode: the operator and the agents run as the
// image `npm run image` builds, under podman, with the pod specs of config/ (hack/deploy/container.ts). The
// same scenarios with the same bounds: a PSK-only rotation with no probe lost, a full rotation with every
// pair answering within 1 s of the cutover, no key in any API object or log; the underlay carries only
// WireGuard UDP throughout. The scenarios that SIGKILL processes of this machine are process mode's only.
import { afterAll } from '@jest/globals';

process.env.SEALMESH_RUNTIME = 'container';
await import('./rotation.test.js');

afterAll(() => {
  delete process.env.SEALMESH_RUNTIME;
});
