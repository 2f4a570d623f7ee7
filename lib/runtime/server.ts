// One HTTP server per process on one port: /healthz (the process is alive and its event loop answers),
// /readyz (every registered readiness check passes, e.g. caches synced) and /metrics (prom-client).
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import type { Logger } from '../log.js';

export type Check = () => boolean | Promise<boolean>;

export interface RuntimeServerOptions {
  /** Default 0.0.0.0 (reachable by the kubelet's probes); tests use 127.0.0.1. */
  host?: string;
  /** 0 picks a free port (tests). */
  port: number;
  registry: Registry;
  logger?: Logger;
}

export class RuntimeServer {
  private readonly server: http.Server;
  private readonly readyChecks = new Map<string, Check>();
  private readonly healthChecks = new Map<string, Check>();

  constructor(private readonly opts: RuntimeServerOptions) {
    this.server = http.createServer((req, res) => {
      this.handle(req, res).catch((err: unknown) => {
        opts.logger?.error({ err, path: req.url }, 'health/metrics request failed');
        if (!res.headersSent) res.writeHead(500, { 'Content-Type': 'text/plain' });
        res.end('internal error\n');
      });
    });
  }

  addReadyCheck(name: string, check: Check): void {
    this.readyChecks.set(name, check);
  }

  addHealthCheck(name: string, check: Check): void {
    this.healthChecks.set(name, check);
  }

  /** Starts listening; resolves with the bound port. */
  start(): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.opts.port, this.opts.host ?? '0.0.0.0', () => {
        this.server.off('error', reject);
        const port = this.port();
        this.opts.logger?.info({ port }, 'serving /healthz, /readyz and /metrics');
        resolve(port);
      });
    });
  }

  port(): number {
    return (this.server.address() as AddressInfo | null)?.port ?? 0;
  }

  close(): Promise<void> {
    if (!this.server.listening) return Promise.resolve();
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const path = new URL(req.url ?? '/', 'http://localhost').pathname;
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { Allow: 'GET, HEAD' }).end();
      return;
    }
    switch (path) {
      case '/healthz':
        return this.checks(res, this.healthChecks);
      case '/readyz':
        return this.checks(res, this.readyChecks);
      case '/metrics': {
        const body = await this.opts.registry.metrics();
        res.writeHead(200, { 'Content-Type': this.opts.registry.contentType });
        res.end(req.method === 'HEAD' ? undefined : body);
        return;
      }
      default:
        res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found\n');
    }
  }

  private async checks(res: http.ServerResponse, checks: Map<string, Check>): Promise<void> {
    const lines: string[] = [];
    let ok = true;
    for (const [name, check] of checks) {
      let passed: boolean;
      try {
        passed = await check();
      } catch {
        passed = false;
      }
      ok &&= passed;
      lines.push(`[${passed ? '+' : '-'}]${name} ${passed ? 'ok' : 'failed'}`);
    }
    lines.push(ok ? 'ok' : 'not ok');
    res.writeHead(ok ? 200 : 503, { 'Content-Type': 'text/plain' });
    res.end(lines.join('\n') + '\n');
  }
}
