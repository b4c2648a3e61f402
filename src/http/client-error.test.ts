import { Duplex } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { answerClientError } from './server.ts';

/** A socket that records what is written to it and whether it was destroyed. */
function fakeSocket(options: { writable?: boolean; responseStarted?: boolean } = {}) {
  let written = '';
  const socket = new Duplex({
    read() {},
    write(chunk: Buffer, _encoding, done) {
      written += chunk.toString('utf8');
      done();
    },
  });
  if (options.writable === false) socket.end();
  if (options.responseStarted) Object.assign(socket, { _httpMessage: { headersSent: true } });
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

  it('writes nothing to a reset connection, one no longer writable, or one mid-response', () => {
    const cases = [
      { error: failure('ECONNRESET'), at: fakeSocket() },
      { error: failure('HPE_INVALID_METHOD'), at: fakeSocket({ writable: false }) },
      { error: failure('HPE_INVALID_METHOD'), at: fakeSocket({ responseStarted: true }) },
    ];
    for (const { error, at } of cases) {
      answerClientError(error, at.socket);
      expect(at.written()).toBe('');
      expect(at.socket.destroyed).toBe(true);
    }
  });
});
