import { leakScanner } from './leak-scan.ts';

export type TestResponse<T = any> = {
  status: number;
  headers: Headers;
  text: string;
  body: T;
};

type RequestOptions = {
  key?: string | undefined;
  body?: unknown;
  rawBody?: string;
  headers?: Record<string, string>;
};

/** Where the one-time plaintext lives in a response that legitimately shows one. */
function issuedKeys(body: unknown): string[] {
  if (typeof body !== 'object' || body === null) return [];
  const b = body as { key?: unknown; admin_key?: { key?: unknown } };
  const found = [b.key, b.admin_key?.key].filter((k): k is string => typeof k === 'string');
  return found;
}

/**
 * A fetch-based HTTP client for tests. Every response of the suite goes through `scan`: any
 * plaintext key or known key hash outside a create/rotate response fails the test there.
 */
export class TestClient {
  readonly baseUrl: string;
  constructor(baseUrl: string) {
    this.baseUrl = baseUrl;
  }

  async request<T = any>(
    method: string,
    path: string,
    options: RequestOptions = {},
  ): Promise<TestResponse<T>> {
    const headers: Record<string, string> = { ...options.headers };
    if (options.key !== undefined) headers.authorization = `Bearer ${options.key}`;
    let payload: string | undefined = options.rawBody;
    if (options.body !== undefined) {
      payload = JSON.stringify(options.body);
      headers['content-type'] ??= 'application/json';
    }
    const res = await fetch(`${this.baseUrl}${path}`, { method, headers, body: payload ?? null });
    const text = await res.text();
    const contentType = res.headers.get('content-type') ?? '';
    // NDJSON stays text: it is many JSON documents, not one.
    const isJson = contentType.includes('json') && !contentType.includes('ndjson');
    const body = (isJson && text ? JSON.parse(text) : text) as T;
    const issued = method !== 'GET' && res.status === 201 ? issuedKeys(body) : [];
    for (const k of issued) leakScanner.remember(k);
    if (options.key) leakScanner.remember(options.key);
    const leaks = leakScanner.scan(text, issued);
    if (leaks.length > 0) {
      throw new Error(`key material in response to ${method} ${path}: ${leaks.join(', ')}`);
    }
    return { status: res.status, headers: res.headers, text, body };
  }

  get<T = any>(path: string, options?: RequestOptions) {
    return this.request<T>('GET', path, options);
  }
  post<T = any>(path: string, options?: RequestOptions) {
    return this.request<T>('POST', path, options);
  }
  put<T = any>(path: string, options?: RequestOptions) {
    return this.request<T>('PUT', path, options);
  }
  patch<T = any>(path: string, options?: RequestOptions) {
    return this.request<T>('PATCH', path, options);
  }
  delete<T = any>(path: string, options?: RequestOptions) {
    return this.request<T>('DELETE', path, options);
  }
}
