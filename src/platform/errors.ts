/**
 * The closed table of error codes. Every error a client can see has one of these codes; the
 * status and title never vary per occurrence (the `detail` does).
 */
export const ERROR_CODES = {
  validation_failed: { status: 400, title: 'Request validation failed' },
  unauthenticated: { status: 401, title: 'Missing or invalid credentials' },
  insufficient_scope: { status: 403, title: 'The key lacks a required scope' },
  ip_not_allowed: { status: 403, title: 'The key may not be used from this address' },
  not_found: { status: 404, title: 'Resource not found' },
  method_not_allowed: { status: 405, title: 'Method not allowed' },
  unsupported_media_type: { status: 415, title: 'Unsupported media type' },
  request_timeout: { status: 408, title: 'Request not received in time' },
  headers_too_large: { status: 431, title: 'Request headers too large' },
  malformed_request: { status: 400, title: 'Malformed HTTP request' },
  payload_too_large: { status: 413, title: 'Request body too large' },
  key_limit_reached: { status: 422, title: 'Active key limit reached' },
  unprocessable: { status: 422, title: 'Request cannot be processed' },
  rate_limited: { status: 429, title: 'Too many requests' },
  quota_exceeded: { status: 429, title: 'The key has used up its quota' },
  service_unavailable: { status: 503, title: 'Service unavailable' },
  query_timeout: { status: 503, title: 'Query deadline exceeded' },
  internal: { status: 500, title: 'Internal server error' },
} as const satisfies Record<string, { status: number; title: string }>;

export type ErrorCode = keyof typeof ERROR_CODES;

export type FieldError = { path: string; message: string };

export class AppError extends Error {
  override name = 'AppError';
  readonly code: ErrorCode;
  readonly detail: string | undefined;
  readonly errors: FieldError[] | undefined;
  /** Logged, never sent to the client. */
  readonly context: Record<string, unknown> | undefined;
  /** Sent as `Retry-After` (429, 503): when trying again may succeed. */
  readonly retryAfterSeconds: number | undefined;

  constructor(
    code: ErrorCode,
    options: {
      detail?: string;
      errors?: FieldError[];
      context?: Record<string, unknown>;
      retryAfterSeconds?: number;
    } = {},
  ) {
    super(options.detail ?? ERROR_CODES[code].title);
    this.code = code;
    this.detail = options.detail;
    this.errors = options.errors;
    this.context = options.context;
    this.retryAfterSeconds = options.retryAfterSeconds;
  }

  get status(): number {
    return ERROR_CODES[this.code].status;
  }
}

export const isAppError = (e: unknown): e is AppError => e instanceof AppError;
