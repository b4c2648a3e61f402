import { z } from 'zod';
import { AppError } from '../platform/errors.ts';
import { BoundedTime } from './safe-input.ts';

/** Opaque keyset cursors: base64url of a small JSON tuple, validated on the way back in. */
export function encodeCursor(values: readonly (string | number | null)[]): string {
  return Buffer.from(JSON.stringify(values)).toString('base64url');
}

export function decodeCursor<S extends z.ZodType>(cursor: string, schema: S): z.infer<S> {
  try {
    const raw: unknown = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
    return schema.parse(raw);
  } catch {
    throw new AppError('validation_failed', {
      detail: 'cursor is not valid; use the next_cursor of a previous page',
      errors: [{ path: 'query.cursor', message: 'invalid cursor' }],
    });
  }
}

/** A cursor's instant: as produced (UTC ISO), within the range the API stores. */
export const CursorTime = BoundedTime;
export const createdAtIdCursor = z.tuple([CursorTime, z.uuid()]);
