/**
 * The route template of a request, built from the layers that matched it: `/t/:tenant/orders/:id`
 * for a route `/orders/:id` in a router mounted with `app.use('/t/:tenant', router)`.
 * `req.baseUrl` is the matched path (`/t/acme`), not its pattern: using it stored every tenant
 * name as a route of its own. The mount patterns are found once per route by walking the app's
 * router tree for the layer holding `req.route`, and cached by route object.
 */
import type { Request } from 'express';
import { normalizePath } from '../usage/routes-normalize.ts';

/** The shape of Express 5's router layers that this reads (router 2.x). */
type Layer = { route?: object; handle?: { stack?: Layer[] }; rawPath?: unknown };
type App = { router?: { stack?: Layer[] }; mountpath?: unknown; parent?: App };

/** Mount prefix of each route object; null when it cannot be told (mounted twice, a regex). */
const prefixes = new WeakMap<object, string | null>();

const part = (raw: unknown): string | null =>
  typeof raw === 'string' ? (raw === '/' ? '' : raw.replace(/\/+$/, '')) : null;

function find(stack: Layer[], target: object, prefix: string, found: string[], depth = 0): void {
  if (depth > 32) return;
  for (const layer of stack) {
    if (layer.route === target) {
      found.push(prefix);
      continue;
    }
    const inner = layer.handle?.stack;
    if (layer.route || !Array.isArray(inner)) continue;
    const mount = part(layer.rawPath);
    // A regex or array mount has no single template: mark it so the fallback is used.
    find(inner, target, mount === null ? `${prefix}\u0000` : prefix + mount, found, depth + 1);
  }
}

/** The prefix an app itself was mounted under (`app.use('/v2', subApp)`), outermost first. */
function appPrefix(app: App | undefined): string | null {
  let prefix = '';
  for (let a = app; a?.parent; a = a.parent) {
    const mount = part(a.mountpath);
    if (mount === null) return null;
    prefix = mount + prefix;
  }
  return prefix;
}

function mountPrefix(req: Request, route: object): string | null {
  if (prefixes.has(route)) return prefixes.get(route) ?? null;
  const app = req.app as unknown as App;
  const found: string[] = [];
  const outer = appPrefix(app);
  if (app.router?.stack) find(app.router.stack, route, '', found);
  const unique = found.length === 1 && outer !== null && !found[0]?.includes('\u0000');
  const prefix = unique ? `${outer}${found[0]}` : null;
  prefixes.set(route, prefix);
  return prefix;
}

/**
 * `/t/:tenant/orders/:id` for a matched route; undefined when no route matched (middleware
 * answered, or a 404). When the mount cannot be templated, the matched base path is normalised
 * (id-like segments become `{id}`).
 */
export function routeTemplate(req: Request): string | undefined {
  const route = req.route as { path?: unknown } | undefined;
  if (!route || typeof route.path !== 'string') return undefined;
  if (!req.baseUrl) return route.path;
  const prefix = mountPrefix(req, route);
  return `${prefix ?? normalizePath(req.baseUrl).replace(/\/$/, '')}${route.path}`;
}
