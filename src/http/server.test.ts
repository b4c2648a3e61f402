import { IncomingMessage, ServerResponse, type RequestListener } from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { describe, expect, it } from 'vitest';
import { createHttpServer, KEEP_ALIVE_TIMEOUT_MS } from './server.ts';

/** Serves one request through createHttpServer; returns what the listener saw of it. */
async function once<T>(app: RequestListener, seen: () => T): Promise<T> {
  const server = createHttpServer(app);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  try {
    const { port } = server.address() as AddressInfo;
    expect((await fetch(`http://127.0.0.1:${port}/x/7`)).status).toBe(200);
    return seen();
  } finally {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  }
}

describe('HTTP server', () => {
  it('keeps idle connections longer than a 60 s load-balancer idle timeout', () => {
    const server = createHttpServer(() => undefined);
    expect(server.keepAliveTimeout).toBe(KEEP_ALIVE_TIMEOUT_MS);
    expect(KEEP_ALIVE_TIMEOUT_MS).toBeGreaterThan(60_000);
    expect(server.headersTimeout).toBeGreaterThan(server.keepAliveTimeout);
  });

  it("gives an Express app's requests and responses its prototypes at birth", async () => {
    const app = express();
    let born: boolean[] = [];
    // Runs before Express's own handling: what the server made, untouched.
    const listener = Object.assign(
      (req: IncomingMessage, res: ServerResponse) => {
        born = [
          Object.getPrototypeOf(req) === app.request,
          Object.getPrototypeOf(res) === app.response,
          req instanceof IncomingMessage,
          res instanceof ServerResponse,
        ];
        app(req as never, res as never);
      },
      { request: app.request, response: app.response },
    );
    app.get('/x/:id', (req, res) => {
      res.json({ id: req.params.id, ip: req.ip });
    });
    expect(await once(listener, () => born)).toEqual([true, true, true, true]);
  });

  it('serves a plain listener with the standard classes', async () => {
    let proto: unknown;
    const listener: RequestListener = (req, res) => {
      proto = Object.getPrototypeOf(req);
      res.end('ok');
    };
    expect(await once(listener, () => proto)).toBe(IncomingMessage.prototype);
  });
});
