// The Node.js release is pinned once, in hack/node/VERSION: the tests run on it (npm test puts it first on
// PATH), the image's base is built from it, package.json's engines admit it, and hack/node/install.sh can
// verify it on both architectures it supports.
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';

const here = import.meta.dirname;
const root = resolve(here, '..', '..');
const version = readFileSync(resolve(here, 'VERSION'), 'utf8').trim();
const major = Number(version.split('.')[0]);

test('the pinned release is a Node.js 24 LTS version', () => {
  expect(version).toMatch(/^24\.\d+\.\d+$/);
});

test('the tests run on the pinned Node.js', () => {
  process.stdout.write(`tests run on Node.js ${process.versions.node}\n`);
  expect(process.versions.node).toBe(version);
});

test('every base image of the Dockerfile is the pinned release at an exact tag', () => {
  const from = readFileSync(resolve(root, 'Dockerfile'), 'utf8')
    .split('\n')
    .filter((line) => /^FROM\s/i.test(line))
    .map((line) => line.split(/\s+/)[1]);
  expect(from.length).toBeGreaterThan(0);
  for (const image of from) expect(image).toBe(`node:${version}-bookworm-slim`);
});

test("package.json's engines admit the pinned release and nothing below it or past its major", () => {
  const pkg = JSON.parse(readFileSync(resolve(root, 'package.json'), 'utf8')) as {
    engines: { node: string };
  };
  expect(pkg.engines.node).toBe(`>=${version} <${major + 1}`);
});

test('install.sh pins an integrity for the release on x64 and arm64', () => {
  const script = readFileSync(resolve(here, 'install.sh'), 'utf8');
  for (const arch of ['x64', 'arm64']) {
    expect(script).toMatch(
      new RegExp(`\\[${version.replace(/\./g, '\\.')}-${arch}\\]=sha512-[A-Za-z0-9+/]+=*`),
    );
  }
});
