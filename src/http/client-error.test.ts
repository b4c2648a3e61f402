import { EventEmitter } from 'node:events';
import { Duplex } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { answerClientError } from './server.ts';

/** A socket that records what is written to it and whether it was destroyed. */
function fakeSocket(options: { writable?: boolean } = {}) {
  let written = '';
  const socket = new Duplex({
    read() {},
    write(chunk: Buffer, _encoding, done) {
      written += chunk.toString('utf8');
      done();
    },
  });
  if (options.writable === false) socket.end();
  return { socket, written: () => written };
}

const failure = (code: string) => Object.assign(new Error(code), { code });

describe('answerClientError', () => {
  it('answers a request timeout with a 408 problem, then closes', async () => {
    const { socket, written } = fakeSocket();
    answerClientError(failure('ERR_HTTP_REQUEST_TIMEOUT'), socket);
    await new Promise((resolve) => socket.once('close', resolve));
    expect(written()).toMatch(/^HTTP\/1\.1 408 Request Timeout\r\n/);
    expect(written()).toContain('"code":"request_timeout"');
    expect(socket.destroyed).toBe(true);
  });

  it('writes nothing to a reset connection or one no longer writable', () => {
    const cases = [
      { error: failure('ECONNRESET'), at: fakeSocket() },
      { error: failure('HPE_INVALID_METHOD'), at: fakeSocket({ writable: false }) },
    ];
    for (const { error, at } of cases) {
      answerClientError(error, at.socket);
      expect(at.written()).toBe('');
      expect(at.socket.destroyed).toBe(true);
    }
  });

  it('lets an answer in flight finish, writing nothing, then closes', () => {
    for (const headersSent of [false, true]) {
      const { socket, written } = fakeSocket();
      const response = Object.assign(new EventEmitter(), {
        req: { complete: true },
        headersSent,
        shouldKeepAlive: true,
        writableFinished: false,
      });
      Object.assign(socket, { _httpMessage: response });
      answerClientError(failure('HPE_INVALID_METHOD'), socket);
      answerClientError(failure('HPE_INVALID_METHOD'), socket);
      expect(written()).toBe('');
      expect(socket.destroyed).toBe(false);
      expect(response.shouldKeepAlive).toBe(headersSent);
      response.emit('close');
      expect(socket.destroyed).toBe(true);
    }
  });
});
