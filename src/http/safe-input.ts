/**
 * Input rules every text and time the API stores or queries with must pass, shared by the
 * schemas and the cursors: Postgres refuses NUL in text and lone UTF-16 surrogates in json (a
 * 500 if they got that far), its dates end at year 294276 while JavaScript's ISO strings go
 * negative or six-digit past 9999, and a name or reason holding an API key would hand the key to
 * everyone who can list keys or read the audit trail.
 */
import { z } from 'zod';
import { KEY_LIKE_RE } from '../keys/key-format.ts';

const MIN_TIME = Date.UTC(1970, 0, 1);
const MAX_TIME = Date.UTC(9999, 0, 1);

/** No NUL, no lone surrogate: text Postgres can store as text and as json. */
export const storable = (s: string): boolean => !s.includes('\u0000') && s.isWellFormed();

const keyLike = new RegExp(KEY_LIKE_RE.source);
export const holdsKey = (s: string): boolean => keyLike.test(s);

/** Free text the API stores and shows back (names, reasons). */
export const SafeText = (max: number) =>
  z
    .string()
    .trim()
    .min(1)
    .max(max)
    .refine(storable, 'must not contain NUL or unpaired surrogate characters')
    .refine((s) => !holdsKey(s), 'must not contain an API key');

/** Text used only to filter (a route): storable, nothing more. */
export const FilterText = (max: number) =>
  z
    .string()
    .min(1)
    .max(max)
    .refine(storable, 'must not contain NUL or unpaired surrogate characters');

/** An ISO-8601 instant between 1970 and 9998: what the API stores and asks Postgres about. */
export const BoundedTime = z.iso.datetime({ offset: true }).refine((s) => {
  const t = Date.parse(s);
  return t >= MIN_TIME && t < MAX_TIME;
}, 'must be between 1970-01-01 and 9998-12-31');
